"""Flax NNX shift layers: `Shift`, `DepthwiseShift`, the `ShiftConv` block and
`TemporalShift`."""

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxshift._src import dispatch
from jaxshift._src import halo
from jaxshift._src import init as shift_inits
from jaxshift._src import shapes
from jaxshift._src import temporal

Initializer = Callable[..., jax.Array]


class ShiftParam(nnx.Param):
  """The ``[C, D]`` shifts of a `Shift` layer.

  A `nnx.Param` subclass, so optimisers can treat shifts apart from weights
  (the papers train them with no weight decay), e.g.
  ``nnx.state(model, ShiftParam)`` or ``nnx.Optimizer(..., wrt=ShiftParam)``.
  """


@dataclasses.dataclass(frozen=True)
class FrozenShifts:
  """The shifts of a frozen `Shift` layer (`freeze`): constants, not parameters.

  Hashable NNX static metadata, so under `nnx.jit` (and `jax.export`) the
  layer's shifts are known at trace time and `jaxshift.shift` lowers to
  plain XLA slices (and constant weights, for an active layer), with no
  custom call. ``frozen[...]`` gives the ``[C, D]`` NumPy array (float32, or
  float64 for float64 shifts), as ``ShiftParam[...]`` gives its value.
  """

  values: tuple[tuple[float, ...], ...]
  dtype: str = "float32"

  @classmethod
  def of(cls, shifts, dtype=np.float32) -> "FrozenShifts":
    dtype = np.dtype(dtype)
    return cls(tuple(tuple(float(v) for v in row)
                     for row in np.asarray(shifts, dtype)), dtype.name)

  def __getitem__(self, index) -> np.ndarray:
    return np.asarray(self.values, self.dtype)[index]

  @property
  def shape(self) -> tuple[int, int]:
    return (len(self.values), len(self.values[0]))


def _default_init(mode: str, kernel_size: int = 3) -> Initializer:
  if mode == "integer":
    return shift_inits.grouped(kernel_size)
  return shift_inits.uniform((kernel_size - 1) / 2)


class Shift(nnx.Module):
  """A shift layer: moves each feature channel by its own learned offset.

  Holds ``shifts``, a `ShiftParam` of shape ``[num_features, ndim]``, and
  applies `jaxshift.shift` to ``[*batch, *spatial, num_features]`` inputs
  (or channels-first with ``channel_axis``).

  Args:
    num_features: number of channels ``C``.
    ndim: number of spatial axes ``D`` (1, 2 or 3).
    mode: ``"active"``, ``"sparse"`` or ``"integer"`` (see `jaxshift.shift`).
    padding: ``"zeros"``, ``"border"``, ``"periodic"``, ``"reflect"`` or
      ``"symmetric"``.
    strides: an int or one int per spatial axis.
    channel_axis: channel axis of the input: -1 (channels-last, the
      default), or the axis just before the spatial ones (channels-first,
      e.g. 1 for ``[N, C, H, W]``); checked here, when the layer is built.
    shift_init: ``(key, shape, dtype) -> [C, D]``; see
      `jaxshift.initializers`. Default: uniform in ``[-1, 1]`` for active and
      sparse, the grouped 3x3 assignment for integer.
    param_dtype: dtype of the shifts.
    impl: ``"auto"``, ``"xla"`` or ``"ffi"`` (see `jaxshift.shift`).
    max_shift: where an explicit mesh splits the input's spatial axes: the
      largest ``|shift|`` the halo exchange is sized for (a number or one
      per axis; see `jaxshift.shift`). None: split spatial axes are gathered.
    rngs: the `nnx.Rngs` that seeds ``shift_init``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxshift.nn import Shift
    >>> layer = Shift(8, strides=2, rngs=nnx.Rngs(0))
    >>> layer.shifts.shape
    (8, 2)
    >>> layer(jnp.ones((2, 16, 16, 8))).shape
    (2, 8, 8, 8)
  """

  def __init__(self, num_features: int, *, ndim: int = 2,
               mode: str = "active", padding: str = "zeros",
               strides: int | Sequence[int] = 1, channel_axis: int = -1,
               shift_init: Initializer | None = None,
               param_dtype=jnp.float32, impl: str = "auto",
               max_shift: float | Sequence[float] | None = None,
               rngs: nnx.Rngs):
    self.num_features = shapes.positive_int("num_features", num_features)
    self.ndim = shapes.spatial_ndim("ndim", ndim)
    self.max_shift = halo.max_shift_bound(max_shift, self.ndim)
    self.mode = shapes.choice("mode", mode, shapes.MODES)
    self.padding = shapes.choice("padding", padding, shapes.PADDINGS)
    self.strides = shapes.positive_ints("strides", strides, self.ndim)
    self.channel_axis = shapes.check_channel_axis(channel_axis, self.ndim)
    self.impl = shapes.choice("impl", impl, shapes.IMPLS)
    init = shift_init if shift_init is not None else _default_init(self.mode)
    self.shifts = ShiftParam(
        init(rngs.params(), (self.num_features, ndim), param_dtype))

  def __call__(self, x: jax.Array) -> jax.Array:
    """``[*batch, *spatial, C] -> [*batch, *ceil(spatial / strides), C]``."""
    with jax.named_scope("jaxshift.nn.Shift"):
      return dispatch.shift(x, self.shifts[...], mode=self.mode,
                            padding=self.padding,
                            channel_axis=self.channel_axis,
                            strides=self.strides, impl=self.impl,
                            max_shift=self.max_shift)


class DepthwiseShift(nnx.Module):
  """A drop-in for a depthwise ``nnx.Conv`` that shifts instead.

  Replaces ``nnx.Conv(C, C, kernel_size, strides, padding=...,
  feature_group_count=C)`` and gives the same output shape, channels-last.
  The shifts start spread over the kernel's footprint: the grouped
  assignment for ``mode="integer"``, uniform in ``±(k - 1) / 2`` otherwise.

  ``padding="SAME"`` keeps ``ceil(L / stride)`` samples; ``"VALID"`` crops
  ``k - 1`` border samples first (``ceil((L - k + 1) / stride)``), as the
  convolution's output would. ``stride_method="native"`` samples every
  ``stride``-th position in the shift itself; ``"avg_pool"`` shifts at full
  resolution and average-pools by ``stride`` (torchshifts' depthwise
  emulation).

  Args:
    features: channels ``C`` (the convolution's in = out features).
    kernel_size: an odd int or one per spatial axis (sets the dimension
      count ``D``).
    strides: an int or one int per spatial axis.
    padding: ``"SAME"`` or ``"VALID"`` (the convolution's padding).
    mode: the shift mode (see `Shift`).
    shift_padding: how the shift reads outside the array (see `Shift`).
    stride_method: ``"native"`` or ``"avg_pool"``.
    shift_init: overrides the default initialiser.
    param_dtype: dtype of the shifts.
    max_shift: the halo bound for spatially sharded inputs (see `Shift`).
    rngs: the `nnx.Rngs` that seeds ``shift_init``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxshift.nn import DepthwiseShift
    >>> layer = DepthwiseShift(16, 3, strides=2, padding="VALID",
    ...                        rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((1, 9, 9, 16))).shape
    (1, 4, 4, 16)
  """

  def __init__(self, features: int, kernel_size: int | Sequence[int],
               strides: int | Sequence[int] = 1, *, padding: str = "SAME",
               mode: str = "active", shift_padding: str = "zeros",
               stride_method: str = "native",
               shift_init: Initializer | None = None,
               param_dtype=jnp.float32,
               max_shift: float | Sequence[float] | None = None,
               rngs: nnx.Rngs):
    if shapes.is_int(kernel_size):
      ndim = 2
    elif (isinstance(kernel_size, Sequence) and not isinstance(kernel_size, str)
          and len(kernel_size) in (1, 2, 3)):
      ndim = len(kernel_size)
    else:
      raise ValueError(
          f"`kernel_size` must be an int or 1 to 3 ints; got {kernel_size!r}.")
    # Odd: a shift, like the convolution it replaces, has a centre.
    self.kernel_size = shapes.positive_ints("kernel_size", kernel_size, ndim,
                                            odd=True)
    self.strides = shapes.positive_ints("strides", strides, ndim)
    if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
      raise ValueError(f"`padding` must be 'SAME' or 'VALID'; got {padding!r}.")
    self.padding = padding.upper()
    self.stride_method = shapes.choice("stride_method", stride_method,
                                       ("native", "avg_pool"))
    mode = shapes.choice("mode", mode, shapes.MODES)
    if shift_init is None:
      shift_init = _default_init(mode, max(self.kernel_size))
    native = self.stride_method == "native" and self.padding == "SAME"
    self.shift = Shift(features, ndim=ndim, mode=mode, padding=shift_padding,
                       strides=self.strides if native else 1,
                       shift_init=shift_init, param_dtype=param_dtype,
                       max_shift=max_shift, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """``[*batch, *spatial, C] -> [*batch, *out_spatial, C]``, as nnx.Conv."""
    y = self.shift(x)
    ndim = len(self.kernel_size)
    if self.padding == "VALID":
      crop = tuple(slice(k // 2, y.shape[a] - k // 2) for a, k in zip(
          range(y.ndim - 1 - ndim, y.ndim - 1), self.kernel_size))
      y = y[(Ellipsis,) + crop + (slice(None),)]
    if self.shift.strides != self.strides:  # stride not applied by the shift
      if self.stride_method == "avg_pool":
        y = nnx.avg_pool(y, self.strides, self.strides, padding="SAME",
                         count_include_pad=False)
      else:
        y = y[(Ellipsis,) + tuple(slice(None, None, t) for t in self.strides)
              + (slice(None),)]
    return y


def _conv1x1(cin, cout, strides, rngs):
  return nnx.Conv(cin, cout, (1, 1), strides, use_bias=False, rngs=rngs)


class _InvertedBlock(nnx.Module):
  """1x1 conv -> BN -> ReLU -> `spatial` -> 1x1 conv -> BN, plus a residual."""

  def __init__(self, in_features, out_features, mid, strides, spatial, rngs):
    self.conv1 = _conv1x1(in_features, mid, 1, rngs)
    self.bn1 = nnx.BatchNorm(mid, momentum=0.9, rngs=rngs)
    self.spatial = spatial
    self.conv2 = _conv1x1(mid, out_features, 1, rngs)
    self.bn2 = nnx.BatchNorm(out_features, momentum=0.9, rngs=rngs)
    if strides == 1 and in_features == out_features:
      self.project = nnx.data(None)
    else:
      self.project = nnx.Sequential(
          _conv1x1(in_features, out_features, strides, rngs),
          nnx.BatchNorm(out_features, momentum=0.9, rngs=rngs))

  def __call__(self, x):
    y = nnx.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(self.spatial(y)))
    residual = x if self.project is None else self.project(x)
    return nnx.relu(y + residual)


def _mid_features(in_features, expansion):
  in_features = shapes.positive_int("in_features", in_features)
  if not (isinstance(expansion, (int, float)) and expansion > 0):
    raise ValueError(f"`expansion` must be a positive number; got "
                     f"{expansion!r}.")
  return max(1, int(round(in_features * expansion)))


class ShiftConv(_InvertedBlock):
  """The shift block of Wu et al. and Jeon & Kim, channels-last (NHWC).

  ``1x1 conv (in -> mid) -> BatchNorm -> ReLU -> Shift (stride) ->
  1x1 conv (mid -> out) -> BatchNorm``, added to the input (or to a strided
  1x1 conv + BatchNorm projection of it when the shapes differ), then ReLU.
  ``mid = round(expansion * in_features)``.

  Args:
    in_features: input channels.
    out_features: output channels.
    expansion: the width of the shifted middle, relative to `in_features`.
    strides: spatial stride, applied by the shift.
    mode: the shift mode (see `Shift`).
    padding: the shift's padding.
    shift_init: the shift initialiser (see `Shift`).
    max_shift: the halo bound for spatially sharded inputs (see `Shift`).
    rngs: the `nnx.Rngs` for all parameters.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxshift.nn import ShiftConv
    >>> block = ShiftConv(16, 32, expansion=3, strides=2, rngs=nnx.Rngs(0))
    >>> block(jnp.ones((4, 8, 8, 16))).shape
    (4, 4, 4, 32)
    >>> block.shift.shifts.shape
    (48, 2)
  """

  def __init__(self, in_features: int, out_features: int, *,
               expansion: float = 1, strides: int = 1, mode: str = "active",
               padding: str = "zeros", shift_init: Initializer | None = None,
               max_shift: float | Sequence[float] | None = None,
               rngs: nnx.Rngs):
    mid = _mid_features(in_features, expansion)
    shift = Shift(mid, mode=mode, padding=padding, strides=strides,
                  shift_init=shift_init, max_shift=max_shift, rngs=rngs)
    super().__init__(in_features, out_features, mid, strides, shift, rngs)

  @property
  def shift(self) -> Shift:
    return self.spatial


class DepthwiseConvBlock(_InvertedBlock):
  """`ShiftConv` with a depthwise 3x3 convolution where the shift was.

  The baseline the shift block replaces: same widths, strides and residual,
  so a `ShiftResNet` and a `DepthwiseResNet` train identically.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxshift.nn import DepthwiseConvBlock
    >>> DepthwiseConvBlock(16, 16, rngs=nnx.Rngs(0))(jnp.ones((1, 8, 8, 16))).shape
    (1, 8, 8, 16)
  """

  def __init__(self, in_features: int, out_features: int, *,
               expansion: float = 1, strides: int = 1, kernel_size: int = 3,
               rngs: nnx.Rngs):
    mid = _mid_features(in_features, expansion)
    conv = nnx.Conv(mid, mid, (kernel_size, kernel_size), strides,
                    feature_group_count=mid, use_bias=False, rngs=rngs)
    super().__init__(in_features, out_features, mid, strides, conv, rngs)


class TemporalShift(nnx.Module):
  """TSM's temporal shift as a layer (no parameters): `jaxshift.temporal_shift`.

  Called on a clip it shifts ``C // fold_div`` channels by a frame (both
  directions by default); `step` runs it online, one frame at a time, with a
  cache the caller carries (``direction="right"``, zeros padding: the
  streaming form of online TSM).

  Args:
    fold_div: ``C // fold_div`` channels per moved group.
    num_segments: ``T`` for inputs that fold batch and time, ``(N*T, ...)``;
      None for ``(N, T, ..., C)`` with time on `time_axis`.
    time_axis: the time axis (without `num_segments`).
    direction: ``"both"``, ``"right"`` or ``"left"``.
    padding: any padding of `jaxshift.shift`.
    channel_axis: the channel axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxshift.nn import TemporalShift
    >>> tsm = TemporalShift(fold_div=4, num_segments=3)
    >>> tsm(jnp.ones((6, 5, 5, 8))).shape               # (N*T, H, W, C)
    (6, 5, 5, 8)
    >>> y, cache = tsm.step(jnp.ones((2, 5, 5, 8)))      # one frame
    >>> cache.shape
    (2, 5, 5, 2)
  """

  def __init__(self, *, fold_div: int = 8, num_segments: int | None = None,
               time_axis: int = 1, direction: str = "both",
               padding: str = "zeros", channel_axis: int = -1):
    self.fold_div = shapes.positive_int("fold_div", fold_div)
    self.num_segments = (None if num_segments is None else
                         shapes.positive_int("num_segments", num_segments))
    self.time_axis = time_axis
    self.direction = shapes.choice("direction", direction,
                                   temporal.DIRECTIONS)
    self.padding = shapes.choice("padding", padding, shapes.PADDINGS)
    self.channel_axis = channel_axis

  def __call__(self, x: jax.Array) -> jax.Array:
    return temporal.temporal_shift(
        x, fold_div=self.fold_div, time_axis=self.time_axis,
        num_segments=self.num_segments, direction=self.direction,
        padding=self.padding, channel_axis=self.channel_axis)

  def step(self, x_t: jax.Array, cache: jax.Array | None = None):
    """One frame: ``(y_t, new_cache)`` (`jaxshift.temporal_shift_step`)."""
    return temporal.temporal_shift_step(x_t, cache, fold_div=self.fold_div,
                                        channel_axis=self.channel_axis)
