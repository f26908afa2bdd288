"""The canonical call: everything one `jaxshift.shift` needs, computed once.

`make_call` validates the arguments (through `jaxshift._src.shapes`) and
returns a small hashable `ShiftCall`. Every implementation reads it: the
pure-jnp path (`jaxshift._src.spec`) and the kernels (`jaxshift._src.ffi`),
so that the layout, the strides the kernels see, which axes are real, whether
the forward rounds, whether a shift gradient exists and the dtypes are
decided in one place. Nothing here touches compiled code.

The canonical problem is rank 5: ``(N, A, B, W, C)`` channels-last or
``(N, C, A, B, W)`` channels-first, where ``N`` is every batch axis of ``x``
flattened and ``(A, B, W)`` are the spatial axes, right-aligned: a 2-D call
has an absent ``A`` of length 1, a 1-D call absent ``A`` and ``B``. An
absent axis has length 1, stride 1 and a zero shift, and `ShiftCall.present`
says which axes are absent, so no implementation has to guess it from a
length.
"""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from jaxshift._src import shapes


def compute_dtype(x_dtype) -> np.dtype:
  """The dtype every implementation computes and accumulates in.

  float64 for float64 ``x`` (and for 64-bit integer ``x``, whose moves the
  kernels run as 64-bit elements), float32 otherwise, whatever the dtype of
  the shifts: a float32 network does not double its memory traffic because
  its shifts are float64. The shift tables are reduced in the shifts' own
  precision first (`jaxshift._src.spec.shift_tables`), so far-away float64
  shifts lose nothing that matters.
  """
  d = jnp.dtype(x_dtype)
  wide = d == jnp.float64 or (d.kind in "iu" and d.itemsize == 8)
  return np.dtype(np.float64 if wide else np.float32)


@dataclasses.dataclass(frozen=True)
class Halo:
  """How a shard's block, extended by its halo, sits in the whole array.

  A spatially sharded shift (`jaxshift._src.halo`) computes each shard's
  output from its block extended by the cells its neighbours sent. The
  shift tables are then those of the whole array (reduced with the global
  `lengths`), with each split axis' offset moved to the extended block:
  re-centred within the padding's period (a periodic read is the same one
  period away) and advanced by `lo`, the cells received before the block.

  On a `window` axis the block is instead each channel's own window,
  starting one cell before the first cell the channel's unrounded offset
  reads (`jaxshift._src.halo.window`): the offsets are then relative to it.

  Attributes:
    lengths: the global canonical lengths ``(A, B, W)``.
    lo: cells before the block on each canonical axis (0 where not split).
    split: which canonical axes are split.
    window: which split axes are per-channel windows.
  """

  lengths: tuple[int, int, int]
  lo: tuple[int, int, int]
  split: tuple[bool, bool, bool]
  window: tuple[bool, bool, bool] = (False, False, False)


@dataclasses.dataclass(frozen=True)
class ShiftCall:
  """The canonical form of one call (hashable: a static argument of jit).

  Attributes:
    mode: one of `shapes.MODES`.
    padding: one of `shapes.PADDINGS`.
    impl: one of `shapes.IMPLS`.
    in_shape: shape of ``x``.
    out_shape: shape of the output: ``ceil(L / stride)`` per spatial axis.
    channel_axis: the channel axis of ``x``, non-negative.
    spatial_axes: the ``D`` spatial axes of ``x``, non-negative, in order.
    strides: one positive int per spatial axis, as given.
    x_dtype: dtype name of ``x`` (and of the output and ``dx``).
    shift_dtype: dtype name of the shifts as given (integer or floating).
    compute_dtype: dtype name every implementation computes in
      (`compute_dtype`).
    channels_last: whether the channel axis is the last one.
    batch: ``N``, the product of the batch axes.
    channels: ``C``.
    lengths: the canonical spatial lengths ``(A, B, W)``, 1 where absent.
    out_lengths: their output lengths.
    kernel_strides: the canonical strides ``min(stride, L)`` (1 where
      absent): a stride of at least ``L`` samples only position 0, as
      ``min(stride, L)`` does, and stays small.
    present: which canonical axes are spatial axes of ``x``.
    halo: for a shard's extended block (`Halo`), where its tables come
      from; None for a whole array.
  """

  mode: str
  padding: str
  impl: str
  in_shape: tuple[int, ...]
  out_shape: tuple[int, ...]
  channel_axis: int
  spatial_axes: tuple[int, ...]
  strides: tuple[int, ...]
  x_dtype: str
  shift_dtype: str
  compute_dtype: str
  channels_last: bool
  batch: int
  channels: int
  lengths: tuple[int, int, int]
  out_lengths: tuple[int, int, int]
  kernel_strides: tuple[int, int, int]
  present: tuple[bool, bool, bool]
  halo: Halo | None = None

  @property
  def ndim(self) -> int:
    """``D``, the number of spatial axes."""
    return len(self.spatial_axes)

  @property
  def moves_bits(self) -> bool:
    """``x`` is integer or bool: only moves, no arithmetic on its values."""
    return jnp.dtype(self.x_dtype).kind in "biu"

  @property
  def rounds(self) -> bool:
    """The forward moves by ``round(shifts)`` (``sparse``, ``integer``)."""
    return self.mode != "active"

  @property
  def shift_grad(self) -> bool:
    """The shifts have a gradient (``active``, ``sparse``)."""
    return self.mode != "integer"

  @property
  def grad_dtype(self) -> np.dtype:
    """dtype of the shift gradient: the shifts', float32 for integer ones."""
    d = jnp.dtype(self.shift_dtype)
    return d if jnp.issubdtype(d, jnp.floating) else np.dtype(np.float32)

  @property
  def channel_axis5(self) -> int:
    """The channel axis of the canonical layout."""
    return 4 if self.channels_last else 1

  @property
  def spatial_axes5(self) -> tuple[int, int, int]:
    """The spatial axes ``(A, B, W)`` of the canonical layout."""
    return (1, 2, 3) if self.channels_last else (2, 3, 4)

  def shape5(self) -> tuple[int, ...]:
    """The canonical input shape."""
    return self._arrange(self.batch, self.channels, self.lengths)

  def out_shape5(self, shape5: tuple[int, ...] | None = None
                 ) -> tuple[int, ...]:
    """The canonical output shape (of the input of canonical `shape5`).

    A kernel call sees the canonical input with its batch folded by vmap or
    split by partitioning, and its channels split too: the output keeps that
    input's batch and channels.
    """
    if shape5 is None:
      shape5 = self.shape5()
    return self._arrange(shape5[0], shape5[self.channel_axis5],
                         self.out_lengths)

  def _arrange(self, n, c, lengths):
    if self.channels_last:
      return (n, *lengths, c)
    return (n, c, *lengths)

  @property
  def empty(self) -> bool:
    """Whether the input or the output has no element (a symbolic batch
    axis, `jax.export`, counts as non-empty)."""
    return any(isinstance(d, int) and d == 0
               for d in self.in_shape + self.out_shape)


def _check_shifts(s_shape, s_dtype, mode):
  if len(s_shape) != 2 or s_shape[1] not in (1, 2, 3):
    raise ValueError(
        "`shifts` must have shape (C, D): one row per channel and one column "
        f"per spatial axis, D in 1, 2, 3; got shape {tuple(s_shape)}.")
  if jnp.issubdtype(s_dtype, jnp.integer):
    if mode != "integer":
      raise TypeError(
          f"`shifts` has integer dtype {s_dtype.name}, but mode={mode!r} "
          "differentiates it; pass floating shifts, or use mode='integer'.")
  elif not jnp.issubdtype(s_dtype, jnp.floating):
    raise TypeError(f"`shifts` must be floating (or integer with "
                    f"mode='integer'); got dtype {s_dtype.name}.")


def make_call(x, shifts, *, mode, padding, channel_axis, strides,
              impl) -> ShiftCall:
  """Validates the arguments of `jaxshift.shift` and returns their canonical call.

  `x` and `shifts` may be arrays, tracers or anything with ``shape`` and
  ``dtype`` (e.g. `jax.ShapeDtypeStruct`); only those are read.

  Raises:
    TypeError: ``x`` is neither floating nor (for the moves) integer or
      bool, or ``shifts`` is not numeric, or ``shifts`` is integer in a mode
      that differentiates it.
    ValueError: any shape, option or stride is not accepted.

  >>> import jax
  >>> call = make_call(jax.ShapeDtypeStruct((2, 8, 9, 4), "float32"),
  ...                  jax.ShapeDtypeStruct((4, 2), "float32"), mode="sparse",
  ...                  padding="zeros", channel_axis=-1, strides=2,
  ...                  impl="auto")
  >>> call.shape5(), call.out_shape5(), call.present
  ((2, 1, 8, 9, 4), (2, 1, 4, 5, 4), (False, True, True))
  """
  mode = shapes.choice("mode", mode, shapes.MODES)
  padding = shapes.choice("padding", padding, shapes.PADDINGS)
  impl = shapes.choice("impl", impl, shapes.IMPLS)
  x_shape, x_dtype = tuple(np.shape(x)), jnp.result_type(x)
  s_shape, s_dtype = tuple(np.shape(shifts)), jnp.result_type(shifts)
  shapes.check_x_dtype("x", x_dtype, mode)
  _check_shifts(s_shape, s_dtype, mode)
  channels, ndim = s_shape
  if len(x_shape) < ndim + 1:
    raise ValueError(
        f"`x` must have at least {ndim + 1} axes ({ndim} spatial and one "
        f"channel axis, as `shifts` has {ndim} columns); got shape {x_shape}.")
  cax, spatial = shapes.channel_layout(x_shape, ndim, channel_axis)
  if x_shape[cax] != channels:
    hint = ""
    first = len(x_shape) - 1 - ndim  # where channels-first puts them
    if cax == len(x_shape) - 1 and first >= 0 and x_shape[first] == channels:
      hint = (f" `x` looks channels-first ({x_shape[first]} on axis {first}): "
              f"pass channel_axis={first}.")
    raise ValueError(
        f"`x` has {x_shape[cax]} channels on axis {cax} but `shifts` has "
        f"{channels} rows; they must match (x shape {x_shape}, shifts shape "
        f"{s_shape}).{hint}")
  strides = shapes.positive_ints("strides", strides, ndim)
  lengths = tuple(x_shape[a] for a in spatial)
  for a, length in zip(spatial, lengths):
    if length > shapes.MAX_AXIS_LENGTH:
      raise ValueError(
          f"`x` has {length} positions along spatial axis {a}; jaxshift "
          f"supports at most {shapes.MAX_AXIS_LENGTH} (2**28) per axis. "
          "Split the axis (e.g. reshape a long signal into rows) first.")
  out_lengths = tuple(-(-length // t) for length, t in zip(lengths, strides))
  out_shape = list(x_shape)
  for a, lo in zip(spatial, out_lengths):
    out_shape[a] = lo
  pad = 3 - ndim
  batch_axes = x_shape[:spatial[0]] if cax == len(x_shape) - 1 else x_shape[:cax]
  return ShiftCall(
      mode=mode, padding=padding, impl=impl, in_shape=x_shape,
      out_shape=tuple(out_shape), channel_axis=cax, spatial_axes=spatial,
      strides=strides, x_dtype=x_dtype.name, shift_dtype=s_dtype.name,
      compute_dtype=compute_dtype(x_dtype).name,
      channels_last=cax == len(x_shape) - 1,
      # math.prod keeps a symbolic batch (jax.export) symbolic
      batch=math.prod(batch_axes), channels=channels,
      lengths=(1,) * pad + lengths, out_lengths=(1,) * pad + out_lengths,
      kernel_strides=(1,) * pad + tuple(
          max(1, min(t, length)) for t, length in zip(strides, lengths)),
      present=(False,) * pad + (True,) * ndim)
