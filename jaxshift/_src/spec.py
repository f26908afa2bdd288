r"""The mathematics of a shift, written once.

This module is the reference: the pure-jnp implementation (``impl="xla"``), the
oracle the kernels are tested against, and the source of the per-channel
tables (integer offset and fraction) that the compiled kernels consume.

Definitions (see ``docs/semantics.md``): along one spatial axis of length ``L``
with stride ``t``, output position ``o`` of channel ``c`` reads the input at the
real position ``q = o*t - s_c``. With ``m = floor(-s_c)`` and
``f = -s_c - m`` (so ``0 <= f < 1``), ``k = o*t + m`` and

.. math::  out[o] = (1-f)\,P(k) + f\,P(k+1)

where ``P`` answers reads outside ``[0, L)`` through the padding rule. Over
several axes the interpolation is the tensor product of the per-axis ones.

Each axis is applied as a per-channel ``(Lo, L)`` matrix with at most two
non-zeros per row, contracted with one batched ``dot_general``. Its
transpose is the exact adjoint for every padding, and the product has no
gathers, so it partitions over batch and channel with no collective.
"""

import jax
import jax.numpy as jnp
from jax import lax

from jaxshift._src import layout

Array = jax.Array


def pad_index(j: Array, length: int, padding: str) -> Array:
  """Maps integer positions `j` to indices in ``[0, length)``, or -1 for zero.

  Args:
    j: integer positions, any shape.
    length: the axis length ``L`` (static).
    padding: one of ``jaxshift.PADDINGS``.

  Returns:
    Integer array like `j`; -1 marks a read answered by 0 (``zeros`` only).

  >>> import jax.numpy as jnp
  >>> pad_index(jnp.arange(-3, 7), 4, "reflect").tolist()
  [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
  >>> pad_index(jnp.arange(-3, 7), 4, "symmetric").tolist()
  [2, 1, 0, 0, 1, 2, 3, 3, 2, 1]
  """
  if padding == "zeros":
    return jnp.where((j >= 0) & (j < length), j, -1)
  if padding == "border" or (padding == "reflect" and length == 1):
    return jnp.clip(j, 0, length - 1)
  if padding == "periodic":
    return jnp.mod(j, length)
  if padding == "reflect":
    period = 2 * length - 2
    r = jnp.mod(j, period)
    return jnp.where(r < length, r, period - r)
  if padding == "symmetric":
    period = 2 * length
    r = jnp.mod(j, period)
    return jnp.where(r < length, r, period - 1 - r)
  raise ValueError(f"unknown padding {padding!r}")


def _period(length: int, padding: str) -> int | None:
  """The period of the padded axis, or None where reads do not repeat."""
  if padding == "periodic":
    return length
  if padding == "reflect" and length > 1:
    return 2 * length - 2
  if padding == "symmetric":
    return 2 * length
  return None


def reduce_shift(s: Array, length: int, padding: str) -> Array:
  """Brings shifts into a bounded range without changing the result.

  The periodic paddings reduce modulo their period (exactly: `lax.rem` is
  exact in floating point and in integers). ``zeros`` and ``border`` (and
  ``reflect`` on an axis of length 1) clip to ``[-(L + 2), L + 2]``: every
  output position ``o * t`` is at most ``L - 1`` whatever the stride, so a
  shift beyond ``L + 1`` already reads every tap, the lattice rule's
  included, outside the axis on one side, and the clipped shift reads the
  same. After the reduction ``|s| <= 2 L``, so positions stay far inside
  int32 (`shapes.MAX_AXIS_LENGTH`).

  Args:
    s: shifts along one axis, any shape, in a dtype that holds them exactly.
    length: ``L``.
    padding: the padding rule.
  """
  period = _period(length, padding)
  if period is not None:
    return lax.rem(s, jnp.asarray(period, s.dtype))
  return jnp.clip(s, -(length + 2), length + 2)


def _exact_dtype(dtype) -> jnp.dtype:
  """A dtype that holds every value of `dtype` and the reduction's bounds."""
  if jnp.issubdtype(dtype, jnp.integer):
    return jax.dtypes.canonicalize_dtype(jnp.int64)  # int32 without x64
  return jnp.promote_types(dtype, jnp.float32)  # float16/bfloat16 exactly


def axis_tables(s: Array, length: int, padding: str, *, rounded: bool,
                dtype) -> tuple[Array, Array]:
  """Integer offset and fraction of one axis' shifts.

  The shifts are rounded (if asked) and reduced (`reduce_shift`) in their
  own precision, widened where that is exact (16-bit floats to float32,
  integers to the widest int), and only then is the fraction cast to the
  compute `dtype`. So a float64 shift of ``1e9 + 0.5`` under periodic
  padding keeps its half when ``x`` is float32.

  Args:
    s: ``[..., C]`` shifts along this axis (any float or int dtype).
    length: ``L``.
    padding: padding rule.
    rounded: round half to even first (``sparse``/``integer`` forward).
    dtype: the compute dtype of the fraction.

  Returns:
    ``(m, f)``: ``m`` int32 ``[..., C]`` and ``f`` ``[..., C]`` of `dtype`
    in ``[0, 1)`` (NaN where the shift is NaN), with ``-s == m + f`` after
    the reduction.
  """
  s = s.astype(_exact_dtype(s.dtype))
  if jnp.issubdtype(s.dtype, jnp.integer):
    m = -reduce_shift(s, length, padding)
    return m.astype(jnp.int32), jnp.zeros(m.shape, dtype)
  if rounded:
    s = jnp.round(s)  # half to even
  neg = -reduce_shift(s, length, padding)
  m = jnp.floor(neg)
  f = (neg - m).astype(dtype)
  # A fraction just below 1 may round to 1 in a narrower compute dtype: the
  # shift is then the next integer there.
  carry = f >= 1
  m = jnp.where(jnp.isfinite(m), m + carry.astype(m.dtype), 0)
  f = jnp.where(carry, jnp.zeros_like(f), f)
  return m.astype(jnp.int32), f


def shift_tables(call: layout.ShiftCall, shifts: Array, *,
                 rounded: bool) -> tuple[Array, Array]:
  """`axis_tables` for every canonical axis (zeros where an axis is absent).

  Args:
    call: the canonical call.
    shifts: ``[..., C, D]``.
    rounded: round half to even first.

  Returns:
    ``(m, f)``: ``[..., C, 3]`` int32 offsets and fractions of
    ``call.compute_dtype``, in the canonical axis order ``(A, B, W)``.
  """
  dt = jnp.dtype(call.compute_dtype)
  ms, fs, d = [], [], 0
  for a in range(3):
    if call.present[a]:
      m, f = axis_tables(shifts[..., d], call.lengths[a], call.padding,
                         rounded=rounded, dtype=dt)
      d += 1
    else:
      m = jnp.zeros(shifts.shape[:-1], jnp.int32)
      f = jnp.zeros(shifts.shape[:-1], dt)
    ms.append(m)
    fs.append(f)
  return jnp.stack(ms, -1), jnp.stack(fs, -1)


def _one_hot(j: Array, length: int, padding: str, dtype) -> Array:
  idx = pad_index(j, length, padding)[..., None]
  return (idx == lax.broadcasted_iota(jnp.int32, (1,) * j.ndim + (length,),
                                      j.ndim)).astype(dtype)


def axis_matrices(m: Array, f: Array, length: int, stride: int, padding: str,
                  *, derivative: bool = False) -> Array:
  """Per-channel interpolation matrices of one axis.

  Args:
    m, f: ``[C]`` tables from `axis_tables`.
    length, padding: as in `axis_tables`.
    stride: the axis' stride (at most ``length``).
    derivative: return ``d out / d s`` instead of the interpolation. At a
      lattice point (``f == 0``) this is the mean of the one-sided
      derivatives, ``(P(k-1) - P(k+1)) / 2``; elsewhere ``P(k) - P(k+1)``.

  Returns:
    ``[C, Lo, L]`` with ``Lo = ceil(L / stride)``, dtype of `f`.
  """
  lo = -(-length // stride)
  k = jnp.arange(lo, dtype=jnp.int32)[None, :] * stride + m[:, None]
  fw = f[..., None, None]
  hot = lambda j: _one_hot(j, length, padding, f.dtype)
  if not derivative:
    return (1 - fw) * hot(k) + fw * hot(k + 1)
  at_lattice = hot(k - 1) * 0.5 - hot(k + 1) * 0.5
  off_lattice = hot(k) - hot(k + 1)
  return jnp.where(fw == 0, at_lattice, off_lattice)


def _apply(x: Array, mat: Array, axis: int, channel_axis: int,
           transpose: bool = False) -> Array:
  """Contracts `mat` ``[C, Lo, L]`` with `x` along `axis`, batched over C."""
  letters = "abcdefghijklmnopqrstuvw"[:x.ndim]
  new = "y"
  lhs = letters
  out = letters.replace(letters[axis], new)
  c = letters[channel_axis]
  mat_sub = c + ((letters[axis] + new) if transpose else (new + letters[axis]))
  return jnp.einsum(f"{lhs},{mat_sub}->{out}", x, mat,
                    precision=lax.Precision.HIGHEST,
                    preferred_element_type=mat.dtype)


def _matrices(call: layout.ShiftCall, shifts, *, rounded, derivative=False):
  """One ``[C, Lo, L]`` matrix per spatial axis of ``x``, in its order."""
  m, f = shift_tables(call, shifts, rounded=rounded)
  return [axis_matrices(m[:, a], f[:, a], call.lengths[a],
                        call.kernel_strides[a], call.padding,
                        derivative=derivative)
          for a in range(3) if call.present[a]]


def forward(call: layout.ShiftCall, x: Array, shifts: Array) -> Array:
  """The shift of `x` by `shifts` as `call` describes, in pure jnp.

  Args:
    call: the canonical call of ``(x, shifts)``.
    x: ``call.in_shape``.
    shifts: ``[C, D]``.

  Returns:
    ``call.out_shape``, dtype of `x`.
  """
  dt = jnp.dtype(call.compute_dtype)
  mats = _matrices(call, shifts, rounded=call.rounds)
  y = x.astype(dt)
  for mat, ax in zip(mats, call.spatial_axes):
    y = _apply(y, mat, ax, call.channel_axis)
  return y.astype(x.dtype)


def backward(call: layout.ShiftCall, x: Array, shifts: Array,
             g: Array) -> tuple[Array, Array]:
  """Cotangents of `forward` for the output cotangent `g`.

  Returns:
    ``(dx, dshifts)``: ``dx`` is the exact adjoint of the forward applied to
    `g` (dtype of `x`); ``dshifts`` ``[C, D]`` is the derivative
    ``docs/semantics.md`` defines for ``call.mode`` (zero for ``integer``),
    summed over batch and space in ``call.compute_dtype``, returned in
    ``call.grad_dtype``.
  """
  dt = jnp.dtype(call.compute_dtype)
  mats = _matrices(call, shifts, rounded=call.rounds)
  gc = g.astype(dt)
  dx = gc
  for mat, ax in reversed(list(zip(mats, call.spatial_axes))):
    dx = _apply(dx, mat, ax, call.channel_axis, transpose=True)
  if not call.shift_grad:
    return dx.astype(x.dtype), jnp.zeros(shifts.shape, call.grad_dtype)
  if call.rounds:  # straight-through: the derivative at the unrounded s
    mats = _matrices(call, shifts, rounded=False)
  dmats = _matrices(call, shifts, rounded=False, derivative=True)
  xc = x.astype(dt)
  reduce_axes = tuple(i for i in range(x.ndim) if i != call.channel_axis)
  cols = []
  for a in range(call.ndim):
    v = xc
    for b, ax in enumerate(call.spatial_axes):
      v = _apply(v, dmats[b] if b == a else mats[b], ax, call.channel_axis)
    cols.append(jnp.sum(v * gc, axis=reduce_axes))
  ds = jnp.stack(cols, axis=-1)
  # A NaN shift makes its channel's whole gradient row NaN (as the kernels do).
  ds = jnp.where(nan_rows(shifts), jnp.asarray(jnp.nan, dt), ds)
  return dx.astype(x.dtype), ds.astype(call.grad_dtype)


def nan_rows(shifts: Array) -> Array:
  """``[C, 1]``: the channels with a NaN shift (their whole row is NaN)."""
  if not jnp.issubdtype(shifts.dtype, jnp.floating):
    return jnp.zeros(shifts.shape[:-1] + (1,), bool)
  return jnp.any(jnp.isnan(shifts), axis=-1, keepdims=True)

