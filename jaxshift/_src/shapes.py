"""Argument validation and canonical layout for `jaxshift.shift`.

Everything a user can get wrong is checked here, once, at trace time, and
turned into a small hashable :class:`ShiftConfig` that the rest of the package
reads. Nothing in this module touches compiled code.
"""

import dataclasses
import numbers
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

MODES = ("active", "sparse", "integer")
PADDINGS = ("zeros", "border", "periodic", "reflect", "symmetric")
IMPLS = ("auto", "xla", "ffi")
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


@dataclasses.dataclass(frozen=True)
class ShiftConfig:
  """Canonical, hashable description of one shift call.

  Attributes:
    mode: one of `MODES`.
    padding: one of `PADDINGS`.
    ndim: number of spatial axes ``D`` (1, 2 or 3).
    channel_axis: the channel axis of ``x``, non-negative.
    spatial_axes: the ``D`` spatial axes of ``x``, non-negative, in order.
    strides: one positive int per spatial axis.
    impl: one of `IMPLS`.
  """

  mode: str
  padding: str
  ndim: int
  channel_axis: int
  spatial_axes: tuple[int, ...]
  strides: tuple[int, ...]
  impl: str

  @property
  def channels_last(self) -> bool:
    return self.channel_axis > self.spatial_axes[-1]

  def out_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
    """Shape of the output for an input of shape `shape`."""
    out = list(shape)
    for ax, t in zip(self.spatial_axes, self.strides):
      out[ax] = -(-shape[ax] // t)
    return tuple(out)


def _choice(name: str, value, allowed: Sequence[str]) -> str:
  if not isinstance(value, str) or value.lower() not in allowed:
    raise ValueError(
        f"`{name}` must be one of {', '.join(repr(a) for a in allowed)}; "
        f"got {value!r}.")
  return value.lower()


def canonical_strides(strides, ndim: int) -> tuple[int, ...]:
  """Expand an int or a sequence into one positive int per spatial axis."""
  if isinstance(strides, (numbers.Integral, np.integer)) and not isinstance(
      strides, bool):
    strides = (int(strides),) * ndim
  elif isinstance(strides, Sequence) and not isinstance(strides, str):
    strides = tuple(strides)
    if len(strides) != ndim:
      raise ValueError(
          f"`strides` must be an int or a sequence of {ndim} ints (one per "
          f"spatial axis); got {strides!r}.")
  else:
    raise TypeError(f"`strides` must be an int or a sequence of ints; got "
                    f"{strides!r}.")
  for t in strides:
    if (not isinstance(t, (numbers.Integral, np.integer)) or
        isinstance(t, bool) or t < 1):
      raise ValueError(
          f"`strides` must be positive ints; got {strides!r}.")
  return tuple(int(t) for t in strides)


def check_float_dtype(name: str, dtype) -> None:
  if jnp.dtype(dtype).name not in FLOAT_DTYPES:
    raise TypeError(
        f"`{name}` must have a floating dtype ({', '.join(FLOAT_DTYPES)}); "
        f"got {jnp.dtype(dtype).name}.")


def make_config(x, shifts, *, mode, padding, channel_axis, strides,
                impl) -> ShiftConfig:
  """Validates the arguments of `jaxshift.shift` and returns their canonical form.

  Raises:
    TypeError: ``x`` is not floating, or ``shifts`` is not numeric, or
      ``shifts`` is integer in a mode that differentiates it.
    ValueError: any shape, option or stride is not accepted.
  """
  mode = _choice("mode", mode, MODES)
  padding = _choice("padding", padding, PADDINGS)
  impl = _choice("impl", impl, IMPLS)
  x_shape, x_dtype = np.shape(x), jnp.result_type(x)
  s_shape, s_dtype = np.shape(shifts), jnp.result_type(shifts)
  check_float_dtype("x", x_dtype)
  if len(s_shape) != 2 or s_shape[1] not in (1, 2, 3):
    raise ValueError(
        "`shifts` must have shape (C, D): one row per channel and one column "
        f"per spatial axis, D in 1, 2, 3; got shape {s_shape}.")
  if jnp.issubdtype(s_dtype, jnp.integer):
    if mode != "integer":
      raise TypeError(
          f"`shifts` has integer dtype {s_dtype.name}, but mode={mode!r} "
          "differentiates it; pass floating shifts, or use mode='integer'.")
  elif not jnp.issubdtype(s_dtype, jnp.floating):
    raise TypeError(f"`shifts` must be floating (or integer with "
                    f"mode='integer'); got dtype {s_dtype.name}.")
  channels, ndim = s_shape
  rank = len(x_shape)
  if rank < ndim + 1:
    raise ValueError(
        f"`x` must have at least {ndim + 1} axes ({ndim} spatial and one "
        f"channel axis, as `shifts` has {ndim} columns); got shape {x_shape}.")
  if (not isinstance(channel_axis, (numbers.Integral, np.integer)) or
      isinstance(channel_axis, bool)):
    raise TypeError(f"`channel_axis` must be an int; got {channel_axis!r}.")
  if not -rank <= channel_axis < rank:
    raise ValueError(f"`channel_axis` (={channel_axis}) is out of range for "
                     f"`x` of rank {rank}.")
  cax = int(channel_axis) % rank
  if cax == rank - 1:
    spatial = tuple(range(rank - 1 - ndim, rank - 1))
  elif cax == rank - 1 - ndim:
    spatial = tuple(range(cax + 1, rank))
  else:
    raise ValueError(
        f"`channel_axis` (={channel_axis}) must be the last axis "
        f"(channels-last, (N, *spatial, C)) or the axis just before the "
        f"{ndim} spatial axes (channels-first, (N, C, *spatial)); `x` has "
        f"shape {x_shape}.")
  if x_shape[cax] != channels:
    raise ValueError(
        f"`x` has {x_shape[cax]} channels on axis {cax} but `shifts` has "
        f"{channels} rows; they must match (x shape {x_shape}, shifts shape "
        f"{s_shape}).")
  return ShiftConfig(mode=mode, padding=padding, ndim=ndim, channel_axis=cax,
                     spatial_axes=spatial,
                     strides=canonical_strides(strides, ndim), impl=impl)
