"""jaxshift.nn._models: ShiftResNet and its depthwise twin."""

import jax.numpy as jnp
import pytest
from flax import nnx

import jaxshift.nn as jsnn


@pytest.mark.parametrize("depth", [8, 20])
def test_resnets(depth):
  # Abstract models (no initialisation computed) for the shapes and counts;
  # a concrete one, run, at depth 8.
  shift = nnx.eval_shape(lambda: jsnn.ShiftResNet(
      depth, expansion=3, mode="sparse", rngs=nnx.Rngs(0)))
  dw = nnx.eval_shape(lambda: jsnn.DepthwiseResNet(depth, expansion=3,
                                                   rngs=nnx.Rngs(0)))
  x = jnp.ones((2, 16, 16, 3))
  for model in (shift, dw):
    assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (2, 10)
  if depth == 8:
    model = jsnn.ShiftResNet(depth, expansion=3, mode="sparse",
                             rngs=nnx.Rngs(0))
    logits = nnx.jit(lambda m, x: m(x))(model, x)
    assert logits.shape == (2, 10) and jnp.all(jnp.isfinite(logits))
    assert len(jsnn.shift_statistics(model)) == len(model.blocks)
  n = (depth - 2) // 6
  assert len(shift.blocks) == len(dw.blocks) == 3 * n
  # The only difference: 9 weights per middle channel against 2 shifts, and
  # 9 multiply-adds per middle output against none.
  mids = [b.shift.num_features for b in shift.blocks]
  assert jsnn.num_params(dw) - jsnn.num_params(shift) == 7 * sum(mids)
  hw = [16 * 16 if i < n else (8 * 8 if i < 2 * n else 4 * 4)
        for i in range(3 * n)]
  assert (jsnn.mult_adds(dw, x[:1]) - jsnn.mult_adds(shift, x[:1]) ==
          sum(9 * m * a for m, a in zip(mids, hw)))


def test_resnet_depth_error():
  with pytest.raises(ValueError, match="depth"):
    jsnn.ShiftResNet(21, rngs=nnx.Rngs(0))
