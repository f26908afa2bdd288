"""Argument validation: every check a user can fail, written once.

Each validator names the argument, quotes what it got and says what is
accepted. `jaxshift.shift` (through `jaxshift._src.layout`), the NNX layers
and the shift tables all use these, so an argument is checked the same way
wherever it is given. Nothing here touches compiled code.
"""

import numbers
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

MODES = ("active", "sparse", "integer")
# The order is the padding code the kernels receive (xla_ffi/core/padding.h,
# enum Padding); tests/test_ffi.py asks each built library for its names.
PADDINGS = ("zeros", "border", "periodic", "reflect", "symmetric")
IMPLS = ("auto", "xla", "ffi")
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
# The dtypes the moves (mode "integer", the forward of "sparse") take as well:
# a move does no arithmetic, so it is exact in any of them.
MOVE_DTYPES = ("bool", "int8", "uint8", "int16", "uint16", "int32", "uint32",
               "int64", "uint64")

# The longest spatial axis a shift accepts (xla_ffi/core/padding.h,
# kMaxAxisLength; tests/test_ffi.py asks each built library for it). Positions
# along an axis are 32-bit in every implementation; with this bound every
# position a shift computes, after the shift tables' reduction, stays below
# 2**31 with a margin of 8.
MAX_AXIS_LENGTH = 2**28


def is_int(value) -> bool:
  """A Python or NumPy integer, not a bool."""
  return (isinstance(value, (numbers.Integral, np.integer)) and
          not isinstance(value, (bool, np.bool_)))


def choice(name: str, value, allowed: Sequence[str]) -> str:
  """`value` lower-cased if it is one of `allowed`, else a ValueError."""
  if not isinstance(value, str) or value.lower() not in allowed:
    raise ValueError(
        f"`{name}` must be one of {', '.join(repr(a) for a in allowed)}; "
        f"got {value!r}.")
  return value.lower()


def positive_int(name: str, value, *, odd: bool = False) -> int:
  """`value` as an int if it is a positive (and, with `odd`, odd) integer."""
  if not is_int(value) or value < 1 or (odd and value % 2 == 0):
    what = "a positive odd int" if odd else "a positive int"
    raise ValueError(f"`{name}` must be {what}; got {value!r}.")
  return int(value)


def positive_ints(name: str, value, n: int, *, odd: bool = False
                  ) -> tuple[int, ...]:
  """An int, or a sequence of `n` ints, as `n` positive ints.

  >>> positive_ints("strides", 2, 3)
  (2, 2, 2)
  >>> positive_ints("strides", (1, 2), 2)
  (1, 2)
  """
  what = "positive odd ints" if odd else "positive ints"
  if is_int(value):
    value = (value,) * n
  elif isinstance(value, Sequence) and not isinstance(value, str):
    value = tuple(value)
    if len(value) != n:
      raise ValueError(
          f"`{name}` must be an int or a sequence of {n} ints (one per "
          f"spatial axis); got {value!r}.")
  else:
    raise TypeError(f"`{name}` must be an int or a sequence of {n} {what}; "
                    f"got {value!r}.")
  if not all(is_int(v) and v >= 1 and not (odd and v % 2 == 0)
             for v in value):
    raise ValueError(f"`{name}` must be {what}; got {value!r}.")
  return tuple(int(v) for v in value)


def spatial_ndim(name: str, value) -> int:
  """The number of spatial axes, 1, 2 or 3."""
  if not is_int(value) or value not in (1, 2, 3):
    raise ValueError(f"`{name}` must be 1, 2 or 3; got {value!r}.")
  return int(value)


def check_x_dtype(name: str, dtype, mode: str) -> None:
  """Floating `dtype` for every mode; integer and bool too for the moves.

  Raises:
    TypeError: naming `name`, the dtype, and what to do instead.
  """
  d = jnp.dtype(dtype)
  if d.name in FLOAT_DTYPES:
    return
  if d.name in MOVE_DTYPES:
    if mode == "active":
      raise TypeError(
          f"`{name}` has dtype {d.name}, but mode='active' interpolates "
          f"between elements, which needs a floating dtype: cast it first "
          f"(`{name}.astype(jnp.float32)`), or move it exactly with "
          "mode='integer' (or 'sparse').")
    return
  raise TypeError(
      f"`{name}` must have a floating dtype ({', '.join(FLOAT_DTYPES)}), or "
      f"for mode='integer' / 'sparse' an integer or bool dtype; got {d.name}.")


def check_channel_axis(channel_axis, ndim: int) -> int:
  """What can be checked of `channel_axis` before the input's rank is known.

  The channel axis is the last axis (channels-last) or the one just before
  the `ndim` spatial axes (channels-first); counted from the end, that is -1
  or ``-(ndim + 1)``. A non-negative axis depends on the rank and is checked
  by `channel_layout` at the call.
  """
  if not is_int(channel_axis):
    raise TypeError(f"`channel_axis` must be an int; got {channel_axis!r}.")
  if channel_axis < 0 and channel_axis not in (-1, -(ndim + 1)):
    raise ValueError(
        f"`channel_axis` (={channel_axis}) must be -1 (channels-last, "
        f"(N, *spatial, C)), {-(ndim + 1)} or a non-negative axis (the axis "
        f"just before the {ndim} spatial axes: channels-first, "
        "(N, C, *spatial)).")
  return int(channel_axis)


def channel_layout(shape: Sequence[int], ndim: int,
                   channel_axis) -> tuple[int, tuple[int, ...]]:
  """``(channel axis, spatial axes)`` of `shape`, both non-negative.

  Raises:
    ValueError: the channel axis is neither last nor just before the
      `ndim` spatial axes.
  """
  rank = len(shape)
  if not is_int(channel_axis):
    raise TypeError(f"`channel_axis` must be an int; got {channel_axis!r}.")
  if not -rank <= channel_axis < rank:
    raise ValueError(f"`channel_axis` (={channel_axis}) is out of range for "
                     f"`x` of rank {rank}.")
  cax = int(channel_axis) % rank
  if cax == rank - 1:
    return cax, tuple(range(rank - 1 - ndim, rank - 1))
  if cax == rank - 1 - ndim:
    return cax, tuple(range(cax + 1, rank))
  raise ValueError(
      f"`channel_axis` (={channel_axis}) must be the last axis "
      f"(channels-last, (N, *spatial, C)) or the axis just before the "
      f"{ndim} spatial axes (channels-first, (N, C, *spatial)); `x` has "
      f"shape {tuple(shape)}.")
