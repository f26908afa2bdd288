"""Spatially sharded shifts (halo exchange) equal the one-device shift.

The oracle is the same shift on one device (itself tested against scipy,
finite differences and the adjoint identity in test_spec/test_shift): for
every mode, padding, layout, rank and stride, on meshes of 8 CPU devices,
the forward, ``dx`` and ``dshifts`` agree, the output keeps ``x``'s
sharding, and the compiled program moves halos with collective-permutes and gathers
nothing, also in the fallback for traced shifts beyond the halo (windows
passed round the ring of shards).
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxshift
from jaxshift._src import halo
from jaxshift._src import layout

from conftest import examples

pytestmark = pytest.mark.skipif(jax.device_count() < 8,
                                reason="needs 8 (CPU) devices")

KERNEL = jaxshift.kernels_available("cpu")
# "ffi" where the CPU kernel is built; the jnp path always.
IMPLS = ["xla"] + (["ffi"] if KERNEL else [])


def _gathers(text: str) -> list[str]:
  """HLO all-gathers and all-to-alls (the halo path has none, its fallback
  included)."""
  return [line for line in text.splitlines()
          if re.search(r" (all-gather|all-to-all)(-start)?\(", line)]


def _put(mesh, x, spec):
  return jax.device_put(jnp.asarray(x), NamedSharding(mesh, spec))


def _compare(mesh, spec, x_np, s_np, *, traced=True, max_shift=3.0,
             rtol=1e-5, **kw):
  """Forward, dx and dshifts of the sharded call against one device."""
  x = _put(mesh, x_np, spec)
  call = layout.make_call(x_np, s_np, mode=kw.get("mode", "active"),
                          padding=kw.get("padding", "zeros"),
                          channel_axis=kw.get("channel_axis", -1),
                          strides=kw.get("strides", 1), impl="auto")
  plan = halo.plan(call, x, s_np if not traced else jnp.asarray(s_np),
                   bound=halo.max_shift_bound(max_shift, s_np.shape[1]),
                   static_path=not traced)
  assert plan is not None  # the halo exchange, not the gather
  if traced:  # and within the halo: the exchange's branch runs
    assert halo.fits_at_run_time(call, jnp.asarray(s_np), plan)

  def loss(x, s):
    y = jaxshift.shift(x, s, max_shift=max_shift, **kw)
    return jnp.sum(jnp.sin(y) * jnp.arange(y.size, dtype=y.dtype).reshape(
        y.shape) / y.size), y

  if traced:
    step = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))
    (_, y), (dx, ds) = step(x, jnp.asarray(s_np))
    (_, y1), (dx1, ds1) = step(x_np, s_np)
    text = step.lower(x, jnp.asarray(s_np)).compile().as_text()
  else:  # concrete shifts: no shift gradient
    step = jax.jit(jax.value_and_grad(lambda x: loss(x, s_np), has_aux=True))
    (_, y), dx = step(x)
    (_, y1), dx1 = step(x_np)
    ds = ds1 = None
    text = step.lower(x).compile().as_text()
  np.testing.assert_allclose(y, y1, rtol=rtol, atol=rtol)
  np.testing.assert_allclose(dx, dx1, rtol=rtol, atol=rtol)
  if ds is not None:
    np.testing.assert_allclose(ds, ds1, rtol=10 * rtol, atol=10 * rtol)
  assert y.sharding.is_equivalent_to(NamedSharding(mesh, spec), y.ndim)
  assert dx.sharding.is_equivalent_to(x.sharding, x.ndim)
  assert "collective-permute" in text
  assert not _gathers(text)
  return text


def _mesh(shape, names):
  return jax.make_mesh(shape, names)


# (mesh, x shape, x spec, shift columns, keyword arguments): every mode and
# padding, both layouts, ranks 1-3, strides, batch/channel splits beside the
# spatial ones, one or several split axes.
CASES = [
    ("h8", (2, 32, 6, 4), P(None, "h"), 2, dict(mode="active")),
    ("h8", (2, 32, 6, 4), P(None, "h"), 2,
     dict(mode="sparse", padding="periodic")),
    ("h8", (2, 64, 6, 4), P(None, "h"), 2,
     dict(mode="integer", padding="reflect")),
    ("h8", (3, 64, 5), P(None, "h"), 1,
     dict(mode="active", padding="symmetric", strides=2)),
    ("hw", (2, 16, 8, 4), P(None, "h", "w"), 2,
     dict(mode="active", padding="border")),
    ("hw", (2, 32, 16, 4), P(None, "h", "w"), 2,
     dict(mode="sparse", padding="reflect", strides=(2, 2))),
    ("hw", (2, 4, 16, 8), P(None, None, "h", "w"), 2,
     dict(mode="active", padding="periodic", channel_axis=1)),
    ("hw", (4, 16, 6, 4), P("w", "h"), 2,
     dict(mode="integer", padding="zeros", strides=(4, 3))),
    ("hw", (2, 16, 6, 4), P(None, "h", None, "w"), 2,
     dict(mode="active", padding="symmetric")),
    ("cube", (2, 8, 8, 8, 3), P(None, "a", "b", "c"), 3,
     dict(mode="active", padding="zeros")),
    ("cube", (2, 8, 8, 8, 3), P(None, "a", "b", "c"), 3,
     dict(mode="sparse", padding="symmetric")),
    ("cube", (2, 2, 8, 16, 4), P("a", "b", None, "c"), 3,
     dict(mode="active", padding="reflect", channel_axis=1, strides=(1, 2, 2))),
]
MESHES = {"h8": ((8,), ("h",)), "hw": ((4, 2), ("h", "w")),
          "cube": ((2, 2, 2), ("a", "b", "c"))}


# The jnp path on every case, the kernel on every other one (CI time).
@pytest.mark.parametrize("case,impl", [(c, i) for c in range(len(CASES))
                                       for i in IMPLS if i == "xla" or c % 2 == 0])
def test_traced_shifts_match_one_device(case, impl):
  mesh_name, shape, spec, d, kw = CASES[case]
  rng = np.random.default_rng(case)
  x_np = rng.normal(size=shape).astype(np.float32)
  c = shape[kw.get("channel_axis", -1)]
  s_np = rng.uniform(-2.5, 2.5, size=(c, d)).astype(np.float32)
  _compare(_mesh(*MESHES[mesh_name]), spec, x_np, s_np, impl=impl, **kw)


@pytest.mark.parametrize("case", [2, 4, 7, 10])
def test_concrete_shifts_match_one_device(case):
  """NumPy shifts: the static path, its halo sized by the shifts themselves,
  no run-time check and no gather anywhere."""
  mesh_name, shape, spec, d, kw = CASES[case]
  rng = np.random.default_rng(case)
  x_np = rng.normal(size=shape).astype(np.float32)
  c = shape[kw.get("channel_axis", -1)]
  s_np = rng.uniform(-2.5, 2.5, size=(c, d)).astype(np.float32)
  text = _compare(_mesh(*MESHES[mesh_name]), spec, x_np, s_np, traced=False,
                  max_shift=None, **kw)
  assert "all-gather" not in text and "conditional" not in text


def _permuted_shapes(text):
  return re.findall(r"= (\w+\[[\d,]*\])[^=]*? collective-permute(?:-start)?\(",
                    text)


def test_only_moving_channels_are_exchanged():
  """A grouped (3x3) table: along each axis a third of the channels reads
  the halo on each side, and only they are sent; channels that do not move
  along the split axis send nothing."""
  mesh = _mesh((8,), ("h",))
  shifts = jaxshift.grouped_shifts(18, 3)
  x_np = np.random.default_rng(0).normal(size=(2, 32, 8, 18)).astype(np.float32)
  f = jax.jit(lambda x: jaxshift.shift(x, shifts, mode="integer"))
  x = _put(mesh, x_np, P(None, "h"))
  text = f.lower(x).compile().as_text()
  moving = int(np.sum(np.asarray(shifts)[:, 0] > 0))
  shapes = _permuted_shapes(text)
  assert shapes and all(s.endswith(f",{moving}]") for s in shapes), shapes
  np.testing.assert_array_equal(f(x), f(x_np))


@settings(deadline=None, max_examples=examples(4))
@given(seed=st.integers(0, 2**31 - 1),
       scale=st.sampled_from([0.4, 1.0, 2.9, 9.0]),
       padding=st.sampled_from(jaxshift.PADDINGS))
def test_random_shifts_inside_and_beyond_the_halo(seed, scale, padding):
  """Shifts drawn up to 9 cells against a halo for 1.5: the calls within it
  exchange halos, the others fall back to per-channel windows; all are
  right."""
  rng = np.random.default_rng(seed)
  s_np = (rng.uniform(-1, 1, size=(4, 2)) * scale).astype(np.float32)
  x_np = rng.normal(size=(2, 16, 8, 4)).astype(np.float32)
  mesh = _mesh((4, 2), ("h", "w"))
  sharded, single = _random_step(padding, True), _random_step(padding, False)
  x = _put(mesh, x_np, P(None, "h", "w"))
  (y, (dx, ds)), (y1, (dx1, ds1)) = sharded(x, s_np), single(x_np, s_np)
  np.testing.assert_allclose(y, y1, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx, dx1, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ds, ds1, rtol=1e-4, atol=1e-4)
  call = layout.make_call(x_np, s_np, mode="active", padding=padding,
                          channel_axis=-1, strides=1, impl="auto")
  plan = halo.plan(call, x, jnp.asarray(s_np), bound=(1.5, 1.5),
                   static_path=False)
  fits = bool(halo.fits_at_run_time(call, jnp.asarray(s_np), plan))
  # Within 1.5 every read is inside the halo (periodic reads re-centred).
  if np.abs(s_np).max() <= 1.5:
    assert fits


@functools.lru_cache(maxsize=None)
def _random_step(padding, sharded):
  def f(x, s):
    return jaxshift.shift(x, s, padding=padding,
                          max_shift=1.5 if sharded else None)
  loss = lambda x, s: jnp.sum(jnp.cos(f(x, s)))
  return jax.jit(lambda x, s: (f(x, s), jax.grad(loss, (0, 1))(x, s)))


def test_run_time_check_sees_shifts_beyond_the_halo():
  mesh = _mesh((8,), ("h",))
  x = _put(mesh, np.zeros((1, 32, 4, 2), np.float32), P(None, "h"))
  call = layout.make_call(x, np.zeros((2, 2), np.float32), mode="active",
                          padding="periodic", channel_axis=-1, strides=1,
                          impl="auto")
  plan = halo.plan(call, x, jnp.zeros((2, 2)), bound=(1.0, 1.0),
                   static_path=False)
  assert [(a.lo, a.hi) for a in plan.axes] == [(2, 2)]
  check = lambda s: bool(halo.fits_at_run_time(call, jnp.asarray(s), plan))
  assert check([[1.0, 5.0], [-0.5, 0.0]])  # W is not split: any shift
  assert check([[31.0, 0.0], [0.0, 0.0]])  # periodic: 31 is -1
  assert not check([[2.5, 0.0], [0.0, 0.0]])
  assert not check([[0.0, 0.0], [-2.0, 0.0]])


def test_when_the_halo_cannot_work_the_axes_are_gathered():
  """A split length not a multiple of the stride, a halo wider than a
  block, traced shifts with no bound: the gather, with the right answer."""
  mesh = _mesh((8,), ("h",))
  rng = np.random.default_rng(1)
  x_np = rng.normal(size=(2, 24, 5, 3)).astype(np.float32)
  x = _put(mesh, x_np, P(None, "h"))
  s_np = rng.uniform(-2, 2, size=(3, 2)).astype(np.float32)
  for kw in (dict(strides=2), dict(max_shift=7), dict()):
    f = jax.jit(lambda x, s: jaxshift.shift(x, s, **kw))
    call = layout.make_call(x_np, s_np, mode="active", padding="zeros",
                            channel_axis=-1, strides=kw.get("strides", 1),
                            impl="auto")
    bound = halo.max_shift_bound(kw.get("max_shift"), 2)
    assert halo.plan(call, x, jnp.asarray(s_np), bound=bound,
                     static_path=False) is None
    np.testing.assert_allclose(f(x, s_np), f(x_np, s_np), atol=1e-6)
    grad = jax.jit(jax.grad(lambda x, s: jnp.sum(f(x, s) ** 2)))
    dx = grad(x, s_np)
    assert dx.sharding.is_equivalent_to(x.sharding, x.ndim)
    np.testing.assert_allclose(dx, grad(x_np, s_np), atol=1e-5)


@pytest.mark.parametrize("bad", [-1, float("nan"), (1, 2, 3), "big"])
def test_max_shift_is_checked(bad):
  with pytest.raises(ValueError, match="`max_shift` must be"):
    jaxshift.shift(jnp.ones((1, 4, 4, 2)), jnp.zeros((2, 2)), max_shift=bad)


def test_layers_pass_the_bound():
  from flax import nnx
  from jaxshift.nn import Shift
  mesh = _mesh((8,), ("h",))
  layer = Shift(4, max_shift=2, rngs=nnx.Rngs(0))
  assert layer.max_shift == (2.0, 2.0)
  x = _put(mesh, np.ones((1, 32, 8, 4), np.float32), P(None, "h"))
  text = nnx.jit(lambda m, x: m(x)).lower(layer, x).compile().as_text()
  assert "collective-permute" in text
