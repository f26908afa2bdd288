"""Spatially sharded shifts: each shard computes its own block from a halo.

A shift reads a few cells around each output. When an explicit mesh splits
a spatial axis of ``x``, every device computes its own block of the output
from its block of ``x`` extended by the cells its neighbours send
(`lax.ppermute`, the halo exchange of stencil codes), with the kernel, the
jnp path or static slices, under `jax.shard_map`. Nothing is gathered, and
the output keeps ``x``'s sharding.

- *Width.* The halo on each side of a split axis is the farthest a channel
  reads across the block's edge (`plan`): from the tables of concrete
  shifts, exactly; for traced shifts from a bound, ``max_shift``
  (``ceil(max_shift) + 1`` cells: one more for interpolation and for the
  lattice rule's slope). Where a call's traced shifts reach beyond it, that
  call takes the fallback (`lax.cond`): the blocks go round the ring of
  shards and each device keeps each channel's window of the cells it reads
  (`window`), so the result is right whatever the shifts, in the memory of
  a few blocks and still without a gather.
- *Boundaries.* Interior edges receive their neighbour's cells; the outer
  shards answer reads beyond the array through the padding rule: zeros,
  the edge (``border``), the mirror of their own cells (``reflect``,
  ``symmetric``), or the cells of the shard at the other end (``periodic``:
  the permutation wraps round).
- *Tables.* The shard's tables are the whole array's (`layout.Halo`), so
  every fraction, rounding and lattice decision is the unsharded call's.
- *Gradient.* The exchange is plain JAX (slices, `ppermute`, `where`,
  concatenation): autodiff transposes it into the exact adjoint, which sends
  the halo's gradient back to the shard that owns it and adds it there. The
  shift gradient is summed over the shards (`dispatch._vary_like`).
- *Several axes.* Axes are extended one after another, the later ones from
  the already-extended block, so corners come from the diagonal neighbour
  in two steps.

Where the halo cannot work (a split length that is not a multiple of the
stride, a halo wider than the block, an Auto-axes mesh, traced shifts with
no bound), `plan` returns None and the caller gathers the spatial axes as
before (`partition.whole_spatial`).
"""

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxshift._src import layout
from jaxshift._src import spec
from jaxshift._src import static

P = jax.sharding.PartitionSpec


@dataclasses.dataclass(frozen=True)
class SplitAxis:
  """One split spatial axis of ``x``.

  Attributes:
    axis: its index in ``x``.
    canon: its canonical index (0, 1, 2 for ``A, B, W``).
    names: the mesh axes it is split over, major first.
    shards: how many blocks.
    block: the length of each block (a multiple of `stride`).
    stride: the call's stride along it.
    lo, hi: the halo widths before and after the block.
    lo_channels, hi_channels: the channels that receive that side's halo
      (None: all of them).
  """

  axis: int
  canon: int
  names: tuple[str, ...]
  shards: int
  block: int
  stride: int
  lo: int
  hi: int
  lo_channels: tuple[int, ...] | None
  hi_channels: tuple[int, ...] | None

  @property
  def out_block(self) -> int:
    """Each block's output length."""
    return self.block // self.stride

  def beyond(self, hi):
    """How far past the block's last cell its last output reads, for reads
    `hi` cells past each output's position."""
    return hi + (self.out_block - 1) * self.stride - (self.block - 1)


@dataclasses.dataclass(frozen=True)
class Plan:
  """How a spatially sharded call runs: the mesh, ``x``'s spec, the split
  axes and, for traced shifts, whether a run-time check guards the halo."""

  mesh: object
  spec: tuple
  axes: tuple[SplitAxis, ...]
  checked: bool


def max_shift_bound(max_shift, ndim: int) -> tuple[float, ...] | None:
  """`max_shift` (None, a number, or one per spatial axis) as ``ndim`` floats,
  or an error naming the argument."""
  if max_shift is None:
    return None
  values = (max_shift,) * ndim if np.ndim(max_shift) == 0 else tuple(max_shift)
  try:
    values = tuple(float(v) for v in values)
  except (TypeError, ValueError):
    values = ()
  if len(values) != ndim or not all(math.isfinite(v) and v >= 0
                                    for v in values):
    raise ValueError(
        f"`max_shift` must be None, a non-negative number or {ndim} of them "
        f"(one per spatial axis): the largest |shift| the halo of a "
        f"spatially sharded x must hold; got {max_shift!r}.")
  return values


def reach(call: layout.ShiftCall, shifts, *, gradient: bool):
  """``(lo, hi)``: ``[C, 3]`` offsets from ``o * stride`` of the first and
  last cell each channel reads on each canonical axis, from the offsets a
  block's tables use (periodic ones re-centred, `spec.centre`), for the
  forward and, with `gradient`, the backward (the slope reads one cell
  either side)."""

  def offsets(rounded):
    m, f = spec.shift_tables(call, shifts, rounded=rounded)
    m = jnp.stack([spec.centre(m[:, k], call.lengths[k], call.padding)
                   for k in range(3)], axis=-1)
    return m, f

  m_r, f_r = offsets(call.rounds)
  lo, hi = m_r, m_r + (f_r != 0)
  if gradient and call.shift_grad:
    m_u, _ = offsets(False)
    lo, hi = jnp.minimum(lo, m_u - 1), jnp.maximum(hi, m_u + 1)
  return lo, hi


def _fits(padding: str, block: int, lo: int, hi: int) -> bool:
  """Whether a block of `block` cells can hold (receive, or mirror at the
  outer shards) halos of `lo` and `hi`."""
  limit = block - 1 if padding == "reflect" else block
  return lo <= limit and hi <= limit


def plan(call: layout.ShiftCall, x, shifts, *, bound, static_path: bool
         ) -> Plan | None:
  """The halo plan of a call on ``x``, or None where the call should gather
  (no split spatial axis, or one the halo cannot serve: see the module).

  Args:
    call: the whole array's call.
    x: the input (its type's sharding decides).
    shifts: NumPy (concrete) or a jax.Array.
    bound: the bound for traced shifts (`max_shift_bound`'s), or None.
    static_path: the call runs on static slices (concrete shifts, no shift
      gradient): the halo need not hold the backward's slope.
  """
  sharding = getattr(jax.typeof(x), "sharding", None)
  spec_ = getattr(sharding, "spec", None)
  if not spec_ or call.empty:
    return None
  spec_ = tuple(spec_) + (None,) * (len(call.in_shape) - len(spec_))
  split = [(d, a) for d, a in enumerate(call.spatial_axes) if spec_[a] is not None]
  if not split:
    return None
  mesh = sharding.mesh
  types = dict(zip(mesh.axis_names, mesh.axis_types))
  used = [n for entry in spec_ if entry is not None
          for n in ((entry,) if isinstance(entry, str) else entry)]
  if any(types[n] != jax.sharding.AxisType.Explicit for n in used):
    return None  # Auto axes: the partitioner decides (and gathers)
  concrete = isinstance(shifts, np.ndarray)
  if not concrete and bound is None:
    return None
  if concrete:
    with jax.ensure_compile_time_eval():
      lo_r, hi_r = (np.asarray(v) for v in reach(call, jnp.asarray(shifts),
                                                  gradient=not static_path))
  channels_split = spec_[call.channel_axis] is not None
  axes = []
  for d, a in split:
    entry = spec_[a]
    names = (entry,) if isinstance(entry, str) else tuple(entry)
    shards = math.prod(mesh.shape[n] for n in names)
    canon = 3 - call.ndim + d
    length, stride = call.lengths[canon], call.strides[d]
    block = length // shards
    if length % shards or block % stride:
      return None
    ax = SplitAxis(a, canon, names, shards, block, stride, 0, 0, None, None)
    if concrete:
      need_lo, need_hi = -lo_r[:, canon], ax.beyond(hi_r[:, canon])
    else:
      reach_ = math.ceil(bound[d]) + 1
      need_lo = np.full(call.channels, reach_)
      need_hi = np.full(call.channels, ax.beyond(reach_))
    lo, hi = int(max(0, need_lo.max())), int(max(0, need_hi.max()))
    if not _fits(call.padding, block, lo, hi):
      return None

    def receivers(need):
      chans = np.flatnonzero(need > 0)
      if not concrete or channels_split or len(chans) == call.channels:
        return None  # every channel (the set is not known, or is all)
      return tuple(int(c) for c in chans)

    axes.append(dataclasses.replace(
        ax, lo=lo, hi=hi, lo_channels=receivers(need_lo),
        hi_channels=receivers(need_hi)))
  return Plan(mesh, spec_, tuple(axes), checked=not concrete)


def _channels(v, channels, axis: int):
  return v if channels is None else jnp.take(v, np.asarray(channels), axis=axis)


def _to_all_channels(v, channels, count: int, axis: int):
  """A halo received for `channels` only, as all `count` channels (zeros for
  the rest, which never read it)."""
  if channels is None:
    return v
  zero = jnp.zeros_like(lax.slice_in_dim(v, 0, 1, axis=axis))
  index = np.full(count, len(channels))
  index[np.asarray(channels)] = np.arange(len(channels))
  return jnp.take(lax.concatenate([v, zero], axis), index, axis=axis)


def _side(v, ax: SplitAxis, call: layout.ShiftCall, after: bool):
  """The halo before (or `after`) the local block along `ax`."""
  width = ax.hi if after else ax.lo
  if width == 0:
    return None
  cax, count = call.channel_axis, v.shape[call.channel_axis]
  chans = ax.hi_channels if after else ax.lo_channels
  # The halo before a block is the end of the previous block (sent forward),
  # the halo after it the start of the next one (sent back).
  start = 0 if after else ax.block - width
  piece = _channels(lax.slice_in_dim(v, start, start + width, axis=ax.axis),
                    chans, cax)
  n = ax.shards
  pairs = [(j, j + 1) for j in range(n - 1)]
  if call.padding == "periodic":
    pairs.append((n - 1, 0))
  if after:
    pairs = [(b, a) for a, b in pairs]
  got = lax.ppermute(piece, ax.names, pairs)
  if call.padding not in ("zeros", "periodic"):
    # The outer shard answers reads beyond the array from its own cells.
    first = ax.block if after else -width
    outer = _channels(static.move_axis(v, ax.axis, ax.block, width, 1,
                                       call.padding, first), chans, cax)
    edge = n - 1 if after else 0
    got = jnp.where(lax.axis_index(ax.names) == edge, outer, got)
  return _to_all_channels(got, chans, count, cax)


def extend(v, ax: SplitAxis, call: layout.ShiftCall):
  """The local block `v` with its halos along `ax` (inside shard_map)."""
  pieces = [_side(v, ax, call, False), v, _side(v, ax, call, True)]
  pieces = [p for p in pieces if p is not None]
  return pieces[0] if len(pieces) == 1 else lax.concatenate(pieces, ax.axis)


def _block_call(call: layout.ShiftCall, e, s, axes, *, window=False
                ) -> layout.ShiftCall:
  """The call on a shard's extended block `e` (or its channels' windows):
  its own shapes, the whole array's tables."""
  local = layout.make_call(
      e, s, mode=call.mode, padding=call.padding,
      channel_axis=-1 if call.channels_last else call.channel_axis,
      strides=call.strides, impl=call.impl)
  lo, split = [0, 0, 0], [False] * 3
  for ax in axes:
    lo[ax.canon], split[ax.canon] = 1 if window else ax.lo, True
  return dataclasses.replace(local, halo=layout.Halo(
      call.lengths, tuple(lo), tuple(split), tuple(split) if window else
      (False,) * 3))


def window(v, ax: SplitAxis, call: layout.ShiftCall, s):
  """Each channel's window along `ax` (inside shard_map): the cells its
  outputs in this block read, wherever they are, for any shift.

  Channel ``c``'s window starts one cell before the first cell its
  unrounded offset reads and is ``(out_block - 1) * stride + 4`` long (the
  rounded offset and interpolation read up to two past it). The blocks go
  round the ring of shards (``shards - 1`` permutations) and each device
  keeps, per channel, the cells of its window that the passing block owns
  (after the padding rule: a read beyond the array is a cell of some block,
  or zero). Memory stays at a few blocks: the fallback of a traced call
  whose shifts reach beyond the halo.
  """
  n, block, cax = ax.shards, ax.block, call.channel_axis
  length = call.lengths[ax.canon]
  width = (ax.out_block - 1) * ax.stride + 4
  m_u, _ = spec.shift_tables(call, s, rounded=False)
  first = spec.centre(m_u[:, ax.canon], length, call.padding) - 1
  here = lax.axis_index(ax.names)
  cells = spec.pad_index(here * block + first[:, None] +
                         jnp.arange(width, dtype=jnp.int32)[None, :],
                         length, call.padding)                   # [C, width]
  owner = jnp.where(cells >= 0, cells // block, -1)
  at = spec._Axis(ax.axis, block, width, 1, call.padding, cax, v.ndim)  # pylint: disable=protected-access
  offset = jnp.where(cells >= 0, cells % block, 0)
  ring = [(j, (j + 1) % n) for j in range(n)]

  def keep(k, passing, out):
    """`out` with the cells of the block that is `k` shards behind."""
    got = spec._gather(passing, offset, at)  # pylint: disable=protected-access
    mine = spec._place(owner == (here - k) % n, at)  # pylint: disable=protected-access
    return jnp.where(mine, got, out)

  def step(k, carry):  # a loop, so one passing block is alive at a time
    passing, out = carry
    passing = lax.ppermute(passing, ax.names, ring)
    return passing, keep(k, passing, out)

  first_out = keep(0, v, jnp.zeros((), v.dtype))
  return lax.fori_loop(1, n, step, (v, first_out))[1]


def _own_outputs(y, axes):
  """The first ``out_block`` outputs of each split axis: the block's own
  (the extended block's call also computes outputs past them)."""
  for ax in axes:
    y = lax.slice_in_dim(y, 0, ax.out_block, axis=ax.axis)
  return y


def fits_at_run_time(call: layout.ShiftCall, shifts, p: Plan):
  """Whether traced `shifts` read within `p`'s halos (a scalar bool)."""
  lo_r, hi_r = reach(call, shifts, gradient=True)
  ok = jnp.asarray(True)
  for ax in p.axes:
    ok &= jnp.all(-lo_r[:, ax.canon] <= ax.lo)
    ok &= jnp.all(ax.beyond(hi_r[:, ax.canon]) <= ax.hi)
  return ok


def shift(call: layout.ShiftCall, p: Plan, x, shifts,
          local: Callable, static_shifts=None):
  """The shift of a spatially sharded `x` by halo exchange.

  Args:
    call: the whole array's call.
    p: its `plan`.
    x: the input, split as ``p.spec`` says.
    shifts: ``[C, D]`` jax.Array (ignored where `static_shifts` is given).
    local: ``(call, x, shifts) -> y``: the unsharded shift of one block
      (the kernel or jnp path, with its custom VJP), or of static
      ``shifts`` (NumPy) when `static_shifts` is given.
    static_shifts: concrete shifts for the static path (channels not split).

  Returns:
    ``call.out_shape``, sharded as `x`.
  """
  x_spec = P(*p.spec)
  s_spec = P(p.spec[call.channel_axis], None)

  def halo_branch(xb, sb):
    e = xb
    for ax in p.axes:
      e = extend(e, ax, call)
    s_local = sb if static_shifts is None else static_shifts
    return _own_outputs(local(_block_call(call, e, s_local, p.axes), e,
                              s_local), p.axes)

  @jax.named_scope("jaxshift.halo.window")
  def window_branch(xb, sb):
    w = xb
    for ax in p.axes:
      w = window(w, ax, call, sb)
    block = _block_call(call, w, sb, p.axes, window=True)
    return _own_outputs(local(block, w, sb), p.axes)

  if static_shifts is not None:
    body = lambda xb: halo_branch(xb, None)
    return jax.shard_map(body, mesh=p.mesh, in_specs=(x_spec,),
                         out_specs=x_spec)(x)
  shifts = jax.sharding.reshard(shifts,
                                jax.sharding.NamedSharding(p.mesh, s_spec))
  if not p.checked:
    return jax.shard_map(halo_branch, mesh=p.mesh, in_specs=(x_spec, s_spec),
                         out_specs=x_spec)(x, shifts)
  ok = fits_at_run_time(call, shifts, p)

  def body(xb, sb, okb):
    return lax.cond(okb, halo_branch, window_branch, xb, sb)

  return jax.shard_map(body, mesh=p.mesh, in_specs=(x_spec, s_spec, P()),
                       out_specs=x_spec)(x, shifts, ok)
