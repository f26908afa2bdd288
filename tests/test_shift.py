"""`jaxshift.shift` on the pure-jnp path against independent oracles.

Oracles: scipy.ndimage.shift (forward), its central differences (shift
gradient; at a kink the central difference is exactly the mean of the
one-sided derivatives docs/semantics.md asks for), the adjoint identity
<A x, g> = <x, A^T g> with A from scipy (input gradient) and the worked
cases of docs/semantics.md.
"""

import itertools
import os
import subprocess
import sys

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import oracles
from conftest import examples
from oracles import central_difference
from oracles import scipy_shift

import jaxshift

MODES = jaxshift.MODES
PADDINGS = jaxshift.PADDINGS
IMPL = "xla"

def test_worked_cases():
  oracles.worked_cases(IMPL)


def test_tiny_shifts_are_off_the_lattice():
  oracles.check_tiny_shifts(IMPL)


def test_integer_and_bool_tensors_move_bit_for_bit(x64):
  oracles.check_integer_moves(IMPL)


def test_integer_tensors_have_no_gradient_and_refuse_interpolation():
  x = jnp.arange(24, dtype=jnp.int16).reshape(1, 4, 6, 1)
  s = jnp.array([[0.4, -1.6]])
  with pytest.raises(TypeError, match=r"mode='active' interpolates.*x\.astype"):
    jaxshift.shift(x, s, impl=IMPL)
  ds = jax.grad(lambda s: jnp.sum(jaxshift.shift(
      x, s, mode="sparse", impl=IMPL).astype(jnp.float32)))(s)
  np.testing.assert_array_equal(ds, np.zeros((1, 2)))
  # vmap over an integer batch: one call, the same move.
  xs = jnp.stack([x, x + 1])
  ys = jax.vmap(lambda x: jaxshift.shift(x, s, mode="integer", impl=IMPL))(xs)
  np.testing.assert_array_equal(ys[1] - ys[0], oracles.numpy_move(
      np.ones_like(x), s, padding="zeros"))
  with pytest.raises(TypeError, match="`x` must have a floating dtype"):
    jaxshift.shift(x.astype(jnp.complex64), s, mode="integer", impl=IMPL)


# --------------------------------------------------------------------------
# Forward against scipy over the whole option grid.
def _cycle(options, ndim, mode, padding):
  """``options[k]`` for a k that cycles with ndim for a given mode and padding."""
  return options[(ndim + MODES.index(mode) + PADDINGS.index(padding)) %
                 len(options)]


def random_case(rng, ndim, channels_last, n=2, c=3, lengths=None):
  lengths = lengths or [5, 4, 3][:ndim]
  shape = ((n, *lengths, c) if channels_last else (n, c, *lengths))
  x = rng.normal(size=shape)
  # Mix fractional, lattice and half-way shifts, some beyond the axis.
  s = rng.choice([-7.5, -2.0, -1.25, -0.5, 0.0, 0.3, 1.0, 1.5, 2.7, 6.0],
                 size=(c, ndim))
  return x, s


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("channels_last", [True, False])
def test_forward_matches_scipy(ndim, mode, padding, channels_last):
  rng = np.random.default_rng(ndim * 100 + len(mode) + len(padding))
  x, s = random_case(rng, ndim, channels_last)
  cax = -1 if channels_last else 1
  # One stride pattern a case, cycling with ndim: every (mode, padding,
  # layout) meets all three across the ranks (compiles are the suite's cost).
  strides = _cycle([1, 2, (3, 1, 2)[:ndim]], ndim, mode, padding)
  want = scipy_shift(x, s, mode=mode, padding=padding, channel_axis=cax,
                     strides=strides)
  got = jaxshift.shift(jnp.asarray(x, jnp.float32),
                       jnp.asarray(s, jnp.float32), mode=mode,
                       padding=padding, channel_axis=cax, strides=strides,
                       impl=IMPL)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@hypothesis.settings(max_examples=examples(25))
@hypothesis.given(
    ndim=st.integers(1, 3), mode=st.sampled_from(MODES),
    padding=st.sampled_from(PADDINGS), channels_last=st.booleans(),
    data=st.data())
def test_forward_matches_scipy_random(ndim, mode, padding, channels_last,
                                      data):
  lengths = data.draw(st.lists(st.integers(1, 7), min_size=ndim,
                               max_size=ndim))
  n, c = data.draw(st.integers(0, 2)), data.draw(st.integers(1, 3))
  strides = data.draw(st.lists(st.integers(1, 3), min_size=ndim,
                               max_size=ndim))
  shift_value = st.one_of(
      st.floats(-12, 12, allow_nan=False, width=32),
      st.integers(-9, 9).map(float),
      st.integers(-9, 9).map(lambda i: i + 0.5))
  s = np.array(data.draw(st.lists(shift_value, min_size=c * ndim,
                                  max_size=c * ndim)),
               np.float32).reshape(c, ndim)
  seed = data.draw(st.integers(0, 2**31 - 1))
  shape = (n, *lengths, c) if channels_last else (n, c, *lengths)
  x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
  cax = -1 if channels_last else 1
  want = scipy_shift(x, s, mode=mode, padding=padding, channel_axis=cax,
                     strides=strides)
  # Traced shifts take the jnp path; NumPy ones, in a rounding mode, the
  # static one (jaxshift/_src/static.py).
  for shifts in (jnp.asarray(s), s):
    got = jaxshift.shift(x, shifts, mode=mode, padding=padding,
                         channel_axis=cax, strides=strides, impl=IMPL)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------
# Gradients.

@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("lattice", [False, True])
def test_shift_gradient_matches_central_difference(x64, ndim, padding,
                                                   lattice):
  rng = np.random.default_rng(7 + ndim)
  x, _ = random_case(rng, ndim, True)
  c = x.shape[-1]
  if lattice:  # integer shifts: the usual initialisation, the kinks
    s = rng.integers(-3, 4, size=(c, ndim)).astype(np.float64)
  else:
    s = rng.integers(-3, 3, size=(c, ndim)) + rng.uniform(0.2, 0.8, (c, ndim))
  g = rng.normal(size=x.shape)
  # One stride a case, alternating with ndim and the lattice flag.
  for strides in [1 + (ndim + lattice) % 2]:
    gs = g[(slice(None),) + (slice(None, None, strides),) * ndim]
    # Central differences of the scipy oracle's loss (float64 numpy).
    oracle = lambda s: float(np.sum(scipy_shift(
        x, s, padding=padding, strides=strides) * gs))
    want = central_difference(oracle, s)
    # The three modes' gradients in one jitted call (one compile, not six).
    grads = jax.jit(lambda s: {mode: jax.grad(lambda s: jnp.sum(
        jaxshift.shift(x, s, mode=mode, padding=padding, strides=strides,
                       impl=IMPL) * gs))(s) for mode in MODES})
    got = grads(jnp.asarray(s))
    for mode in ("active", "sparse"):  # sparse: straight-through
      np.testing.assert_allclose(got[mode], want, rtol=1e-6, atol=1e-6,
                                 err_msg=mode)
    np.testing.assert_array_equal(got["integer"], np.zeros_like(s))


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", PADDINGS)
def test_input_gradient_is_the_adjoint(x64, ndim, mode, padding):
  rng = np.random.default_rng(3 * ndim + len(padding))
  # Both layouts at one stride a case, the stride cycling with ndim, so each
  # (mode, padding) meets all four (layout, stride) pairs across the ranks.
  pairs = list(itertools.product([True, False], [1, 2]))
  first = pairs.index(_cycle(pairs, ndim, mode, padding))
  for channels_last, strides in (pairs[first], pairs[(first + 2) % 4]):
    x, s = random_case(rng, ndim, channels_last)
    cax = -1 if channels_last else 1
    # Traced shifts: the jnp path (NumPy ones would take the static path).
    f = lambda x: jaxshift.shift(x, jnp.asarray(s), mode=mode,
                                 padding=padding, channel_axis=cax,
                                 strides=strides, impl=IMPL)
    g = rng.normal(size=jax.eval_shape(f, x).shape)
    # A^T g in one jitted call (one compile, not one per step of an eager VJP).
    dx = jax.jit(lambda x, g: jax.vjp(f, x)[1](g)[0])(jnp.asarray(x),
                                                    jnp.asarray(g))
    # <A x, g> == <x, A^T g>, with A x from the scipy oracle.
    ax = scipy_shift(x, s, mode=mode, padding=padding, channel_axis=cax,
                     strides=strides)
    np.testing.assert_allclose(np.vdot(ax, g), np.vdot(x, dx), rtol=1e-10)
    # And a second direction: the identity holds for every x.
    x2 = rng.normal(size=x.shape)
    ax2 = scipy_shift(x2, s, mode=mode, padding=padding, channel_axis=cax,
                      strides=strides)
    np.testing.assert_allclose(np.vdot(ax2, g), np.vdot(x2, dx), rtol=1e-10)


# --------------------------------------------------------------------------
# Dtypes.
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6),
                                       (jnp.bfloat16, 1e-2),
                                       (jnp.float16, 2e-3)])
def test_dtypes(dtype, tol):
  rng = np.random.default_rng(0)
  x, s = random_case(rng, 2, True)
  xd = jnp.asarray(x, dtype)
  y = jaxshift.shift(xd, s, impl=IMPL)
  assert y.dtype == dtype
  want = scipy_shift(np.asarray(xd.astype(jnp.float32)), s)
  np.testing.assert_allclose(np.asarray(y, np.float32), want, rtol=tol,
                             atol=tol * 4)
  for s_dtype in (jnp.float32, jnp.bfloat16):
    dx, ds = jax.grad(lambda x, s: jnp.sum(jaxshift.shift(x, s, impl=IMPL)),
                      (0, 1))(xd, jnp.asarray(s, s_dtype))
    assert dx.dtype == dtype and ds.dtype == s_dtype


def test_float64(x64):
  rng = np.random.default_rng(1)
  x, s = random_case(rng, 3, False)
  y = jaxshift.shift(x, s, channel_axis=1, impl=IMPL)
  assert y.dtype == jnp.float64
  np.testing.assert_allclose(y, scipy_shift(x, s, channel_axis=1),
                             rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------
# Odd but legal input.
@pytest.mark.parametrize("mode", MODES)
def test_huge_shifts(mode):
  x = jnp.arange(1.0, 6.0)[None, :, None] * jnp.ones((1, 1, 2))
  s = jnp.array([[1e9], [-1e9]], jnp.float32)
  z = jaxshift.shift(x, s, mode=mode, impl=IMPL)
  np.testing.assert_array_equal(z, 0)
  b = jaxshift.shift(x, s, mode=mode, padding="border", impl=IMPL)
  np.testing.assert_array_equal(b[0, :, 0], 1)
  np.testing.assert_array_equal(b[0, :, 1], 5)
  p = jaxshift.shift(x, s, mode=mode, padding="periodic", impl=IMPL)
  # 1e9 = 200000000 * 5: a whole number of periods, so nothing moves.
  np.testing.assert_array_equal(p, x)
  big = jnp.array([[5 * 2**20 + 2], [-5 * 2**20 - 2]], jnp.float32)  # exact
  p = jaxshift.shift(x, big, mode=mode, padding="periodic", impl=IMPL)
  np.testing.assert_array_equal(p[0, :, 0], jnp.roll(x[0, :, 0], 2))
  np.testing.assert_array_equal(p[0, :, 1], jnp.roll(x[0, :, 1], -2))
  # The shift gradient: zero where every read is outside (zeros) or flat
  # (border); the identity's where 1e9 is a whole number of periods.
  g = jnp.asarray(np.random.default_rng(3).normal(size=x.shape), jnp.float32)
  for padding in PADDINGS:
    grad = jax.jit(jax.grad(lambda s: jnp.sum(jaxshift.shift(
        x, s, mode=mode, padding=padding, impl=IMPL) * g)))
    want = (jnp.zeros_like(s) if padding in ("zeros", "border")
            else grad(jnp.zeros_like(s)))
    np.testing.assert_allclose(grad(s), want, rtol=0, atol=1e-5, err_msg=padding)


def test_stride_beyond_the_axis_and_a_shift_beyond_every_bound(x64):
  oracles.check_far_stride_case(IMPL)


def test_nan_shift_affects_only_its_channel():
  x = jnp.ones((2, 4, 4, 3))
  s = jnp.array([[0.5, 0.0], [np.nan, 0.0], [1.0, -1.0]])
  for padding in PADDINGS:
    y = jaxshift.shift(x, s, padding=padding, impl=IMPL)
    assert np.all(np.isnan(y[..., 1]))
    assert np.all(np.isfinite(y[..., 0])) and np.all(np.isfinite(y[..., 2]))
    dx, ds = jax.grad(lambda x, s: jaxshift.shift(
        x, s, padding=padding, impl=IMPL).sum(), (0, 1))(x, s)
    assert np.all(np.isfinite(dx[..., 0])) and np.all(np.isfinite(ds[0]))
    assert np.all(np.isfinite(ds[2]))


def test_empty_batch():
  x = jnp.zeros((0, 4, 4, 3))
  s = jnp.ones((3, 2))
  assert jaxshift.shift(x, s, impl=IMPL).shape == (0, 4, 4, 3)
  dx, ds = jax.grad(lambda x, s: jaxshift.shift(x, s, impl=IMPL).sum(),
                    (0, 1))(x, s)
  assert dx.shape == x.shape
  np.testing.assert_array_equal(ds, 0)


def test_length_one_axis():
  x = jnp.full((1, 1, 2), 3.0)  # (N, W=1, C)
  s = jnp.array([[0.0], [2.0]])
  for padding in ("border", "periodic", "reflect", "symmetric"):
    np.testing.assert_array_equal(
        jaxshift.shift(x, s, mode="integer", padding=padding, impl=IMPL), x)
  z = jaxshift.shift(x, s, mode="integer", padding="zeros", impl=IMPL)
  np.testing.assert_array_equal(z[0, 0], [3.0, 0.0])


# --------------------------------------------------------------------------
# Transformations.
def test_jit_vmap_and_grad_compose():
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.normal(size=(3, 2, 6, 5, 4)), jnp.float32)  # vmap axis
  s = jnp.asarray(rng.normal(size=(3, 4, 2)), jnp.float32)
  f = lambda x, s: jaxshift.shift(x, s, impl=IMPL)
  loss = lambda x, s: jnp.sum(f(x, s) ** 2)
  # One sample at a time: the reference (one compile, three calls).
  s0 = s[0]
  one = jax.jit(lambda x, s: (f(x, s), f(x, s0), *jax.grad(loss, (0, 1))(x, s)))
  ref = [one(x[i], s[i]) for i in range(3)]
  ref = [jnp.stack(r) for r in zip(*ref)]  # y, y with s[0], dx, ds

  @jax.jit
  def transformed(x, s):
    return (jax.vmap(f)(x, s), jax.vmap(f, (0, None))(x, s[0]),
            *jax.vmap(jax.grad(loss, (0, 1)))(x, s),
            jax.grad(lambda x, s: jnp.sum(jax.vmap(f)(x, s) ** 2), 1)(x, s))

  y, y0, dx, ds, ds_outer = transformed(x, s)
  np.testing.assert_allclose(y, ref[0], atol=1e-6)
  np.testing.assert_allclose(y0, ref[1], atol=1e-6)
  np.testing.assert_allclose(dx, ref[2], atol=1e-5)
  np.testing.assert_allclose(ds, ref[3], rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(ds_outer, ref[3], rtol=1e-5, atol=1e-4)


def test_gradients_are_bitwise_repeatable():
  rng = np.random.default_rng(11)
  x = jnp.asarray(rng.normal(size=(4, 9, 7, 6)), jnp.float32)
  s = jnp.asarray(rng.normal(size=(6, 2)) * 2, jnp.float32)
  f = jax.jit(jax.grad(lambda x, s: jnp.sum(jnp.sin(jaxshift.shift(
      x, s, impl=IMPL))), (0, 1)))
  a, b = f(x, s), f(x, s)
  for u, v in zip(a, b):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


# --------------------------------------------------------------------------
# The jnp path at scale: O(1) work per element, bounded memory, locality of
# non-finite values, derivatives of any order.
_MEMORY_SCRIPT = r"""
import jax, jax.numpy as jnp, numpy as np
import jaxshift
x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 100000, 4)),
                jnp.float32)
s = jnp.array([[0.4], [-3.7], [2500.25], [-0.5]])
for padding in ("zeros", "reflect"):
  f = lambda x, s: jnp.sum(jnp.sin(jaxshift.shift(x, s, padding=padding,
                                                  impl="xla")))
  y, (dx, ds) = jax.jit(jax.value_and_grad(f, (0, 1)))(x, s)
  assert np.isfinite(float(y)) and dx.shape == x.shape and ds.shape == s.shape
# VmHWM: the peak resident set of this process image (ru_maxrss would carry
# the forking parent's over exec).
with open("/proc/self/status") as fh:
  print(next(int(l.split()[1]) for l in fh if l.startswith("VmHWM")) // 1024)
"""


def test_long_axis_memory_is_bounded():
  """(1, 100000, 4) forward and backward in a fresh process: under 1 GB
  resident (a dense per-axis matrix would need 160 GB)."""
  env = dict(os.environ, JAXSHIFT_DISABLE_KERNELS="1",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  peak_mb = int(out.stdout.split()[-1])
  assert peak_mb < 1024, f"peak resident memory {peak_mb} MB"


@pytest.mark.parametrize("padding", PADDINGS)
def test_non_finite_input_reaches_only_the_outputs_that_read_it(padding):
  """An inf in x (or in the cotangent) is non-finite exactly where the
  scipy oracle gives its position a non-zero weight."""
  rng = np.random.default_rng(4)
  shape, p = (1, 6, 5, 4), (0, 2, 3)             # (N, H, W, C), inf at x[p]
  s = np.array([[0.0, 0.0], [2.0, -1.0], [0.5, 1.25], [-3.5, 0.0]])
  combos = list(itertools.product((1, 2), ("active", "sparse")))
  x = rng.normal(size=shape)
  x[p + (slice(None),)] = np.inf
  delta = np.zeros(shape)
  delta[p + (slice(None),)] = 1.0
  reads, qs, gs = {}, {}, {}
  for strides, mode in combos:
    k = (mode, strides)
    reads[k] = scipy_shift(delta, s, mode=mode, padding=padding,
                           strides=strides) != 0
    # dx: an inf in g at output q reaches the inputs output q reads.
    qs[k] = tuple(np.argwhere(reads[k][..., 2])[0])
    gs[k] = np.zeros(reads[k].shape)
    gs[k][qs[k] + (2,)] = np.inf

  @jax.jit
  def forward_and_vjp(x, gs):  # every combination in one compile
    out = {}
    for strides, mode in combos:
      y, vjp = jax.vjp(lambda x: jaxshift.shift(
          x, jnp.asarray(s), mode=mode, padding=padding, strides=strides,
          impl=IMPL), x)
      out[mode, strides] = (y, vjp(gs[mode, strides])[0])
    return out

  got = forward_and_vjp(jnp.asarray(x), gs)
  for strides, mode in combos:
    y, dx = got[mode, strides]
    np.testing.assert_array_equal(~np.isfinite(y), reads[mode, strides],
                                  err_msg=f"{mode} {strides}")
    q = qs[mode, strides]
    read_by_q = np.zeros(shape, bool)
    for i in np.ndindex(shape[1:3]):
      d = np.zeros(shape)
      d[(0, *i, 2)] = 1.0
      read_by_q[(0, *i, 2)] = scipy_shift(
          d, s, mode=mode, padding=padding, strides=strides)[q + (2,)] != 0
    np.testing.assert_array_equal(~np.isfinite(dx), read_by_q,
                                  err_msg=f"dx {mode} {strides}")


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_hessian_matches_finite_differences_of_the_gradient(x64, padding):
  """jax.hessian with respect to the shifts (active mode, off the lattice)
  against central differences of the gradient."""
  rng = np.random.default_rng(8)
  x = jnp.asarray(rng.normal(size=(2, 6, 5, 3)))
  w = jnp.asarray(rng.normal(size=(2, 3, 5, 3)))
  s0 = rng.integers(-2, 2, size=(3, 2)) + rng.uniform(0.2, 0.8, (3, 2))
  loss = lambda s: jnp.sum(w * jaxshift.shift(
      x, s, padding=padding, strides=(2, 1), impl=IMPL) ** 2)
  h = jax.hessian(loss)(jnp.asarray(s0))
  grad = jax.jit(jax.grad(loss))
  eps = 1e-5
  want = np.zeros(s0.shape * 2)
  for i in np.ndindex(s0.shape):
    e = np.zeros(s0.shape)
    e[i] = eps
    want[(...,) + i] = (grad(s0 + e) - grad(s0 - e)) / (2 * eps)
  np.testing.assert_allclose(h, want, rtol=1e-6, atol=1e-6)
  assert np.abs(want).max() > 0.1  # not a vacuous comparison
