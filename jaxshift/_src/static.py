"""Shifts known at trace time, as plain XLA: slices, pads, concatenations.

When the shifts of a call are concrete (a NumPy array or a Python sequence,
such as the tables of `jaxshift.grouped_shifts` and friends, or the shifts
of a frozen model), the move of every channel is known while tracing. Each run of
neighbouring channels with the same offsets is then moved axis by axis with
static (strided, reversed) slices of its input, joined and zero-padded per
the padding rule (`spec.pad_index` decides every read, so the result is the
jnp path's, bit for bit), and the runs are concatenated back along the
channel axis. No custom call and no gather: XLA fuses the whole move into
its neighbours, the graph exports anywhere (`jax.export`), and ordinary
autodiff gives the exact input gradient (the transposes are pads, slices
and sums). Concrete shifts carry no gradient, so none is computed.

An ``active`` call (`active`) is a few whole-tensor integer moves (one per
combination of integer offsets its channels read) weighted by constant
per-channel bilinear weights: multiplies and adds that XLA fuses with the
moves into one loop, still no gather and no custom call, equal to the
kernels within float rounding.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxshift._src import layout
from jaxshift._src import spec

Array = jax.Array

# Beyond this many channel runs (e.g. a modulo assignment over many
# channels), channels are grouped by offset with one static gather, and put
# back in order with another, instead of one slice per run.
_MAX_RUNS = 32


def is_static(shifts) -> bool:
  """Whether `shifts` is concrete at trace time (NumPy, Python numbers or
  sequences of them). A jax.Array, tracer or not, anywhere in it makes it
  dynamic: its values could change from call to call, and each value would
  compile anew."""
  return not any(isinstance(leaf, jax.Array)
                 for leaf in jax.tree.leaves(shifts))


def as_numpy(shifts) -> np.ndarray:
  """Concrete `shifts` as a NumPy array, or an error naming the argument."""
  try:
    out = np.asarray(shifts)
  except ValueError as e:  # ragged nesting
    raise ValueError(f"`shifts` must be a [C, D] array of numbers; got "
                     f"{shifts!r} ({e}).") from None
  if out.dtype.kind not in "biuf":
    raise TypeError(f"`shifts` must be a [C, D] array of numbers; got dtype "
                    f"{out.dtype} ({shifts!r}).")
  return out


def tables(call: layout.ShiftCall, shifts) -> tuple[np.ndarray, np.ndarray]:
  """``(m, f)``: the ``[C, 3]`` integer offsets the call reads at (output
  ``o`` reads padded position ``o * stride + m``, and ``m + 1``) and the
  fractions (0 in a rounding mode, NaN where the shift is), both NumPy, from
  the jnp path's own tables (`spec.shift_tables`)."""
  with jax.ensure_compile_time_eval():
    m, f = spec.shift_tables(call, jnp.asarray(shifts), rounded=call.rounds)
    return np.asarray(m), np.asarray(f)


def move_axis(v: Array, axis: int, length: int, out: int, stride: int,
               padding: str, m: int) -> Array:
  """Output ``o`` of `v` along `axis` reads padded position
  ``o * stride + m``: static slices, reversed slices, repeated ends, zeros."""
  idx = spec.pad_index(np.arange(out) * stride + m, length, padding, xp=np)
  if out == length and np.array_equal(idx, np.arange(length)):
    return v
  runs = spec._runs(idx, max_step=None)  # pylint: disable=protected-access
  lo = runs.pop(0)[2] if runs[0][0] < 0 else 0
  hi = runs.pop()[2] if runs and runs[-1][0] < 0 else 0
  if not runs:  # every read is outside: zeros
    shape = list(v.shape)
    shape[axis] = out
    return jnp.zeros(shape, v.dtype)
  pieces = []
  for first, step, n in runs:
    if step == 0:  # a repeated end (border), or a single read
      piece = lax.slice_in_dim(v, first, first + 1, axis=axis)
      if n > 1:
        piece = jnp.repeat(piece, n, axis=axis)
    elif step > 0:
      piece = lax.slice_in_dim(v, first, first + step * (n - 1) + 1,
                               stride=step, axis=axis)
    else:
      last = first + step * (n - 1)
      piece = lax.rev(lax.slice_in_dim(v, last, first + 1, stride=-step,
                                       axis=axis), (axis,))
    pieces.append(piece)
  moved = pieces[0] if len(pieces) == 1 else lax.concatenate(pieces, axis)
  if lo or hi:
    config = [(0, 0, 0)] * v.ndim
    config[axis] = (lo, hi, 0)
    moved = lax.pad(moved, jnp.zeros((), v.dtype), config)
  return moved


def _move(call: layout.ShiftCall, v: Array, key: tuple) -> Array:
  """Channels `v`, all with the same ``key = (*m_row, nan)``, moved along
  every spatial axis."""
  *m_row, nan = key
  if nan:  # NaN everywhere, and so is the input gradient (the NaN rule)
    spatial = tuple(call.spatial_axes)
    shape = list(v.shape)
    for a in spatial:
      shape[a] = call.out_shape[a]
    if call.moves_bits:  # no NaN in an integer or bool x: zeros (spec.nan_fill)
      return jnp.zeros(shape, v.dtype)
    total = jnp.sum(v, axis=spatial, keepdims=True)
    return jnp.broadcast_to(total * jnp.asarray(jnp.nan, v.dtype), shape)
  d = 0
  for a in range(3):
    if call.present[a]:
      v = move_axis(v, call.spatial_axes[d], call.lengths[a],
                     call.out_lengths[a], call.kernel_strides[a],
                     call.padding, int(m_row[a]))
      d += 1
  return v


def _axis_weights(ma: np.ndarray, fa: np.ndarray, dt) -> dict[int, np.ndarray]:
  """``{j: [C] weights}``: the bilinear weight each channel gives the read at
  integer offset ``j`` along one axis (``1 - f`` at ``m``, ``f`` at
  ``m + 1``; ``1`` at ``m`` alone on the lattice)."""
  one, zero = np.asarray(1, dt), np.asarray(0, dt)
  out = {}
  for j in sorted(set(ma.tolist()) | set((ma[fa != 0] + 1).tolist())):
    out[j] = (np.where(ma == j, one - fa, zero) +
              np.where(ma + 1 == j, fa, zero)).astype(dt)
  return out


def active(call: layout.ShiftCall, x: Array, m: np.ndarray,
           f: np.ndarray) -> Array:
  """The active shift with concrete tables ``(m, f)`` (`tables`), as plain XLA.

  Output ``o`` of channel ``c`` is the tensor product over the axes of
  ``(1 - f) P(o t + m) + f P(o t + m + 1)`` (``P(o t + m)`` alone on the
  lattice, ``f == 0``). `x` is extended once through the padding rule by the
  reads' reach (`move_axis`: a pad for ``zeros``, slices and concatenations
  otherwise); for every combination of integer offsets some channel reads,
  one strided slice of the extension is weighted by the constant
  per-channel product of the axes' weights, and the terms are summed. XLA
  fuses the whole shift (and what follows) into one loop.
  A zero weight is not a tap (masked, not multiplied): a non-finite input
  reaches only the outputs that read it, and a NaN shift makes its channel
  NaN.
  """
  dt = jnp.dtype(call.compute_dtype)
  shape = [1] * x.ndim
  shape[call.channel_axis] = call.channels
  axes = [a for a in range(3) if call.present[a]]
  weights = [_axis_weights(m[:, a].astype(np.int64), f[:, a].astype(dt), dt)
             for a in axes]
  # `x` extended through the padding rule by the reads' reach on every axis;
  # each combination of offsets is then one strided slice of it. For
  # ``zeros`` the extension is each slice's own pad of `x` (XLA fuses a pad
  # into its reader, but materialises one read by many slices).
  v, lo, e = x.astype(dt), [], None
  for d, a in enumerate(axes):
    length, out, t = call.lengths[a], call.out_lengths[a], call.kernel_strides[a]
    first, last = min(weights[d]), max(weights[d]) + (out - 1) * t
    lo.append(max(0, -first))
    hi = max(last + 1, length) - length
    if call.padding == "zeros":
      continue
    e = v if e is None else e
    e = move_axis(e, call.spatial_axes[d], length, lo[-1] + length + hi, 1,
                  call.padding, -lo[-1])
  out = None
  for combo in itertools.product(*(sorted(w.items()) for w in weights)):
    w = np.prod([wj for _, wj in combo], axis=0).astype(dt)
    tap = np.all([wj != 0 for _, wj in combo], axis=0)  # NaN weights are taps
    if not tap.any():
      continue
    if call.padding == "zeros":
      config = [(0, 0, 0)] * x.ndim
      for d, (a, (j, _)) in enumerate(zip(axes, combo)):
        reach = (call.out_lengths[a] - 1) * call.kernel_strides[a] + j
        config[call.spatial_axes[d]] = (-j, reach - (call.lengths[a] - 1), 0)
      src, offset = lax.pad(v, jnp.zeros((), dt), config), [0] * len(axes)
    else:
      src, offset = e, lo
    start, limit, stride = [0] * x.ndim, list(src.shape), [1] * x.ndim
    for d, (a, (j, _)) in enumerate(zip(axes, combo)):
      ax, t = call.spatial_axes[d], call.kernel_strides[a]
      start[ax] = offset[d] + (0 if call.padding == "zeros" else j)
      limit[ax] = start[ax] + (call.out_lengths[a] - 1) * t + 1
      stride[ax] = t
    moved = lax.slice(src, start, limit, stride)
    term = jnp.where(tap.reshape(shape), moved * w.reshape(shape), jnp.zeros((), dt))
    out = term if out is None else out + term
  return out.astype(x.dtype)


def forward(call: layout.ShiftCall, x: Array, shifts) -> Array:
  """`jaxshift.shift` for concrete shifts, as plain XLA.

  Args:
    call: the canonical call.
    x: ``call.in_shape``.
    shifts: ``[C, D]``, concrete.

  Returns:
    ``call.out_shape``, dtype of `x`: a move equal to the jnp path's
    forward bit for bit, an active shift (`active`) to float rounding.
  """
  m, f = tables(call, shifts)
  if not call.rounds:
    return active(call, x, m, f)
  nan = np.any(np.isnan(f), axis=-1)
  keys = [tuple(int(v) for v in m[c]) + (bool(nan[c]),)
          for c in range(call.channels)]
  cax = call.channel_axis
  starts = [c for c in range(call.channels) if c == 0 or keys[c] != keys[c - 1]]
  if len(starts) <= _MAX_RUNS:
    bounds = starts + [call.channels]
    parts = [_move(call, lax.slice_in_dim(x, lo, hi, axis=cax), keys[lo])
             for lo, hi in zip(bounds[:-1], bounds[1:])]
    return parts[0] if len(parts) == 1 else lax.concatenate(parts, cax)
  groups: dict[tuple, list[int]] = {}
  for c, key in enumerate(keys):
    groups.setdefault(key, []).append(c)
  order = np.concatenate([np.asarray(v) for v in groups.values()])
  parts = [_move(call, jnp.take(x, np.asarray(chans), axis=cax), key)
           for key, chans in groups.items()]
  y = lax.concatenate(parts, cax)
  return jnp.take(y, np.argsort(order), axis=cax)
