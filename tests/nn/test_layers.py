"""jaxshift.nn._layers: Shift, DepthwiseShift, ShiftConv, DepthwiseConvBlock."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers_nn import smooth_images
from oracles import numpy_move
from oracles import scipy_shift

import jaxshift
import jaxshift.nn as jsnn


# ---------------------------------------------------------------- Shift
@pytest.mark.parametrize("ndim,mode,padding,strides", [
    (1, "active", "zeros", 1), (1, "sparse", "periodic", 2),
    (2, "active", "reflect", (2, 1)), (2, "integer", "border", 1),
    (2, "sparse", "symmetric", 3), (3, "active", "zeros", (1, 2, 2)),
    (3, "integer", "periodic", 1)])
def test_shift_layer_matches_scipy(ndim, mode, padding, strides):
  c = 3**ndim  # the default integer init (grouped 3x3) needs 3**ndim channels
  layer = jsnn.Shift(c, ndim=ndim, mode=mode, padding=padding,
                     strides=strides, rngs=nnx.Rngs(3))
  assert layer.shifts.shape == (c, ndim)
  assert isinstance(layer.shifts, jsnn.ShiftParam)
  x = np.random.default_rng(0).normal(size=(2,) + (7, 6, 5)[:ndim] + (c,))
  y = layer(jnp.asarray(x, jnp.float32))
  want = scipy_shift(x, layer.shifts[...], mode=mode, padding=padding,
                     strides=strides)
  assert y.shape == want.shape
  np.testing.assert_allclose(y, want, atol=1e-5)


def test_shift_layer_channels_first_and_dtypes():
  layer = jsnn.Shift(3, channel_axis=1, param_dtype=jnp.bfloat16,
                     rngs=nnx.Rngs(0))
  assert layer.shifts.dtype == jnp.bfloat16
  x = np.random.default_rng(1).normal(size=(2, 3, 6, 7)).astype(np.float32)
  y = layer(jnp.asarray(x, jnp.float16))
  assert y.dtype == jnp.float16 and y.shape == x.shape
  want = scipy_shift(x, np.asarray(layer.shifts[...], np.float32),
                     channel_axis=1)
  np.testing.assert_allclose(np.asarray(y, np.float32), want, atol=2e-2)


def test_default_initialisers():
  assert np.all(np.abs(jsnn.Shift(64, rngs=nnx.Rngs(0)).shifts[...]) <= 1)
  grouped = jsnn.Shift(18, mode="integer", rngs=nnx.Rngs(0)).shifts[...]
  np.testing.assert_array_equal(grouped, jaxshift.grouped_shifts(18, 3))
  init = jaxshift.initializers.sign_split(2.0)
  s = jsnn.Shift(256, shift_init=init, rngs=nnx.Rngs(0)).shifts[...]
  assert np.all(np.abs(s) <= 2) and 0.3 < np.mean(s > 0) < 0.7


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_features=0), "num_features"), (dict(ndim=4), "ndim"),
    (dict(mode="bilinear"), "mode"), (dict(padding="same"), "padding"),
    (dict(strides=0), "strides"), (dict(strides=(1, 2, 3)), "strides"),
    (dict(impl="cuda"), "impl"), (dict(channel_axis=-2), "channel_axis"),
    (dict(channel_axis=1.5), "channel_axis")])
def test_shift_layer_errors_when_built(kwargs, match):
  kwargs = {"num_features": 4, **kwargs}
  with pytest.raises((TypeError, ValueError), match=match):
    jsnn.Shift(**kwargs, rngs=nnx.Rngs(0))


def test_shift_layer_wrong_input_channels():
  with pytest.raises(ValueError, match="shifts"):
    jsnn.Shift(4, rngs=nnx.Rngs(0))(jnp.ones((1, 5, 5, 3)))


def test_active_shift_recovers_known_displacement():
  """Adam on an active layer finds per-channel sub-pixel shifts to 0.05 px."""
  true = jnp.array([[0.3, -1.2], [1.7, 0.6], [-0.8, -0.4], [0.5, 1.1]])
  x = smooth_images(5, 8, 24, 4)
  target = jaxshift.shift(x, true, padding="border")
  layer = jsnn.Shift(4, padding="border",
                     shift_init=jaxshift.initializers.zeros, rngs=nnx.Rngs(0))
  opt = nnx.Optimizer(layer, optax.adam(0.05), wrt=nnx.Param)

  @nnx.jit
  def step(layer, opt):
    grads = nnx.grad(lambda m: jnp.mean((m(x) - target) ** 2))(layer)
    opt.update(layer, grads)

  for _ in range(300):
    step(layer, opt)
  np.testing.assert_allclose(layer.shifts[...], true, atol=0.05)


# ---------------------------------------------------------------- DepthwiseShift
@pytest.mark.parametrize("size,k,stride,padding,method", [
    c for c in itertools.product((7, 8), (1, 3, 5), (1, 2, 3), ("SAME", "VALID"),
                                 ("native", "avg_pool"))])
def test_depthwise_shift_shape_matches_conv(size, k, stride, padding, method):
  c = 9
  x = jax.ShapeDtypeStruct((2, size, size + 1, c), jnp.float32)
  # Abstract layers: shapes only, no initialisation computed.
  conv = nnx.eval_shape(lambda: nnx.Conv(
      c, c, (k, k), stride, padding=padding, feature_group_count=c,
      rngs=nnx.Rngs(0)))
  layer = nnx.eval_shape(lambda: jsnn.DepthwiseShift(
      c, k, stride, padding=padding, stride_method=method, rngs=nnx.Rngs(0)))
  apply = lambda m, x: m(x)
  assert (nnx.eval_shape(apply, layer, x).shape ==
          nnx.eval_shape(apply, conv, x).shape)


def test_depthwise_shift_values():
  x = np.random.default_rng(4).normal(size=(1, 9, 8, 9)).astype(np.float32)
  layer = jsnn.DepthwiseShift(9, 3, 2, padding="VALID", mode="integer",
                              rngs=nnx.Rngs(0))
  s = layer.shift.shifts[...]
  np.testing.assert_array_equal(s, jaxshift.grouped_shifts(9, 3))
  full = scipy_shift(x, s, mode="integer")
  np.testing.assert_allclose(layer(x), full[:, 1:-1:2, 1:-1:2], atol=1e-6)
  pooled = jsnn.DepthwiseShift(9, 3, 2, mode="integer", stride_method="avg_pool",
                               rngs=nnx.Rngs(0))(x)
  np.testing.assert_allclose(pooled[:, 1, 1], full[:, 2:4, 2:4].mean((1, 2)),
                             atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(kernel_size=4), "odd"), (dict(padding="CIRCULAR"), "padding"),
    (dict(stride_method="max"), "stride_method"),
    (dict(kernel_size=(3, 3, 3, 3)), "kernel_size")])
def test_depthwise_shift_errors(kwargs, match):
  kwargs = {"features": 4, "kernel_size": 3, **kwargs}
  with pytest.raises(ValueError, match=match):
    jsnn.DepthwiseShift(**kwargs, rngs=nnx.Rngs(0))


# ---------------------------------------------------------------- blocks
@pytest.mark.parametrize("cin,cout,strides,expansion,mid", [
    (8, 8, 1, 1, 8), (8, 16, 2, 3, 24), (8, 8, 2, 0.5, 4), (6, 12, 1, 2, 12),
    (3, 3, 1, 0.1, 1)])
def test_shift_conv_shapes(cin, cout, strides, expansion, mid):
  block = jsnn.ShiftConv(cin, cout, expansion=expansion, strides=strides,
                         rngs=nnx.Rngs(0))
  assert block.shift.shifts.shape == (mid, 2)
  assert (block.project is None) == (strides == 1 and cin == cout)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 9, cin)),
                  jnp.float32)
  y = nnx.jit(lambda m, x: m(x))(block, x)
  out = len(range(0, 9, strides))
  assert y.shape == (2, out, out, cout)
  assert jnp.all(y >= 0) and jnp.any(y > 0)  # ends in a ReLU
  dw = jsnn.DepthwiseConvBlock(cin, cout, expansion=expansion, strides=strides,
                               rngs=nnx.Rngs(0))
  dw.eval()
  assert jax.eval_shape(dw, x).shape == y.shape
  assert dw.spatial.kernel.shape == (3, 3, 1, mid)


def test_shift_conv_identity_residual():
  """With the 1x1 convs zeroed, the block is ReLU(x): the residual is exact."""
  block = jsnn.ShiftConv(4, 4, rngs=nnx.Rngs(0))
  block.conv2.kernel[...] = jnp.zeros_like(block.conv2.kernel[...])
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 5, 4)), jnp.float32)
  block.eval()
  np.testing.assert_allclose(block(x), nnx.relu(x), atol=1e-6)


def test_shift_conv_errors():
  with pytest.raises(ValueError, match="`expansion`"):
    jsnn.ShiftConv(4, 4, expansion=0, rngs=nnx.Rngs(0))


def test_frozen_integer_layer_moves_uint8_frames_exactly():
  """A frozen grouped-shift layer on raw uint8 frames: the static move, in
  uint8, bit for bit (tests/oracles.py, numpy_move)."""
  layer, _ = jsnn.freeze(jsnn.Shift(9, mode="integer", padding="border",
                                    shift_init=jaxshift.initializers.grouped(3),
                                    rngs=nnx.Rngs(0)))
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 5, 7, 9)), jnp.uint8)
  y = layer(x)
  assert y.dtype == jnp.uint8
  np.testing.assert_array_equal(
      y, numpy_move(x, jaxshift.grouped_shifts(9, 3), padding="border"))
