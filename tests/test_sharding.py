"""Partitioning: batch- and channel-sharded shifts need no gather, on any impl."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxshift

pytestmark = pytest.mark.skipif(jax.device_count() < 8,
                                reason="needs 8 (CPU) devices")

# The kernel and the jnp path. "auto" resolves at lowering to one of the two
# (the kernel where it is built): it is checked in the first test only.
IMPLS = ["xla"] + (["ffi"] if jaxshift.kernels_available("cpu") else [])
X_SPEC = P("data", None, None, "model")


def _mesh(axis_type=jax.sharding.AxisType.Explicit):
  return jax.make_mesh((4, 2), ("data", "model"), axis_types=(axis_type,) * 2)


def _put(mesh, x, spec):
  return jax.device_put(jnp.asarray(x), NamedSharding(mesh, spec))


def _collectives(text):
  return {c for c in ("all-gather", "all-to-all", "all-reduce",
                      "collective-permute") if c in text}


def _check(f, x, s, x_np, s_np, *, out_spec=None):
  """f's forward has no collective; its backward only the shift all-reduce.

  The compiled sharded functions are the ones run; the references are the
  same functions jitted on one device.
  """
  loss = lambda x, s: jnp.sum(jnp.sin(f(x, s)))
  grad = jax.grad(loss, (0, 1))
  fwd = jax.jit(f).lower(x, s).compile()
  bwd = jax.jit(grad).lower(x, s).compile()
  fwd_text = fwd.as_text()
  bwd_text = bwd.as_text()
  assert _collectives(fwd_text) == set(), _collectives(fwd_text)
  assert _collectives(bwd_text) <= {"all-reduce"}, _collectives(bwd_text)
  y = fwd(x, s)
  assert y.sharding.is_equivalent_to(
      NamedSharding(x.sharding.mesh, out_spec or x.sharding.spec), y.ndim)
  np.testing.assert_allclose(y, jax.jit(f)(x_np, s_np), rtol=1e-5, atol=1e-5)
  dx, ds = bwd(x, s)
  wdx, wds = jax.jit(grad)(x_np, s_np)
  np.testing.assert_allclose(dx, wdx, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ds, wds, rtol=1e-4, atol=1e-4)
  assert dx.sharding.is_equivalent_to(x.sharding, x.ndim)
  return fwd_text


@pytest.mark.parametrize("mode", jaxshift.MODES)
@pytest.mark.parametrize("impl", ["auto"] + IMPLS)
def test_batch_and_channel_sharding_needs_no_gather(impl, mode):
  mesh = _mesh()
  rng = np.random.default_rng(0)
  x_np = rng.normal(size=(8, 6, 5, 4)).astype(np.float32)
  s_np = rng.normal(size=(4, 2)).astype(np.float32) * 1.5
  f = lambda x, s: jaxshift.shift(x, s, mode=mode, impl=impl)
  text = _check(f, _put(mesh, x_np, X_SPEC), _put(mesh, s_np, P("model", None)),
                x_np, s_np)
  if impl == "ffi" or (impl == "auto" and jaxshift.kernels_available("cpu")):
    # The kernel, each device on its own shard.
    assert "jaxshift_forward_cpu" in text and "[2,1,6,5,2]" in text


@pytest.mark.parametrize("impl", IMPLS)
def test_auto_axes_mesh_needs_no_gather(impl):
  """The same with a classic (Auto-axes) mesh: Shardy propagates, no types."""
  mesh = _mesh(jax.sharding.AxisType.Auto)
  rng = np.random.default_rng(4)
  x_np = rng.normal(size=(8, 6, 5, 4)).astype(np.float32)
  s_np = rng.normal(size=(4, 2)).astype(np.float32)
  f = lambda x, s: jaxshift.shift(x, s, mode="sparse", strides=2, impl=impl)
  _check(f, _put(mesh, x_np, X_SPEC), _put(mesh, s_np, P("model", None)),
         x_np, s_np)


@pytest.mark.parametrize("impl", IMPLS)
def test_channels_first_strided_3d(impl):
  mesh = _mesh()
  rng = np.random.default_rng(1)
  x_np = rng.normal(size=(4, 4, 5, 6, 3)).astype(np.float32)  # (N, C, D, H, W)
  s_np = rng.normal(size=(4, 3)).astype(np.float32)
  f = lambda x, s: jaxshift.shift(x, s, channel_axis=1, strides=(1, 2, 2),
                                  padding="reflect", impl=impl)
  spec = P("data", "model", None, None, None)
  _check(f, _put(mesh, x_np, spec), _put(mesh, s_np, P("model", None)),
         x_np, s_np)


@pytest.mark.parametrize("impl", IMPLS)
def test_vmap_inside_jit_still_partitions(impl):
  mesh = _mesh()
  rng = np.random.default_rng(2)
  x_np = rng.normal(size=(8, 3, 6, 5, 4)).astype(np.float32)  # (N, B, H, W, C)
  s_np = rng.normal(size=(4, 2)).astype(np.float32)
  f = jax.vmap(lambda x, s: jaxshift.shift(x, s, impl=impl), in_axes=(1, None),
               out_axes=1)
  _check(f, _put(mesh, x_np, P("data", None, None, None, "model")),
         _put(mesh, s_np, P("model", None)), x_np, s_np)


@pytest.mark.parametrize("impl", IMPLS)
def test_vmap_over_shifts_is_correct(impl):
  """Per-model shifts (vmap over x and shifts): the kernel sees per-group
  tables, whose batch the partitioner keeps whole; values and gradients
  still match one device."""
  mesh = _mesh()
  rng = np.random.default_rng(5)
  x_np = rng.normal(size=(4, 2, 6, 5, 4)).astype(np.float32)  # (V, N, H, W, C)
  s_np = rng.normal(size=(4, 4, 2)).astype(np.float32) * 1.5  # (V, C, 2)
  f = jax.vmap(lambda x, s: jaxshift.shift(x, s, impl=impl))
  loss = lambda x, s: jnp.sum(jnp.sin(f(x, s)))
  x = _put(mesh, x_np, P("data", None, None, None, "model"))
  s = _put(mesh, s_np, P("data", "model", None))
  np.testing.assert_allclose(jax.jit(f)(x, s), jax.jit(f)(x_np, s_np),
                             rtol=1e-5, atol=1e-5)
  dx, ds = jax.jit(jax.grad(loss, (0, 1)))(x, s)
  wdx, wds = jax.jit(jax.grad(loss, (0, 1)))(x_np, s_np)
  np.testing.assert_allclose(dx, wdx, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ds, wds, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl", IMPLS)
def test_spatially_sharded_input_is_still_correct(impl):
  """Spatial axes need their neighbours: sharding H costs a gather, not errors."""
  mesh = _mesh()
  rng = np.random.default_rng(3)
  x_np = rng.normal(size=(8, 8, 5, 4)).astype(np.float32)
  s_np = rng.normal(size=(4, 2)).astype(np.float32)
  x = _put(mesh, x_np, P("data", "model", None, None))
  f = jax.jit(lambda x, s: jaxshift.shift(x, s, impl=impl))
  np.testing.assert_allclose(f(x, s_np), f(x_np, s_np), atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_inside_shard_map_gradients_are_summed(impl):
  """Replicated shifts inside shard_map: the shift gradient is psum'ed."""
  mesh = _mesh()
  rng = np.random.default_rng(1)
  x_np = rng.normal(size=(8, 6, 5, 4)).astype(np.float32)
  s_np = rng.normal(size=(4, 2)).astype(np.float32)
  with jax.set_mesh(mesh):
    x = _put(mesh, x_np, X_SPEC)
    s = _put(mesh, s_np, P("model", None))
    f = jax.shard_map(lambda x, s: jaxshift.shift(x, s, impl=impl), mesh=mesh,
                      in_specs=(X_SPEC, P("model", None)), out_specs=X_SPEC)
    loss = lambda x, s: jnp.sum(f(x, s) ** 2)
    y = jax.jit(f)(x, s)
    bwd = jax.jit(jax.grad(loss, (0, 1))).lower(x, s).compile()
    dx, ds = bwd(x, s)
  assert "all-gather" not in bwd.as_text()
  ref = lambda x, s: jaxshift.shift(x, s, impl="xla")
  np.testing.assert_allclose(y, jax.jit(ref)(x_np, s_np), atol=1e-6)
  wdx, wds = jax.jit(jax.grad(lambda x, s: jnp.sum(ref(x, s) ** 2), (0, 1)))(
      x_np, s_np)
  np.testing.assert_allclose(dx, wdx, atol=1e-5)
  np.testing.assert_allclose(ds, wds, rtol=1e-5, atol=1e-4)
