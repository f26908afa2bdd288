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

How the jnp path applies one axis (O(1) work per element, O(size of x)
memory plus ``O(C L)`` tables, on every backend):

1. *Extend* the input along the axis over a small static *domain* of
   positions that stands for all of them (`_domain`): ``[-1, L]`` for
   ``zeros`` (0 beyond) and ``border`` (the ends repeat beyond), one period
   for ``periodic``, ``reflect`` and ``symmetric`` (``L``, ``2L - 2``, ``2L``).
   Static slices only (`_extend`).
2. Evaluate the *stencil* on the domain: the value ``(1-f) P(j) + f P(j+1)``
   (``P(j)`` alone at the lattice) or the slope, with per-channel weights;
   elementwise.
3. *Move*: output ``o`` of channel ``c`` reads the domain array at
   ``o t + m_c`` (wrapped, clamped or zero outside): one per-channel gather
   (`jnp.take_along_axis` with the channel as a batch dimension), the only
   data-dependent access.

The adjoint is the same three steps transposed, still gathers only
(`_collect`: the outputs that read a domain position form at most one
arithmetic progression), so it is deterministic on every backend, and the
shift gradient reuses the collected arrays (see `backward`). Every step is
jnp, so the path is differentiable to any order, and the gathers keep batch
and channel splits: it partitions with no collective in the forward.

Why gathers and not a one-hot contraction for short axes (as TPUs might
prefer): on the CPU (``benchmarks/jnp_path.py``,
``benchmarks/results/2026-12-01-cpu-2core-jnp-path.md``, zeros padding) the
gather path's forward measured faster than the earlier dense ``(C, Lo, L)``
one-hot product at every size measured (``L`` from 8 to 512: 1.2-4x), its
forward+backward faster from ``L = 32`` on (1.6x at 32, 2.3x at 512) and
1.2-1.3x slower at ``L`` of 8 and 16, and it scales where the dense product
needs ``C L^2`` memory. A TPU one-hot variant would need a TPU measurement
first; there is one path.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxshift._src import layout

Array = jax.Array


def pad_index(j: Array, length: int, padding: str, xp=jnp) -> Array:
  """Maps integer positions `j` to indices in ``[0, length)``, or -1 for zero.

  Args:
    j: integer positions, any shape.
    length: the axis length ``L`` (static).
    padding: one of ``jaxshift.PADDINGS``.
    xp: the array module (`jax.numpy`, or `numpy` for static positions).

  Returns:
    Integer array like `j`; -1 marks a read answered by 0 (``zeros`` only).

  >>> import jax.numpy as jnp
  >>> pad_index(jnp.arange(-3, 7), 4, "reflect").tolist()
  [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
  >>> pad_index(jnp.arange(-3, 7), 4, "symmetric").tolist()
  [2, 1, 0, 0, 1, 2, 3, 3, 2, 1]
  """
  if padding == "zeros":
    return xp.where((j >= 0) & (j < length), j, -1)
  if padding == "border" or (padding == "reflect" and length == 1):
    return xp.clip(j, 0, length - 1)
  if padding == "periodic":
    return xp.mod(j, length)
  if padding == "reflect":
    period = 2 * length - 2
    r = xp.mod(j, period)
    return xp.where(r < length, r, period - r)
  if padding == "symmetric":
    period = 2 * length
    r = xp.mod(j, period)
    return xp.where(r < length, r, period - 1 - r)
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


def centre(m, length: int, padding: str):
  """Integer offsets moved by whole periods of the padded axis into
  ``[-period/2, period/2)``: the same reads (`pad_index` repeats with the
  period), as near the output as they can be. Unchanged where the padding
  does not repeat.

  >>> centre(jnp.array([63, -1, 70]), 64, "periodic").tolist()
  [-1, -1, 6]
  """
  period = _period(length, padding)
  if period is None:
    return m
  return m - period * jnp.floor_divide(m + period // 2, period)


def _exact_dtype(dtype) -> jnp.dtype:
  """A dtype that holds every value of `dtype` and the reduction's bounds."""
  if jnp.issubdtype(dtype, jnp.integer):
    return jax.dtypes.canonicalize_dtype(jnp.int64)  # int32 without x64
  return jnp.promote_types(dtype, jnp.float32)  # float16/bfloat16 exactly


def on_lattice(v: Array) -> Array:
  """Whether each element of floating `v` is an integer, decided exactly in
  `v`'s own precision.

  A subnormal is never zero here: XLA's CPU runtime treats subnormal inputs
  as zero (denormals-are-zero), so ``v == floor(v)`` alone would put
  ``1e-45`` in float32 on the lattice; the bits decide instead.

  >>> import jax.numpy as jnp
  >>> on_lattice(jnp.array([0.0, -2.0, 1e-8, -1e-45, 0.5], jnp.float32))
  Array([ True,  True, False, False, False], dtype=bool)
  """
  info = jnp.finfo(v.dtype)
  # The bits as a signed integer: a subnormal has a zero exponent and a
  # non-zero mantissa, i.e. bits within (0, 2**nmant) above +0 or -0 (the
  # most negative integer). Comparisons only, no bitwise ops: they convert
  # everywhere (LiteRT has neither bitwise AND nor unsigned comparisons).
  itype = jnp.dtype(f"int{info.bits}")
  bits = lax.bitcast_convert_type(v, itype)
  first_normal = 1 << info.nmant
  negative_zero = np.iinfo(itype).min
  subnormal = (((bits > 0) & (bits < first_normal)) |
               ((bits > negative_zero) & (bits < negative_zero + first_normal)))
  return (v == jnp.floor(v)) & ~subnormal


@functools.partial(jax.jit, static_argnames=("length", "padding", "rounded", "dtype"))
def axis_tables(s: Array, length: int, padding: str, *, rounded: bool,
                dtype) -> tuple[Array, Array]:
  """Integer offset and fraction of one axis' shifts.

  The shifts are rounded (if asked) and reduced (`reduce_shift`) in their
  own precision, widened where that is exact (16-bit floats to float32,
  integers to the widest int, and to the compute `dtype` where that is
  wider), and only then is the fraction cast to the compute `dtype`. So a
  float64 shift of ``1e9 + 0.5`` under periodic padding keeps its half when
  ``x`` is float32.

  The lattice (``f == 0``: the derivative's mean rule) is decided from the
  shift itself (`on_lattice`), not from the rounded fraction: off the
  lattice the fraction is kept strictly inside ``(0, 1)`` and normal, so
  ``1e-8`` in float32, whose fraction ``1 - 1e-8`` rounds to 1, stays off
  the lattice (one-sided derivative) as ``-1e-8`` does, on every path.

  Args:
    s: ``[..., C]`` shifts along this axis (any float or int dtype).
    length: ``L``.
    padding: padding rule.
    rounded: round half to even first (``sparse``/``integer`` forward).
    dtype: the compute dtype of the fraction.

  Returns:
    ``(m, f)``: ``m`` int32 ``[..., C]`` and ``f`` ``[..., C]`` of `dtype`
    in ``[0, 1)`` (NaN where the shift is NaN), with ``-s == m + f`` after
    the reduction (to within `dtype`'s rounding), and ``f == 0`` exactly
    where the reduced shift is an integer.
  """
  s = s.astype(_exact_dtype(s.dtype))
  if jnp.issubdtype(s.dtype, jnp.integer):
    m = -reduce_shift(s, length, padding)
    return m.astype(jnp.int32), jnp.zeros(m.shape, dtype)
  s = s.astype(jnp.promote_types(s.dtype, dtype))
  if rounded:
    s = jnp.round(s)  # half to even
  reduced = reduce_shift(s, length, padding)
  # Decided from the shift as given (the reduction's arithmetic reads a
  # subnormal as 0 on the CPU; it keeps integers integers), except that a
  # far shift clipped by `reduce_shift` sits on the clip's integer bound.
  lattice = on_lattice(s) | (on_lattice(reduced) & (jnp.abs(s) > length + 2))
  neg = -reduced
  m = jnp.floor(neg)
  f = (neg - m).astype(dtype)
  # Off the lattice a fraction that rounded to 1 (a shift just above an
  # integer), or to a subnormal or 0 (a shift just below one, or a subnormal
  # shift the CPU read as 0: for a positive one floor(-s) then missed its
  # -1), is put back inside (0, 1).
  tiny = np.asarray(jnp.finfo(dtype).tiny, dtype)  # constants: no bit ops in the graph
  below_one = np.nextafter(np.asarray(1, dtype), np.asarray(0, dtype))
  flushed = ~lattice & (f < tiny) & ~jnp.signbit(s)
  m = jnp.where(flushed, m - 1, m)
  f = jnp.where(lattice, jnp.zeros_like(f),
                jnp.where(flushed, below_one, jnp.clip(f, tiny, below_one)))
  m = jnp.where(jnp.isfinite(m), m, 0)
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
    ``call.compute_dtype``, in the canonical axis order ``(A, B, W)``. For a
    shard's extended block (``call.halo``) the tables are the whole array's,
    with each split axis' offset re-centred (`centre`) and moved to the
    block.
  """
  dt = jnp.dtype(call.compute_dtype)
  halo = call.halo
  lengths = call.lengths if halo is None else halo.lengths
  ms, fs, d = [], [], 0
  for a in range(3):
    if call.present[a]:
      m, f = axis_tables(shifts[..., d], lengths[a], call.padding,
                         rounded=rounded, dtype=dt)
      if halo is not None and halo.split[a]:
        if halo.window[a]:  # relative to the channel's (unrounded) window
          m_u = m if not rounded else axis_tables(
              shifts[..., d], lengths[a], call.padding, rounded=False,
              dtype=dt)[0]
          m = m - m_u
        m = centre(m, lengths[a], call.padding) + halo.lo[a]
      d += 1
    else:
      m = jnp.zeros(shifts.shape[:-1], jnp.int32)
      f = jnp.zeros(shifts.shape[:-1], dt)
    ms.append(m)
    fs.append(f)
  return jnp.stack(ms, -1), jnp.stack(fs, -1)


class _Axis(NamedTuple):
  """One spatial axis of ``x`` as the jnp path sees it."""

  axis: int       # its index in x
  length: int     # L
  out: int        # Lo = ceil(L / stride)
  stride: int     # the canonical stride, min(stride, L)
  padding: str
  channel_axis: int
  ndim: int       # x.ndim


class _Domain(NamedTuple):
  """The positions ``start .. start + size - 1`` of the padded axis that
  stand for all of them: outside, a stencil's value is 0 (``fill``), that of
  the nearer end (``clamp``) or repeats with period ``size`` (``wrap``)."""

  start: int
  size: int
  kind: str


def _domain(ax: _Axis) -> _Domain:
  """The domain of every stencil along `ax` (stencils reach one position
  either side, so ``zeros`` and ``border`` need ``[-1, L]``)."""
  length, padding = ax.length, ax.padding
  if padding == "zeros":
    return _Domain(-1, length + 2, "fill")
  if padding == "border" or (padding == "reflect" and length == 1):
    return _Domain(-1, length + 2, "clamp")
  period = _period(length, padding)
  return _Domain(0, period, "wrap")


def _runs(idx: np.ndarray, max_step: int | None = 1
          ) -> list[tuple[int, int, int]]:
  """A static index sequence as runs ``(first, step, n)``: ``n`` reads from
  index ``first`` on with ``|step| <= max_step`` (any step if None);
  ``first == -1``: zeros."""
  runs, i = [], 0
  while i < len(idx):
    n, step = 1, 0
    if i + 1 < len(idx) and (idx[i] >= 0) == (idx[i + 1] >= 0):
      step = 0 if idx[i] < 0 else int(idx[i + 1] - idx[i])
      if max_step is not None and abs(step) > max_step:
        step = 0
      else:
        while (i + n < len(idx) and (idx[i + n] >= 0) == (idx[i] >= 0) and
               (idx[i] < 0 or idx[i + n] == idx[i] + n * step)):
          n += 1
    runs.append((int(idx[i]), step, n))
    i += n
  return runs


def _margins(ax: _Axis) -> tuple[int, int]:
  """How many positions `_extend` adds before and after the axis."""
  dom = _domain(ax)
  return 1 - dom.start, dom.start + dom.size + 1 - ax.length


def _outside(ax: _Axis):
  """The runs (`_runs`) of `_extend`'s positions beyond the axis' ends:
  ``(offset in the extended array, lowest index read, step, n)``."""
  before, after = _margins(ax)
  for positions, offset in ((np.arange(-before, 0), 0),
                            (np.arange(ax.length, ax.length + after),
                             before + ax.length)):
    for first, step, n in _runs(pad_index(positions, ax.length, ax.padding,
                                          xp=np)):
      if first >= 0:
        yield offset, (first if step >= 0 else first - n + 1), step, n
      offset += n


def _piece(v: Array, lo: int, step: int, n: int, ax: _Axis) -> Array:
  """A run of `_outside`, read from `v`."""
  piece = lax.slice_in_dim(v, lo, lo + (1 if step == 0 else n), axis=ax.axis)
  if step < 0:
    piece = lax.rev(piece, (ax.axis,))
  if step == 0 and n > 1:
    piece = jnp.repeat(piece, n, axis=ax.axis)
  return piece


def _extend(v: Array, ax: _Axis) -> Array:
  """`v` along the axis at the positions ``start - 1 .. start + size`` of its
  domain, through the padding rule (`pad_index`).

  Built as a zero-padded copy (`lax.pad`) with the reads beyond the ends
  written in (dynamic-update-slices of slices, reversed slices, repeated
  ends). Both force XLA to materialise the extended array: built as one
  concatenation it was fused into the gather that reads it and recomputed
  for every read, with the previous axis' gather inside (measured 2-3x
  slower at ``(8, 32, 32, 64)``).
  """
  config = [(0, 0, 0)] * v.ndim
  config[ax.axis] = (*_margins(ax), 0)
  e = lax.pad(v, jnp.zeros((), v.dtype), config)
  for offset, *run in _outside(ax):
    e = lax.dynamic_update_slice_in_dim(e, _piece(v, *run, ax), offset,
                                        ax.axis)
  return e


def _extend_adjoint(e: Array, ax: _Axis) -> Array:
  """The transpose of `_extend`: every read beyond an end folds back onto
  the position it read (sums of padded slices, one pass)."""
  length, before = ax.length, _margins(ax)[0]
  dx = lax.slice_in_dim(e, before, before + length, axis=ax.axis)
  for offset, lo, step, n in _outside(ax):
    back = lax.slice_in_dim(e, offset, offset + n, axis=ax.axis)
    if step < 0:
      back = lax.rev(back, (ax.axis,))
    elif step == 0:
      back = jnp.sum(back, axis=ax.axis, keepdims=True)
    config = [(0, 0, 0)] * e.ndim
    config[ax.axis] = (lo, length - lo - back.shape[ax.axis], 0)
    dx = dx + lax.pad(back, jnp.zeros((), e.dtype), config)
  return dx


def _place(table: Array, ax: _Axis) -> Array:
  """A ``[C, n]`` table laid out to broadcast against ``x`` (C, then ax.axis)."""
  shape = [1] * ax.ndim
  shape[ax.channel_axis] = table.shape[0]
  shape[ax.axis] = table.shape[1]
  if ax.channel_axis > ax.axis:
    # A bool table is transposed as int32: the TFLite converter folds the
    # transpose of a constant bool tensor wrongly (docs/guide/deploying.md).
    table = (table.astype(jnp.int32).T.astype(jnp.bool_)
             if table.dtype == jnp.bool_ else table.T)
  return table.reshape(shape)


def _per_channel(v: Array, ax: _Axis) -> Array:
  """A ``[C]`` vector laid out to broadcast against ``x``."""
  return _place(v[:, None], ax)


def _positions(n: int) -> Array:
  return jnp.arange(n, dtype=jnp.int32)[None, :]


def _taps(e: Array, first: int, ax: _Axis) -> Array:
  """The domain-sized window of the extended `e` from its position `first`."""
  return lax.slice_in_dim(e, first, first + _domain(ax).size, axis=ax.axis)


def _value_stencil(e, f, ax: _Axis, rounded: bool) -> Array:
  """On the domain: ``(1-f) P(j) + f P(j+1)``; ``P(j)`` alone at the lattice
  (``f == 0``, always when `rounded`), so a non-finite input reaches only
  the outputs that read it."""
  e1 = _taps(e, 1, ax)
  if rounded:
    return e1
  e2 = _taps(e, 2, ax)
  fc = _per_channel(f, ax)
  return jnp.where(fc == 0, e1, (1 - fc) * e1 + fc * e2)


def _value_stencil_adjoint(u, f, ax: _Axis, rounded: bool) -> Array:
  """The transpose of `_value_stencil`: a domain array back onto the
  extended positions."""
  widths = [(0, 0)] * u.ndim
  widths[ax.axis] = (1, 1)
  if rounded:
    return jnp.pad(u, widths)
  fc = _per_channel(f, ax)
  zero = jnp.zeros((), u.dtype)
  lattice = fc == 0
  own = jnp.where(lattice, u, (1 - fc) * u)
  widths_next = list(widths)
  widths_next[ax.axis] = (2, 0)
  return jnp.pad(own, widths) + jnp.pad(jnp.where(lattice, zero, fc * u),
                                        widths_next)


def _slope_stencil(e, f, ax: _Axis) -> Array:
  """On the domain: ``P(j) - P(j+1)``, at the lattice ``(P(j-1) - P(j+1))/2``
  (the mean of the one-sided slopes)."""
  lattice = _per_channel(f == 0, ax)
  e2 = _taps(e, 2, ax)
  return jnp.where(lattice, 0.5 * (_taps(e, 0, ax) - e2), _taps(e, 1, ax) - e2)


def _gather(v: Array, idx: Array, ax: _Axis) -> Array:
  """``v`` along ``ax.axis`` at the per-channel indices ``idx`` ``[C, n]``
  (the whole axis: under an explicit mesh the caller gathers it first,
  `partition.whole_spatial`)."""
  return jnp.take_along_axis(v, _place(idx, ax), axis=ax.axis, mode="clip")


def _masked(ok: Array, got: Array, ax: _Axis) -> Array:
  return jnp.where(_place(ok, ax), got, jnp.zeros((), got.dtype))


def _move(z: Array, m: Array, ax: _Axis) -> Array:
  """Output ``o`` of each channel reads the domain array `z` at
  ``k = o * t + m``: the one per-channel gather of an axis."""
  dom = _domain(ax)
  q = m[:, None] + ax.stride * _positions(ax.out) - dom.start   # [C, Lo]
  if dom.kind == "wrap":
    return _gather(z, jnp.remainder(q, dom.size), ax)
  got = _gather(z, jnp.clip(q, 0, dom.size - 1), ax)
  if dom.kind == "clamp":
    return got
  return _masked((q >= 0) & (q < dom.size), got, ax)


def _collect(g: Array, m: Array, ax: _Axis) -> Array:
  """The transpose of `_move`: domain index ``j`` sums ``g[o]`` over the
  outputs that read it, as a gather (deterministic on every backend).

  The reads ``k = m + o t`` of a channel span ``(Lo - 1) t <= L - 1``
  positions, less than a ``wrap`` domain's period, so each domain position
  is read by at most one output there (and by one in ``fill``); a ``clamp``
  domain's ends take every read beyond them, a masked sum along the axis.
  """
  dom = _domain(ax)
  t, span = ax.stride, (ax.out - 1) * ax.stride
  lo = m[:, None]                                   # [C, 1]: the first read
  j = _positions(dom.size)
  p = dom.start + j                                 # the domain's positions

  def meet(e):
    """The output reading position ``e`` (0 where none does)."""
    d = e - lo
    ok = (d >= 0) & (d <= span)
    if t > 1:
      ok &= jnp.remainder(d, t) == 0
    return _masked(ok, _gather(g, jnp.clip(d // t, 0, ax.out - 1), ax), ax)

  if dom.kind == "fill":
    return meet(p)
  if dom.kind == "wrap":
    return meet(p - dom.size * jnp.floor_divide(p - lo, dom.size))
  o = _positions(ax.out)
  low, high = dom.start, dom.start + dom.size - 1
  n_low = jnp.floor_divide(low - lo, t) + 1     # outputs o < n_low read <= low
  o_high = -jnp.floor_divide(lo - high, t)      # outputs o >= o_high read >= high
  ends = [jnp.sum(_masked(mask, g, ax), axis=ax.axis, keepdims=True)
          for mask in (o < n_low, o >= o_high)]
  return jnp.concatenate([ends[0], meet(p[:, 1:-1]), ends[1]], axis=ax.axis)


def _interpolate(v, m, f, ax: _Axis, rounded: bool) -> Array:
  """One axis of the forward: the value stencil, then the move."""
  return _move(_value_stencil(_extend(v, ax), f, ax, rounded), m, ax)


def _interpolate_adjoint(g, m, f, ax: _Axis, rounded: bool):
  """The transpose of `_interpolate`, and the collected domain array."""
  u = _collect(g, m, ax)
  e = _value_stencil_adjoint(u, f, ax, rounded)
  return _extend_adjoint(e, ax), u


def _axes(call: layout.ShiftCall, shifts: Array, *, rounded: bool):
  """``[(axis, m, f)]`` for the spatial axes of ``x``, in their order, and
  the ``[C]`` mask of channels the NaN rule makes NaN."""
  # The tables are materialised (an optimisation barrier): left to itself,
  # XLA fuses the reduction of the shifts into every element of the passes
  # that read them, which measured 2.5x slower at (8, 32, 32, 64) on the CPU.
  m, f = lax.optimization_barrier(shift_tables(call, shifts, rounded=rounded))
  ndim = len(call.in_shape)
  out, d = [], 0
  for a in range(3):
    if call.present[a]:
      ax = _Axis(call.spatial_axes[d], call.lengths[a], call.out_lengths[a],
                 call.kernel_strides[a], call.padding, call.channel_axis, ndim)
      out.append((ax, m[:, a], f[:, a]))
      d += 1
  return out, jnp.any(jnp.isnan(f), axis=-1)


def _nan_rule(v: Array, nan: Array, ax: _Axis) -> Array:
  """A channel whose shift is NaN (after the reduction) is NaN everywhere
  (zero, or False, in an integer or bool `v`, which has no NaN)."""
  fill = nan_fill(v.dtype)
  return jnp.where(_per_channel(nan, ax), fill, v)


def nan_fill(dtype) -> Array:
  """What the NaN rule writes in `dtype`: NaN, or 0 (False) where `dtype`
  has no NaN (the moves of integer and bool tensors)."""
  dtype = jnp.dtype(dtype)
  return jnp.asarray(jnp.nan if dtype.kind in "fc" else 0, dtype)


def _through(v: Array, axes, rounded: bool) -> list[Array]:
  """``[v, I_0 v, I_1 I_0 v, ...]``: `v` after each axis of the forward."""
  out = [v]
  for ax, m, f in axes:
    out.append(_interpolate(out[-1], m, f, ax, rounded))
  return out


def forward(call: layout.ShiftCall, x: Array, shifts: Array) -> Array:
  """The shift of `x` by `shifts` as `call` describes, in pure jnp.

  Args:
    call: the canonical call of ``(x, shifts)``.
    x: ``call.in_shape``.
    shifts: ``[C, D]``.

  Returns:
    ``call.out_shape``, dtype of `x`.
  """
  axes, nan = _axes(call, shifts, rounded=call.rounds)
  # An integer or bool x is only moved: in its own dtype, bit for bit.
  v = x if call.moves_bits else x.astype(call.compute_dtype)
  y = _through(v, axes, call.rounds)[-1]
  return _nan_rule(y, nan, axes[0][0]).astype(x.dtype)


def _adjoint(g: Array, axes, rounded: bool):
  """``I_0^T ... I_{D-1}^T g`` and the collected domain array of every axis."""
  us = [None] * len(axes)
  for a in reversed(range(len(axes))):
    ax, m, f = axes[a]
    g, us[a] = _interpolate_adjoint(g, m, f, ax, rounded)
  return g, us


def backward(call: layout.ShiftCall, x: Array, shifts: Array,
             g: Array) -> tuple[Array, Array]:
  """Cotangents of `forward` for the output cotangent `g`.

  With the axes ``0..D-1`` applied in order, ``y = I_{D-1} ... I_0 x`` and
  ``I_a = M_a V_a`` (the value stencil on the axis' domain, then the move),
  the shift derivative along axis ``a`` is ``<M_a S_a X_a, G_a>``, where
  ``X_a = I_{a-1} ... I_0 x``, ``G_a = I_{a+1}^T ... I_{D-1}^T g`` and
  ``S_a`` is the slope stencil. That is ``<S_a X_a, M_a^T G_a>``, and
  ``M_a^T G_a`` is the array the adjoint collects on its way to
  ``dx = I_0^T G_0``: the shift gradient costs no gather of its own. In
  ``sparse`` mode ``dx`` moves by the rounded shifts while the shift
  gradient is the active one, so ``dx`` is a second chain.

  Returns:
    ``(dx, dshifts)``: ``dx`` is the exact adjoint of the forward applied to
    `g` (dtype of `x`); ``dshifts`` ``[C, D]`` is the derivative
    ``docs/semantics.md`` defines for ``call.mode`` (zero for ``integer``),
    summed over batch and space in ``call.compute_dtype``, returned in
    ``call.grad_dtype``.
  """
  dt = jnp.dtype(call.compute_dtype)
  gc, xc = g.astype(dt), x.astype(dt)
  moved, nan = _axes(call, shifts, rounded=call.rounds)
  first = moved[0][0]
  if not call.shift_grad:
    dx, _ = _adjoint(gc, moved, True)
    return (_nan_rule(dx, nan, first).astype(x.dtype),
            jnp.zeros(shifts.shape, call.grad_dtype))
  axes = moved if not call.rounds else _axes(call, shifts, rounded=False)[0]
  inputs = _through(xc, axes[:-1], False)          # X_0 .. X_{D-1}
  dx, us = _adjoint(gc, axes, False)
  reduce_axes = tuple(i for i in range(x.ndim) if i != call.channel_axis)
  ds = jnp.stack([
      jnp.sum(_slope_stencil(_extend(v, ax), f, ax) * u, axis=reduce_axes)
      for v, u, (ax, m, f) in zip(inputs, us, axes)], axis=-1)
  if call.rounds:
    dx, _ = _adjoint(gc, moved, True)
  ds = jnp.where(nan[:, None], jnp.asarray(jnp.nan, dt), ds)
  return (_nan_rule(dx, nan, first).astype(x.dtype),
          ds.astype(call.grad_dtype))
