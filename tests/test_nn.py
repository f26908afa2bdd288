"""jaxshift.nn: layers, models, sparse training, the optax transformation."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxshift
import jaxshift.nn as jsnn
from jaxshift.nn import linen as jsnn_linen
from conftest import scipy_shift


def smooth_images(seed, n, size, channels):
  """Gaussian-smoothed noise: sub-pixel shifts are identifiable."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, size + 12, size + 12, channels))
  k = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
  k /= k.sum()
  for axis in (1, 2):
    x = np.apply_along_axis(np.convolve, axis, x, k, mode="valid")
  return jnp.asarray(x / x.std(), jnp.float32)


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
    (dict(impl="cuda"), "impl")])
def test_shift_layer_errors(kwargs, match):
  kwargs = {"num_features": 4, **kwargs}
  with pytest.raises(ValueError, match=match):
    jsnn.Shift(**kwargs, rngs=nnx.Rngs(0))


def test_shift_layer_wrong_input_channels():
  with pytest.raises(ValueError, match="shifts"):
    jsnn.Shift(4, rngs=nnx.Rngs(0))(jnp.ones((1, 5, 5, 3)))


def test_linen_shift_equals_nnx_shift():
  x = smooth_images(2, 2, 9, 4)
  layer = jsnn_linen.Shift(mode="sparse", padding="reflect", strides=2)
  params = layer.init(jax.random.key(0), x)
  s = params["params"]["shifts"]
  nnx_layer = jsnn.Shift(4, mode="sparse", padding="reflect", strides=2,
                         shift_init=lambda *_: s, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(layer.apply(params, x), nnx_layer(x), atol=1e-6)
  g = jax.grad(lambda p: jnp.sum(layer.apply(p, x) ** 2))(params)
  assert g["params"]["shifts"].shape == (4, 2)


# ---------------------------------------------------------------- DepthwiseShift
@pytest.mark.parametrize("size,k,stride,padding,method", [
    c for c in itertools.product((7, 8), (1, 3, 5), (1, 2, 3), ("SAME", "VALID"),
                                 ("native", "avg_pool"))])
def test_depthwise_shift_shape_matches_conv(size, k, stride, padding, method):
  c = 9
  x = jnp.ones((2, size, size + 1, c))
  conv = nnx.Conv(c, c, (k, k), stride, padding=padding, feature_group_count=c,
                  rngs=nnx.Rngs(0))
  layer = jsnn.DepthwiseShift(c, k, stride, padding=padding,
                              stride_method=method, rngs=nnx.Rngs(0))
  assert layer(x).shape == conv(x).shape


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


# ---------------------------------------------------------------- blocks, models
@pytest.mark.parametrize("cin,cout,strides,expansion", [
    (8, 8, 1, 1), (8, 16, 2, 3), (8, 8, 2, 0.5), (6, 12, 1, 2)])
def test_shift_conv_shapes(cin, cout, strides, expansion):
  block = jsnn.ShiftConv(cin, cout, expansion=expansion, strides=strides,
                         rngs=nnx.Rngs(0))
  mid = max(1, round(cin * expansion))
  assert block.shift.shifts.shape == (mid, 2)
  assert (block.project is None) == (strides == 1 and cin == cout)
  y = block(jnp.ones((2, 9, 9, cin)))
  assert y.shape == (2, -(-9 // strides), -(-9 // strides), cout)
  assert jnp.all(y >= 0)  # ends in a ReLU
  dw = jsnn.DepthwiseConvBlock(cin, cout, expansion=expansion, strides=strides,
                               rngs=nnx.Rngs(0))
  assert dw(jnp.ones((2, 9, 9, cin))).shape == y.shape


def test_shift_conv_identity_residual():
  """With the 1x1 convs zeroed, the block is ReLU(x): the residual is exact."""
  block = jsnn.ShiftConv(4, 4, rngs=nnx.Rngs(0))
  block.conv2.kernel[...] = jnp.zeros_like(block.conv2.kernel[...])
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 5, 4)), jnp.float32)
  block.eval()
  np.testing.assert_allclose(block(x), nnx.relu(x), atol=1e-6)


@pytest.mark.parametrize("depth", [8, 20])
def test_resnets(depth):
  shift = jsnn.ShiftResNet(depth, expansion=3, mode="sparse", rngs=nnx.Rngs(0))
  dw = jsnn.DepthwiseResNet(depth, expansion=3, rngs=nnx.Rngs(0))
  x = jnp.ones((2, 32, 32, 3))
  assert shift(x).shape == dw(x).shape == (2, 10)
  n = (depth - 2) // 6
  assert len(jsnn.shift_statistics(shift)) == 3 * n
  # The only difference: 9 weights per middle channel against 2 shifts.
  mids = [b.shift.num_features for b in shift.blocks]
  assert jsnn.num_params(dw) - jsnn.num_params(shift) == 7 * sum(mids)
  hw = [32 * 32 if i < n else (16 * 16 if i < 2 * n else 8 * 8)
        for i in range(3 * n)]
  assert (jsnn.mult_adds(dw, x[:1]) - jsnn.mult_adds(shift, x[:1]) ==
          sum(9 * m * a for m, a in zip(mids, hw)))


def test_resnet_depth_error():
  with pytest.raises(ValueError, match="depth"):
    jsnn.ShiftResNet(21, rngs=nnx.Rngs(0))


def test_mult_adds_counts_convs_and_matmuls():
  conv = nnx.Conv(4, 6, (3, 3), strides=2, feature_group_count=2,
                  rngs=nnx.Rngs(0))
  assert jsnn.mult_adds(conv, jnp.ones((3, 8, 8, 4))) == 3 * 4 * 4 * 6 * 9 * 2
  lin = nnx.Linear(5, 7, rngs=nnx.Rngs(0))
  assert jsnn.mult_adds(lin, jnp.ones((2, 5))) == 2 * 5 * 7
  assert jsnn.mult_adds(jsnn.Shift(4, rngs=nnx.Rngs(0)),
                        jnp.ones((1, 8, 8, 4))) == 0


# ---------------------------------------------------------------- training
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


def test_sparse_training_with_l1_zeroes_most_shifts():
  """Only 2 of 16 channels really move; L1 sends the rest to zero."""
  true = np.zeros((16, 2), np.float32)
  true[3], true[11] = (1.0, -2.0), (0.0, 1.0)
  x = smooth_images(6, 8, 16, 16)
  target = jaxshift.shift(x, true, mode="integer")
  layer = jsnn.Shift(16, mode="sparse",
                     shift_init=jaxshift.initializers.sign_split(2.0),
                     rngs=nnx.Rngs(1))
  before = jsnn.shift_statistics(layer)[""].zero_fraction
  opt = nnx.Optimizer(layer, optax.adam(0.02), wrt=nnx.Param)

  @nnx.jit
  def step(layer, opt):
    loss = lambda m: (jnp.mean((m(x) - target) ** 2) +
                      jsnn.sparsity_loss(m, 1e-3))
    opt.update(layer, nnx.grad(loss)(layer))

  for _ in range(400):
    step(layer, opt)
  stats = jsnn.shift_statistics(layer)[""]
  assert before < 0.5 and stats.zero_fraction > 0.75, (before, stats)
  frozen, moving = jsnn.freeze(layer)
  assert moving[""][0] == stats.moving_channels


def test_sparsity_loss_over_a_model():
  model = jsnn.ShiftResNet(8, mode="sparse", rngs=nnx.Rngs(0))
  shifts = [b.shift.shifts[...] for b in model.blocks]
  want = 0.01 * sum(float(jnp.abs(s).sum()) for s in shifts)
  np.testing.assert_allclose(jsnn.sparsity_loss(model, 0.01), want, rtol=1e-6)
  grads = nnx.grad(lambda m: jsnn.sparsity_loss(m, 0.01))(model)
  g = grads["blocks"][0]["spatial"]["shifts"][...]
  np.testing.assert_allclose(g, 0.01 * np.sign(shifts[0]))
  assert float(jsnn.sparsity_loss(jsnn.DepthwiseResNet(8, rngs=nnx.Rngs(0)))) == 0


def test_shift_statistics_histogram():
  s = jnp.array([[0.1, -0.6], [1.4, 0.0], [-2.2, 0.49]])
  layer = jsnn.Shift(3, mode="sparse", shift_init=lambda *_: s, rngs=nnx.Rngs(0))
  st = jsnn.shift_statistics(layer)[""]
  np.testing.assert_array_equal(st.histogram, [3, 1, 1, 0, 1])
  np.testing.assert_allclose(st.bin_edges, [0, 0.5, 1, 1.5, 2, 2.5])
  assert st.moving_channels == 3 and st.zero_fraction == pytest.approx(0.5)
  active = jsnn.shift_statistics(jsnn.Shift(3, shift_init=lambda *_: s,
                                            rngs=nnx.Rngs(0)))[""]
  assert active.zero_fraction == pytest.approx(1 / 6)


def test_freeze_gives_the_sparse_outputs():
  model = jsnn.ShiftResNet(8, mode="sparse", rngs=nnx.Rngs(2))
  model.eval()
  frozen, moving = jsnn.freeze(model)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)),
                  jnp.float32)
  np.testing.assert_array_equal(frozen(x), model(x))
  assert all(b.shift.mode == "integer" for b in frozen.blocks)
  assert all(b.shift.mode == "sparse" for b in model.blocks)  # untouched
  for i, b in enumerate(frozen.blocks):
    s = b.shift.shifts[...]
    np.testing.assert_array_equal(s, np.round(model.blocks[i].shift.shifts[...]))
    assert moving[f"blocks/{i}/spatial"] == (int(np.any(s != 0, 1).sum()),
                                             s.shape[0])
  active, moved = jsnn.freeze(jsnn.ShiftResNet(8, rngs=nnx.Rngs(2)))
  assert moved == {} and active.blocks[0].shift.mode == "active"


def test_normalize_shift_gradients():
  tx = jsnn.normalize_shift_gradients()
  g = jnp.array([[3.0, -4.0], [0.0, 0.0], [1e-3, 0.0]])
  out, _ = tx.update({"a": g}, tx.init({"a": g}))
  np.testing.assert_allclose(out["a"], [[0.6, -0.8], [0, 0], [1, 0]], rtol=1e-6)
  with pytest.raises(ValueError, match=r"\[C, D\]"):
    tx.update({"k": jnp.ones((3, 3, 2))}, tx.init(None))
