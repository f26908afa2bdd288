"""The temporal shift of TSM (Lin et al. 2019), offline and streaming.

A fixed integer move of a few channels by one frame along time, the other
channels copied: static slices (`static.move_axis`, the padding rule of
`jaxshift.shift`), so it fuses with its neighbours, exports with no custom
call, and differentiates with respect to `x` by ordinary autodiff.
"""

import jax
import jax.numpy as jnp
from jax import lax

from jaxshift._src import shapes
from jaxshift._src import static

DIRECTIONS = ("both", "left", "right")


def _moves(direction: str, fold: int) -> list[tuple[int, int, int]]:
  """``(first channel, end, frames moved)``: +1 reads frame ``t - 1``."""
  if direction == "both":  # TSM's order: [0, fold) reads t + 1
    return [(0, fold, -1), (fold, 2 * fold, 1)]
  return [(0, fold, 1 if direction == "right" else -1)]


def _fold(channels: int, fold_div) -> int:
  fold_div = shapes.positive_int("fold_div", fold_div)
  fold = channels // fold_div
  if fold < 1:
    raise ValueError(
        f"`fold_div` (={fold_div}) leaves no channel to move: "
        f"{channels} channels // {fold_div} = 0. Use a smaller fold_div or "
        "more channels.")
  return fold


def temporal_shift(x, *, fold_div: int = 8, time_axis: int = 1,
                   num_segments: int | None = None, direction: str = "both",
                   padding: str = "zeros", channel_axis: int = -1) -> jax.Array:
  """TSM's temporal shift: ``C // fold_div`` channels read a neighbouring frame.

  With ``fold = C // fold_div``: ``direction="both"`` (TSM's bidirectional
  shift): channels ``[0, fold)`` read frame ``t + 1`` and channels
  ``[fold, 2 fold)`` frame ``t - 1``; ``"right"`` (online TSM): channels
  ``[0, fold)`` read frame ``t - 1``; ``"left"``: channels ``[0, fold)``
  read frame ``t + 1``. Every other channel is copied; a frame before the
  first or after the last is answered by `padding` (zeros, as TSM does).

  Args:
    x: ``(N, T, ..., C)`` with time on `time_axis`; or, with
      `num_segments` ``= T``, the folded ``(N*T, ..., C)`` batch TSM uses.
      Channels-first (``channel_axis=1``: ``(N, C, T, ...)`` with
      ``time_axis=2``, or folded ``(N*T, C, ...)``) works too.
    fold_div: ``1 / (fraction of channels per moved group)``.
    time_axis: the time axis of `x` (not with `num_segments`).
    num_segments: ``T`` when time is folded into the batch axis 0.
    direction: ``"both"``, ``"right"`` or ``"left"``.
    padding: any padding of `jaxshift.shift`.
    channel_axis: the channel axis of `x`.

  Returns:
    The shifted array, shape and dtype of `x`.

  >>> import jax.numpy as jnp
  >>> x = jnp.arange(4.0)[None, :, None] * jnp.ones((1, 1, 2))  # (N, T, C=2)
  >>> temporal_shift(x, fold_div=2, direction="right")[0].T.tolist()
  [[0.0, 0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 3.0]]
  """
  x = jnp.asarray(x)
  shapes.check_x_dtype("x", x.dtype, "integer")
  direction = shapes.choice("direction", direction, DIRECTIONS)
  padding = shapes.choice("padding", padding, shapes.PADDINGS)
  shape = x.shape
  if num_segments is not None:
    num_segments = shapes.positive_int("num_segments", num_segments)
    try:
      folds = x.ndim >= 2 and shape[0] % num_segments == 0
    except jax.errors.InconclusiveDimensionOperation:  # symbolic, not a multiple
      folds = False
    if not folds:
      raise ValueError(
          f"With `num_segments` (={num_segments}), axis 0 of `x` folds "
          f"batch and time (N*T) and must be a multiple of it (for a "
          f"symbolic batch in jax.export, declare it so: "
          f"symbolic_shape('{num_segments}*b, ...')); got x shape "
          f"{shape}.")
    cax = _axis("channel_axis", channel_axis, x.ndim)
    if cax == 0:
      raise ValueError("`channel_axis` cannot be 0 with `num_segments`: axis "
                       "0 folds batch and time.")
    x = x.reshape((shape[0] // num_segments, num_segments) + shape[1:])
    time, cax = 1, cax + 1
  else:
    time = _axis("time_axis", time_axis, x.ndim)
    cax = _axis("channel_axis", channel_axis, x.ndim)
    if time == cax:
      raise ValueError(f"`time_axis` and `channel_axis` are the same axis "
                       f"({time}) of x shape {shape}.")
  frames = x.shape[time]
  parts, end = [], 0
  for lo, end, frames_moved in _moves(direction, _fold(x.shape[cax],
                                                        fold_div)):
    parts.append(static.move_axis(lax.slice_in_dim(x, lo, end, axis=cax),
                                  time, frames, frames, 1, padding,
                                  -frames_moved))
  parts.append(lax.slice_in_dim(x, end, x.shape[cax], axis=cax))
  return lax.concatenate(parts, cax).reshape(shape)


def temporal_shift_step(x_t, cache=None, *, fold_div: int = 8,
                        channel_axis: int = -1):
  """One frame of online TSM: ``(y_t, new_cache)``.

  Fed the frames of a clip one at a time (starting from ``cache=None``), the
  outputs are exactly those of ``temporal_shift(..., direction="right")``
  (zeros padding) on the whole clip: channels ``[0, fold)`` of `y_t` are the
  previous frame's, held in `cache`.

  Args:
    x_t: one frame, ``(N, ..., C)`` (or channels-first with `channel_axis`).
    cache: the previous frame's first ``fold = C // fold_div`` channels, shape
      of ``x_t[..., :fold]``; None (zeros) before the first frame.
    fold_div: as in `temporal_shift`.
    channel_axis: the channel axis of `x_t`.

  Returns:
    ``(y_t, new_cache)``: the shifted frame and the cache for the next one.

  >>> import jax.numpy as jnp
  >>> y, cache = temporal_shift_step(jnp.ones((1, 4)), fold_div=2)
  >>> y.tolist(), cache.tolist()
  ([[0.0, 0.0, 1.0, 1.0]], [[1.0, 1.0]])
  """
  x_t = jnp.asarray(x_t)
  shapes.check_x_dtype("x_t", x_t.dtype, "integer")
  cax = _axis("channel_axis", channel_axis, x_t.ndim)
  fold = _fold(x_t.shape[cax], fold_div)
  new_cache = lax.slice_in_dim(x_t, 0, fold, axis=cax)
  if cache is None:
    cache = jnp.zeros_like(new_cache)
  cache = jnp.asarray(cache)
  if cache.shape != new_cache.shape or cache.dtype != x_t.dtype:
    raise ValueError(
        f"`cache` must have the shape and dtype of the frame's first {fold} "
        f"channels, {new_cache.shape} {x_t.dtype}; got {cache.shape} "
        f"{cache.dtype}. Start with cache=None.")
  rest = lax.slice_in_dim(x_t, fold, x_t.shape[cax], axis=cax)
  return lax.concatenate([cache, rest], cax), new_cache


def _axis(name: str, axis, ndim: int) -> int:
  if not shapes.is_int(axis) or not -ndim <= axis < ndim:
    raise ValueError(f"`{name}` must be an axis of x (in [{-ndim}, {ndim})); "
                     f"got {axis!r}.")
  return int(axis) % ndim
