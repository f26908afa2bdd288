"""jaxshift.nn._sparse: the penalty over a model, statistics, freezing."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers_nn import smooth_images

import jaxshift
import jaxshift.nn as jsnn


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
                      jsnn.model_sparsity_loss(m, 1e-3))
    opt.update(layer, nnx.grad(loss)(layer))

  for _ in range(400):
    step(layer, opt)
  stats = jsnn.shift_statistics(layer)[""]
  assert before < 0.5 and stats.zero_fraction > 0.75, (before, stats)
  frozen, moving = jsnn.freeze(layer)
  assert moving[""][0] == stats.moving_channels


def test_model_sparsity_loss():
  model = jsnn.ShiftResNet(8, mode="sparse", rngs=nnx.Rngs(0))
  shifts = [b.shift.shifts[...] for b in model.blocks]
  want = 0.01 * sum(float(jnp.abs(s).sum()) for s in shifts)
  np.testing.assert_allclose(jsnn.model_sparsity_loss(model, 0.01), want,
                             rtol=1e-6)
  grads = nnx.grad(lambda m: jsnn.model_sparsity_loss(m, 0.01))(model)
  g = grads["blocks"][0]["spatial"]["shifts"][...]
  np.testing.assert_allclose(g, 0.01 * np.sign(shifts[0]))
  assert float(jsnn.model_sparsity_loss(
      jsnn.DepthwiseResNet(8, rngs=nnx.Rngs(0)))) == 0


def test_old_name_of_the_model_penalty_warns_and_works():
  layer = jsnn.Shift(2, shift_init=lambda k, s, d: jnp.full(s, 0.5, d),
                     rngs=nnx.Rngs(0))
  with pytest.warns(DeprecationWarning, match="jaxshift.nn.model_sparsity_loss"):
    old = jsnn.sparsity_loss
  assert float(old(layer, 2.0)) == float(jsnn.model_sparsity_loss(layer, 2.0))
  assert "sparsity_loss" not in jsnn.__all__
  with pytest.raises(AttributeError, match="no_such_name"):
    jsnn.no_such_name  # noqa: B018


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
