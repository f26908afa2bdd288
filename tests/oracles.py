"""Independent oracles the tests compare jaxshift against (none is ours),
and the cases several test modules check on their own path.

`scipy_shift` is `scipy.ndimage.shift` channel by channel, in float64;
`tsm_shift` is TSM's own function; `central_difference` the gradient oracle.
The `check_*` functions hold cases that every path must pass: the jnp path
(tests/test_shift.py) and the kernels (tests/test_ffi.py) call them with
their `impl`. Test modules import this module, never each other.
"""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage

import jaxshift

SCIPY_MODE = {"zeros": "grid-constant", "border": "nearest",
              "periodic": "grid-wrap", "reflect": "mirror",
              "symmetric": "reflect"}


def scipy_shift(x, shifts, *, mode="active", padding="zeros", channel_axis=-1,
                strides=1):
  """`scipy.ndimage.shift` of every channel by its shift (float64).

  `x` is channels-last or channels-first (`channel_axis`), with any batch
  axes; sparse and integer modes round half to even first (`np.round`).
  """
  x = np.asarray(x, np.float64)
  shifts = np.asarray(shifts, np.float64)
  ndim = shifts.shape[1]
  if mode in ("sparse", "integer"):
    shifts = np.round(shifts)
  cax = channel_axis % x.ndim
  xc = np.moveaxis(x, cax, -1)  # (..., *spatial, C)
  strides = (strides,) * ndim if np.isscalar(strides) else tuple(strides)
  batch = xc.shape[:-1 - ndim]
  flat = xc.reshape((-1,) + xc.shape[-1 - ndim:])
  outs = []
  for n in range(flat.shape[0]):
    chans = []
    for c in range(flat.shape[-1]):
      y = scipy.ndimage.shift(flat[n, ..., c], shifts[c], order=1,
                              prefilter=False, mode=SCIPY_MODE[padding])
      chans.append(y[tuple(slice(None, None, t) for t in strides)])
    outs.append(np.stack(chans, -1))
  out_sp = tuple(-(-xc.shape[len(batch) + a] // strides[a])
                 for a in range(ndim))
  out = np.stack(outs, 0) if outs else np.zeros(
      (0,) + out_sp + (x.shape[cax],))
  out = out.reshape(batch + out_sp + (x.shape[cax],))
  return np.moveaxis(out, -1, cax)


def central_difference(f, s, eps=1e-6):
  """d f / d s by central differences, entry by entry (float64).

  At a kink of a piecewise-linear f this is exactly the mean of the two
  one-sided derivatives, which is what docs/semantics.md asks of the shift
  gradient at a lattice point.
  """
  s = np.asarray(s, np.float64)
  out = np.zeros_like(s)
  for idx in np.ndindex(s.shape):
    e = np.zeros_like(s)
    e[idx] = eps
    out[idx] = (f(s + e) - f(s - e)) / (2 * eps)
  return out


def tsm_shift(x, n_segment, fold_div):
  """TSM, ops/temporal_shift.py `shift`: x is (N*T, C, H, W)."""
  nt, c, h, w = x.shape
  x = x.reshape(nt // n_segment, n_segment, c, h, w)
  fold = c // fold_div
  out = np.zeros_like(x)
  out[:, :-1, :fold] = x[:, 1:, :fold]  # shift left
  out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]  # shift right
  out[:, :, 2 * fold:] = x[:, :, 2 * fold:]  # not shift
  return out.reshape(nt, c, h, w)


# The worked cases of SPEC.md (channels-first, one channel).
WORKED = [
    ("active", 0.25, "zeros", [0.75, 1.75, 2.75, 3.75, 4.75]),
    ("active", -0.5, "zeros", [1.5, 2.5, 3.5, 4.5, 2.5]),
    ("active", 1.0, "zeros", [0, 1, 2, 3, 4]),
    ("sparse", 0.6, "zeros", [0, 1, 2, 3, 4]),
    ("sparse", 0.5, "zeros", [1, 2, 3, 4, 5]),
    ("sparse", 2.5, "zeros", [0, 0, 1, 2, 3]),
    ("integer", 2, "border", [1, 1, 1, 2, 3]),
    ("integer", 2, "periodic", [4, 5, 1, 2, 3]),
    ("integer", 2, "reflect", [3, 2, 1, 2, 3]),
    ("integer", 2, "symmetric", [2, 1, 1, 2, 3]),
    ("integer", -2, "reflect", [3, 4, 5, 4, 3]),
]


def worked_cases(impl):
  """SPEC.md's worked cases on `impl`: forward, and the 1-D gradients."""
  for mode, s, padding, want in WORKED:
    x = jnp.array([[[1.0, 2, 3, 4, 5]]])  # (N, C, W)
    out = jaxshift.shift(x, jnp.array([[s]], jnp.float32), mode=mode,
                         padding=padding, channel_axis=1, impl=impl)
    np.testing.assert_allclose(out[0, 0], want, rtol=0, atol=1e-6,
                               err_msg=f"{mode} {s} {padding}")
  x = jnp.arange(1.0, 10).reshape(1, 1, 3, 3)
  out = jaxshift.shift(x, jnp.array([[0.5, 0.0]]), channel_axis=1, impl=impl)
  np.testing.assert_allclose(
      out[0, 0], [[0.5, 1, 1.5], [2.5, 3.5, 4.5], [5.5, 6.5, 7.5]], atol=1e-6)
  x = jnp.array([[[0.0, 1, 4, 9, 16]]])
  g = jnp.zeros((1, 1, 5)).at[0, 0, 2].set(1.0)
  for s, want_ds, want_dx in [(0.5, -3.0, [0, 0.5, 0.5, 0, 0]),
                              (0.0, -4.0, [0, 0, 1, 0, 0])]:
    f = lambda x, s: jnp.sum(
        jaxshift.shift(x, s, channel_axis=1, impl=impl) * g)
    dx, ds = jax.grad(f, (0, 1))(x, jnp.array([[s]]))
    np.testing.assert_allclose(ds, [[want_ds]], atol=1e-6)
    np.testing.assert_allclose(dx[0, 0], want_dx, atol=1e-6)


def check_far_stride_case(impl):
  """One output, read from a far position clamped to the last input: its
  gradient goes to x[2048] alone and the shift gradient is exactly 0 (the
  read is flat there). Positions past 2**31 once overflowed here."""
  x = jnp.zeros((1, 2049, 1)).at[0, 2048, 0].set(2.0)
  s = jnp.array([[-1e10]])
  f = lambda x, s: jaxshift.shift(x, s, padding="border", strides=2**20,
                                  impl=impl)
  np.testing.assert_array_equal(f(x, s), [[[2.0]]])
  dx, ds = jax.grad(lambda x, s: jnp.sum(f(x, s)), (0, 1))(x, s)
  want = np.zeros(2049)
  want[2048] = 1.0
  np.testing.assert_array_equal(dx[0, :, 0], want)
  np.testing.assert_array_equal(ds, [[0.0]])


# Tiny shifts, both signs (SPEC, "the lattice"): none is an integer in
# float32, so each takes the one-sided derivative of its side.
TINY_SHIFTS = (1e-8, 1e-30, 1e-45, -1e-8, -1e-30, -1e-45)


def check_tiny_shifts(impl):
  """Every padding: the shift gradient of a tiny shift is the one-sided
  derivative, read off scipy (the output is linear in ``s`` on ``(0, 1)``
  and on ``(-1, 0)``), and the output is scipy's at ``s`` (``x`` itself)."""
  rng = np.random.default_rng(24)
  c = len(TINY_SHIFTS)
  x = rng.normal(size=(1, 9, c)).astype(np.float32)
  g = rng.normal(size=(1, 9, c)).astype(np.float32)
  s = np.array(TINY_SHIFTS, np.float32)[:, None]
  side = np.sign(s)
  for padding in jaxshift.PADDINGS:
    step = lambda t: scipy_shift(x, t, padding=padding)
    slope = (step(0.5 * side) - step(0 * side)) / (0.5 * side[:, 0])
    want_ds = np.sum(g * slope, axis=(0, 1))[:, None]
    f = jax.jit(lambda x, s: jax.value_and_grad(lambda s: jnp.sum(
        jaxshift.shift(x, s, padding=padding, impl=impl) * g))(s))
    y = jaxshift.shift(x, s, padding=padding, impl=impl)
    _, ds = f(jnp.asarray(x), jnp.asarray(s))
    np.testing.assert_allclose(y, step(s), rtol=0, atol=1e-6, err_msg=padding)
    np.testing.assert_allclose(ds, want_ds, rtol=1e-5, atol=1e-5,
                               err_msg=f"{padding}: {TINY_SHIFTS}")


# ---------------------------------------------------------------------------
# Integer and bool tensors (SPEC, "Integer tensors"): the moves, bit for bit.
NUMPY_PAD = {"zeros": "constant", "border": "edge", "periodic": "wrap",
             "reflect": "reflect", "symmetric": "symmetric"}


def numpy_move(x, shifts, *, padding="zeros", channel_axis=-1, strides=1):
  """Every channel of `x` (any dtype) moved by ``round(shifts)`` (half to
  even) with `numpy.pad` and slicing: exact, no arithmetic on the values."""
  x = np.asarray(x)
  s = np.round(np.asarray(shifts, np.float64)).astype(np.int64)
  ndim = s.shape[1]
  strides = (strides,) * ndim if np.isscalar(strides) else tuple(strides)
  xc = np.moveaxis(x, channel_axis % x.ndim, -1)  # (..., *spatial, C)
  chans = []
  for c in range(xc.shape[-1]):
    v = xc[..., c]
    for d in range(ndim):
      a = v.ndim - ndim + d
      length, k = v.shape[a], int(s[c, d])
      mode = NUMPY_PAD[padding]
      if padding == "reflect" and length == 1:
        mode = "edge"  # SPEC: the only index is 0
      widths = [(0, 0)] * v.ndim
      widths[a] = (abs(k), abs(k))
      padded = np.pad(v, widths, mode=mode)
      v = np.take(padded, np.arange(0, length, strides[d]) - k + abs(k), axis=a)
    chans.append(v)
  return np.moveaxis(np.stack(chans, -1), -1, channel_axis % x.ndim)


def move_dtypes():
  """The integer and bool dtypes of the moves (int64 with x64 on)."""
  out = [np.bool_, np.int8, np.uint8, np.int16, np.int32]
  if jax.config.jax_enable_x64:
    out.append(np.int64)
  return out


def random_values(rng, shape, dtype):
  """Values over the dtype's whole range (for 16- and 32-bit integers that
  includes every float NaN and subnormal bit pattern)."""
  if dtype == np.bool_:
    return rng.integers(0, 2, size=shape).astype(np.bool_)
  info = np.iinfo(dtype)
  return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def check_integer_moves(impl, *, static=False):
  """Every move dtype and padding, both rounding modes, layouts, 1-3 axes and
  strides cycled: `jaxshift.shift` equals `numpy_move` bit for bit and keeps
  x's dtype. `static`: the shifts as a NumPy table (the static path)."""
  rng = np.random.default_rng(25)
  dtypes, paddings = move_dtypes(), jaxshift.PADDINGS
  # Each dtype and each padding (cycled against each other), each rank and
  # layout; the two rounding modes alternate (they are one forward).
  for i in range(max(len(dtypes), len(paddings)) * 2):
    dtype, padding = dtypes[i % len(dtypes)], paddings[(i // 2) % len(paddings)]
    ndim, last = 1 + i % 3, i % 2 == 0
    lengths = tuple(int(n) for n in rng.integers(1, 7, ndim))
    c = 3
    shape = (2, *lengths, c) if last else (2, c, *lengths)
    x = random_values(rng, shape, dtype)
    s = rng.integers(-8, 9, (c, ndim)).astype(np.float32) + 0.5 * (i % 2)
    strides = 1 + i % 2
    kw = dict(padding=padding, channel_axis=-1 if last else 1, strides=strides)
    want = numpy_move(x, s, **kw)
    mode = ("integer", "sparse")[(i // 3) % 2]
    shifts = s if static else jnp.asarray(s)
    y = jaxshift.shift(jnp.asarray(x), shifts, mode=mode, impl=impl, **kw)
    assert y.dtype == x.dtype, (dtype, y.dtype)
    np.testing.assert_array_equal(np.asarray(y), want,
                                  err_msg=f"{np.dtype(dtype)} {padding} {mode}")
