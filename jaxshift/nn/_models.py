"""CIFAR-size residual networks: `ShiftResNet` and its depthwise baseline."""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxshift.nn import _layers


class _ResNet(nnx.Module):
  """Stem 3x3 conv, three stages of blocks (widths w, 2w, 4w), pool, linear."""

  def __init__(self, depth, make_block, *, num_classes, in_features, width,
               rngs):
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
      raise ValueError(
          f"`depth` must be 6n + 2 for n >= 1 (8, 14, 20, 56, 110, ...); got "
          f"{depth!r}.")
    n = (depth - 2) // 6
    self.stem = nnx.Conv(in_features, width, (3, 3), use_bias=False, rngs=rngs)
    self.stem_bn = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
    blocks = []
    cin = width
    for stage in range(3):
      cout = width * 2**stage
      for i in range(n):
        strides = 2 if stage > 0 and i == 0 else 1
        blocks.append(make_block(cin, cout, strides=strides, rngs=rngs))
        cin = cout
    self.blocks = nnx.List(blocks)
    self.head = nnx.Linear(cin, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """``[N, H, W, in_features] -> [N, num_classes]`` logits."""
    x = nnx.relu(self.stem_bn(self.stem(x)))
    for block in self.blocks:
      x = block(x)
    return self.head(jnp.mean(x, axis=(1, 2)))


class ShiftResNet(_ResNet):
  """ShiftResNet of Wu et al. (2017) for CIFAR-size (e.g. 32x32) images.

  A ResNet-``depth`` (``depth = 6n + 2``: 20, 56, 110) whose basic blocks are
  `ShiftConv` blocks: three stages of ``n`` blocks with widths ``width``,
  ``2 width``, ``4 width``, the first block of stages 2 and 3 strided.

  Args:
    depth: ``6n + 2``.
    expansion: the `ShiftConv` expansion factor (Wu et al. use 1 to 9).
    num_classes: size of the logits.
    mode: shift mode of every block (``"integer"`` is the paper's grouped
      shift; ``"active"`` Jeon & Kim's; ``"sparse"`` Chen et al.'s).
    padding: the shifts' padding.
    in_features: input channels.
    width: channels of the first stage.
    rngs: the `nnx.Rngs` for all parameters.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxshift.nn import ShiftResNet
    >>> model = ShiftResNet(20, expansion=3, rngs=nnx.Rngs(0))
    >>> len(model.blocks), model.blocks[3].shift.shifts.shape
    (9, (48, 2))
    >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.ones((2, 32, 32, 3))).shape
    (2, 10)
  """

  def __init__(self, depth: int = 20, *, expansion: float = 1,
               num_classes: int = 10, mode: str = "active",
               padding: str = "zeros", in_features: int = 3, width: int = 16,
               rngs: nnx.Rngs):
    block = functools.partial(_layers.ShiftConv, expansion=expansion,
                              mode=mode, padding=padding)
    super().__init__(depth, block, num_classes=num_classes,
                     in_features=in_features, width=width, rngs=rngs)


class DepthwiseResNet(_ResNet):
  """The depthwise-convolution baseline of `ShiftResNet`.

  Identical but for the spatial operation of each block: a depthwise 3x3
  convolution (`DepthwiseConvBlock`) instead of a shift.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxshift.nn import DepthwiseResNet
    >>> model = DepthwiseResNet(8, rngs=nnx.Rngs(0))
    >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.ones((1, 8, 8, 3))).shape
    (1, 10)
  """

  def __init__(self, depth: int = 20, *, expansion: float = 1,
               num_classes: int = 10, in_features: int = 3, width: int = 16,
               rngs: nnx.Rngs):
    block = functools.partial(_layers.DepthwiseConvBlock, expansion=expansion)
    super().__init__(depth, block, num_classes=num_classes,
                     in_features=in_features, width=width, rngs=rngs)
