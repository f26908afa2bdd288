"""Fixed shift tables: which channel moves by which integer offset.

Each function returns a ``[C, D]`` float32 NumPy array of integer values, for
``jaxshift.shift(x, table, mode="integer")`` (a NumPy table is concrete, so
the call lowers to plain XLA slices; see `jaxshift.shift`). Positive values
move content toward higher indices, as everywhere in jaxshift.
"""

import itertools
from collections.abc import Sequence

import numpy as np

from jaxshift._src import shapes

ASSIGNMENTS = ("contiguous", "modulo")


def _place(channels: int, offsets: np.ndarray, group_size: int,
           assignment: str) -> np.ndarray:
  """``[C, D]``: offset ``g`` on `group_size` channels per group, the rest 0.

  contiguous: group g is channels ``[g*size, (g+1)*size)``; modulo: channel
  ``c < size*G`` takes offset ``c % G``.
  """
  groups, ndim = offsets.shape
  out = np.zeros((channels, ndim), np.float32)
  used = group_size * groups
  if assignment == "contiguous":
    out[:used] = np.repeat(offsets, group_size, axis=0)
  else:
    out[:used] = np.tile(offsets, (group_size, 1))
  return out


def grouped_shifts(channels: int, kernel_size: int = 3, dilation: int = 1, *,
                   ndim: int = 2, assignment: str = "contiguous") -> np.ndarray:
  """The fixed grouped-shift assignment of Wu et al. (2017).

  Every offset of the ``k x k`` (or ``k``, ``k x k x k``) neighbourhood, in
  raster order and scaled by `dilation`, gets ``channels // k**ndim``
  channels; the ``channels % k**ndim`` channels left over keep a zero shift
  (the centre), as in the paper.

  Args:
    channels: ``C``, at least ``kernel_size**ndim``.
    kernel_size: odd neighbourhood size ``k``.
    dilation: spacing of the neighbourhood.
    ndim: number of spatial axes ``D``.
    assignment: ``"contiguous"``: offset ``g`` on channels
      ``[g*size, (g+1)*size)``; ``"modulo"``: channel ``c`` takes offset
      ``c % k**ndim`` (ShiftNet's assignment), channels past the last full
      cycle stay zero.

  Returns:
    ``[C, D]`` float32 numpy array of integer-valued shifts.

  >>> grouped_shifts(9, 3).tolist()[:4]
  [[-1.0, -1.0], [-1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]]
  >>> grouped_shifts(4, 3, ndim=1, assignment="modulo")[:, 0].tolist()
  [-1.0, 0.0, 1.0, 0.0]
  """
  channels = shapes.positive_int("channels", channels)
  k = shapes.positive_int("kernel_size", kernel_size, odd=True)
  dilation = shapes.positive_int("dilation", dilation)
  ndim = shapes.spatial_ndim("ndim", ndim)
  assignment = shapes.choice("assignment", assignment, ASSIGNMENTS)
  groups = k**ndim
  if channels < groups:
    raise ValueError(
        f"`channels` (={channels}) must be at least kernel_size**ndim "
        f"(={groups}) so that every offset of the neighbourhood gets a "
        "channel; use a smaller `kernel_size` or learned (active) shifts.")
  offsets = np.array(list(itertools.product(range(k), repeat=ndim))) - k // 2
  return _place(channels, offsets * dilation, channels // groups, assignment)


def partial_shifts(channels: int, offsets: Sequence[Sequence[int]], *,
                   fraction: float | None = None, group_size: int | None = None,
                   assignment: str = "contiguous") -> np.ndarray:
  """A few channel groups moved by given offsets, every other channel still.

  Each offset of `offsets` takes `group_size` channels (or
  ``round(fraction * channels)``), in order from channel 0; the rest keep a
  zero shift and are copied.

  - ShiftViT: ``partial_shifts(C, [(0, -1), (0, 1), (-1, 0), (1, 0)],
    group_size=C // 12)``;
  - TSM along time: ``partial_shifts(C, [(-1,), (1,)], group_size=C // 8)``
    (channels ``[0, C/8)`` read frame ``t + 1``);
  - S²-MLP's ``spatial_shift``: four quarters, ``partial_shifts(C,
    [(1, 0), (-1, 0), (0, 1), (0, -1)], fraction=0.25)`` applied with
    ``padding="border"`` (its in-place slices keep the edge), on the
    channels-last ``(B, W, H, C)`` it shifts (tests/test_tables.py checks
    this against its code).

  Args:
    channels: ``C``.
    offsets: a sequence of ``G`` integer offsets, each of length ``D``.
    fraction: channels per offset as a fraction of `channels`.
    group_size: channels per offset; give this or `fraction`.
    assignment: ``"contiguous"`` (groups of consecutive channels) or
      ``"modulo"`` (channel ``c < G * group_size`` takes offset ``c % G``).

  Returns:
    ``[C, D]`` float32 numpy array of integer-valued shifts.

  >>> partial_shifts(6, [(-1,), (1,)], group_size=2)[:, 0].tolist()
  [-1.0, -1.0, 1.0, 1.0, 0.0, 0.0]
  """
  channels = shapes.positive_int("channels", channels)
  assignment = shapes.choice("assignment", assignment, ASSIGNMENTS)
  try:
    table = np.asarray(offsets)
  except ValueError:
    table = np.asarray(offsets, object)
  if (table.ndim != 2 or table.shape[0] < 1 or table.dtype == object
      or not all(shapes.is_int(v) for v in table.ravel().tolist())):
    raise ValueError(
        "`offsets` must be a non-empty sequence of integer offsets, all of "
        f"the same length D (1, 2 or 3), e.g. [(0, -1), (0, 1)]; got "
        f"{offsets!r}.")
  shapes.spatial_ndim("len(offsets[0])", table.shape[1])
  if (fraction is None) == (group_size is None):
    raise ValueError("Give exactly one of `fraction` and `group_size`; got "
                     f"fraction={fraction!r}, group_size={group_size!r}.")
  if fraction is not None:
    if not 0 < fraction <= 1:
      raise ValueError(f"`fraction` must be in (0, 1]; got {fraction!r}.")
    group_size = round(fraction * channels)
    if group_size < 1:
      raise ValueError(
          f"`fraction` (={fraction!r}) of `channels` (={channels}) rounds to "
          "no channel; use a larger fraction or `group_size`.")
  group_size = shapes.positive_int("group_size", group_size)
  moved = group_size * table.shape[0]
  if moved > channels:
    raise ValueError(
        f"{table.shape[0]} offsets of `group_size` {group_size} need {moved} "
        f"channels, more than `channels` (={channels}).")
  return _place(channels, table, group_size, assignment)


def axial_shifts(channels: int, shift_size: int, *, axis: int, ndim: int = 2,
                 dilation: int = 1) -> np.ndarray:
  """AS-MLP's axial shift: contiguous channel groups moved along one axis.

  The channels are split into `shift_size` contiguous groups of
  ``ceil(channels / shift_size)`` (the last may be shorter, as
  ``torch.chunk`` splits); group ``g`` moves by
  ``(g - shift_size // 2) * dilation`` along spatial axis `axis`.

  Args:
    channels: ``C``, at least `shift_size` groups' worth (every group gets a
      channel).
    shift_size: odd number of groups (even sizes have no centre group).
    axis: which spatial axis, ``0 <= axis < ndim`` (or negative, counted
      from the last).
    ndim: number of spatial axes ``D``.
    dilation: spacing between the groups' offsets.

  Returns:
    ``[C, D]`` float32 numpy array, zero except along `axis`.

  >>> axial_shifts(5, 3, axis=1)[:, 1].tolist()
  [-1.0, -1.0, 0.0, 0.0, 1.0]
  """
  channels = shapes.positive_int("channels", channels)
  shift_size = shapes.positive_int("shift_size", shift_size, odd=True)
  ndim = shapes.spatial_ndim("ndim", ndim)
  dilation = shapes.positive_int("dilation", dilation)
  if not shapes.is_int(axis) or not -ndim <= axis < ndim:
    raise ValueError(f"`axis` must be a spatial axis in [{-ndim}, {ndim}); "
                     f"got {axis!r}.")
  size = -(-channels // shift_size)
  if size * (shift_size - 1) >= channels:
    raise ValueError(
        f"`channels` (={channels}) in groups of ceil(channels / shift_size) "
        f"= {size} leaves group {shift_size - 1} of `shift_size` "
        f"(={shift_size}) empty; use more channels or a smaller shift_size.")
  out = np.zeros((channels, ndim), np.float32)
  group = np.arange(channels) // size
  out[:, axis % ndim] = (group - shift_size // 2) * dilation
  return out
