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

from jaxshift._src import shapes

Array = jax.Array


def compute_dtype(*dtypes) -> jnp.dtype:
  """float64 if any of `dtypes` is float64, else float32."""
  if any(jnp.dtype(d) == jnp.float64 for d in dtypes):
    return jnp.dtype(jnp.float64)
  return jnp.dtype(jnp.float32)


def pad_index(j: Array, length: int, padding: str) -> Array:
  """Maps integer positions `j` to indices in ``[0, length)``, or -1 for zero.

  Args:
    j: integer positions, any shape.
    length: the axis length ``L`` (static).
    padding: one of ``shapes.PADDINGS``.

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


def reduce_shift(s: Array, length: int, stride: int, padding: str) -> Array:
  """Brings shifts into a bounded range without changing the result.

  Periodic paddings reduce modulo their period (exactly, with ``lax.rem``);
  ``zeros`` and ``border`` clip to a range beyond which every read of every
  tap, the derivative's included, falls on the same side outside the axis.
  This keeps integer positions far inside int32 for any finite shift.
  """
  if padding == "periodic":
    return lax.rem(s, jnp.asarray(length, s.dtype))
  if padding == "reflect" and length > 1:
    return lax.rem(s, jnp.asarray(2 * length - 2, s.dtype))
  if padding == "symmetric":
    return lax.rem(s, jnp.asarray(2 * length, s.dtype))
  bound = length * stride + 2
  return jnp.clip(s, -bound, bound)


def axis_tables(s: Array, length: int, stride: int, padding: str, *,
                rounded: bool) -> tuple[Array, Array]:
  """Integer offset and fraction of one axis' shifts.

  Args:
    s: ``[..., C]`` shifts along this axis (float).
    length: ``L``.
    stride: ``t``.
    padding: padding rule.
    rounded: round half to even first (``sparse``/``integer`` forward).

  Returns:
    ``(m, f)``: ``m`` int32 ``[..., C]`` and ``f`` ``[..., C]`` in ``[0, 1)``
    (NaN where the shift is NaN), with ``-s == m + f`` after reduction.
  """
  if rounded:
    s = jnp.round(s)
  s = reduce_shift(s, length, stride, padding)
  neg = -s
  m = jnp.floor(neg)
  f = neg - m
  m = jnp.where(jnp.isfinite(m), m, 0).astype(jnp.int32)
  return m, f


def shift_tables(shifts: Array, lengths, strides, padding: str, *,
                 rounded: bool, dtype) -> tuple[Array, Array]:
  """`axis_tables` for every axis: ``m`` int32 and ``f`` ``[..., C, D]``."""
  s = shifts.astype(dtype)
  cols = [axis_tables(s[..., a], lengths[a], strides[a], padding,
                      rounded=rounded) for a in range(len(lengths))]
  return (jnp.stack([c[0] for c in cols], -1),
          jnp.stack([c[1] for c in cols], -1))


def _one_hot(j: Array, length: int, padding: str, dtype) -> Array:
  idx = pad_index(j, length, padding)[..., None]
  return (idx == lax.broadcasted_iota(jnp.int32, (1,) * j.ndim + (length,),
                                      j.ndim)).astype(dtype)


def axis_matrices(m: Array, f: Array, length: int, stride: int, padding: str,
                  *, derivative: bool = False) -> Array:
  """Per-channel interpolation matrices of one axis.

  Args:
    m, f: ``[C]`` tables from `axis_tables`.
    length, stride, padding: as in `axis_tables`.
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


def _matrices(cfg: shapes.ShiftConfig, shape, shifts, dtype, *, rounded,
              derivative=False):
  lengths = [shape[a] for a in cfg.spatial_axes]
  m, f = shift_tables(shifts, lengths, cfg.strides, cfg.padding,
                      rounded=rounded, dtype=dtype)
  return [axis_matrices(m[:, a], f[:, a], lengths[a], cfg.strides[a],
                        cfg.padding, derivative=derivative)
          for a in range(cfg.ndim)]


def _rounds(cfg: shapes.ShiftConfig) -> bool:
  return cfg.mode in ("sparse", "integer")


def forward(cfg: shapes.ShiftConfig, x: Array, shifts: Array) -> Array:
  """The shift of `x` by `shifts` as `cfg` describes, in pure jnp.

  Args:
    cfg: a validated `shapes.ShiftConfig`.
    x: input with ``C`` channels on ``cfg.channel_axis``.
    shifts: ``[C, D]``.

  Returns:
    ``cfg.out_shape(x.shape)``, dtype of `x`.
  """
  dt = compute_dtype(x.dtype, shifts.dtype)
  mats = _matrices(cfg, x.shape, shifts, dt, rounded=_rounds(cfg))
  y = x.astype(dt)
  for a, ax in enumerate(cfg.spatial_axes):
    y = _apply(y, mats[a], ax, cfg.channel_axis)
  return y.astype(x.dtype)


def backward(cfg: shapes.ShiftConfig, x: Array, shifts: Array,
             g: Array) -> tuple[Array, Array]:
  """Cotangents of `forward` for the output cotangent `g`.

  Returns:
    ``(dx, dshifts)``: ``dx`` is the exact adjoint of the forward applied to
    `g` (dtype of `x`); ``dshifts`` ``[C, D]`` is the derivative SPEC.md
    defines for ``cfg.mode`` (zero for ``integer``), summed over batch and
    space in float32 or wider, in the dtype of `shifts` (float32 if integer).
  """
  dt = compute_dtype(x.dtype, shifts.dtype)
  mats = _matrices(cfg, x.shape, shifts, dt, rounded=_rounds(cfg))
  gc = g.astype(dt)
  dx = gc
  for a, ax in reversed(list(enumerate(cfg.spatial_axes))):
    dx = _apply(dx, mats[a], ax, cfg.channel_axis, transpose=True)
  ds_dtype = (shifts.dtype if jnp.issubdtype(shifts.dtype, jnp.floating)
              else jnp.float32)
  if cfg.mode == "integer":
    return dx.astype(x.dtype), jnp.zeros(shifts.shape, ds_dtype)
  if cfg.mode == "sparse":  # straight-through: derivative at the unrounded s
    mats = _matrices(cfg, x.shape, shifts, dt, rounded=False)
  dmats = _matrices(cfg, x.shape, shifts, dt, rounded=False, derivative=True)
  xc = x.astype(dt)
  reduce_axes = tuple(i for i in range(x.ndim) if i != cfg.channel_axis)
  cols = []
  for a in range(cfg.ndim):
    v = xc
    for b, ax in enumerate(cfg.spatial_axes):
      v = _apply(v, dmats[b] if b == a else mats[b], ax, cfg.channel_axis)
    cols.append(jnp.sum(v * gc, axis=reduce_axes))
  ds = jnp.stack(cols, axis=-1)
  # A NaN shift makes its channel's whole gradient row NaN (as the kernels do).
  nan_row = jnp.any(jnp.isnan(shifts), axis=-1, keepdims=True)
  ds = jnp.where(nan_row, jnp.asarray(jnp.nan, dt), ds)
  return dx.astype(x.dtype), ds.astype(ds_dtype)
