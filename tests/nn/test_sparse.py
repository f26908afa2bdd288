"""jaxshift.nn._sparse: the penalty over a model, statistics, freezing."""

import subprocess
import sys

import jax
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



def test_freeze_turns_an_active_model_into_plain_xla():
  """An active model frozen: its exact shifts as constants, still active,
  the same logits to float rounding, and a graph with no gather and no
  custom call (the form that converts to LiteRT, docs/guide/deploying.md)."""
  model = jsnn.ShiftResNet(8, rngs=nnx.Rngs(2))
  model.eval()
  frozen, moving = jsnn.freeze(model)
  assert all(b.shift.mode == "active" for b in frozen.blocks)
  assert not jax.tree.leaves(nnx.state(frozen, jsnn.ShiftParam))
  for i, b in enumerate(frozen.blocks):
    np.testing.assert_array_equal(b.shift.shifts[...], model.blocks[i].shift.shifts[...])
    assert moving[f"blocks/{i}/spatial"][0] == b.shift.num_features  # none is zero
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)), jnp.float32)
  np.testing.assert_allclose(frozen(x), model(x), rtol=1e-5, atol=1e-5)
  text = nnx.jit(lambda m, x: m(x)).lower(frozen, x).as_text()
  assert "custom_call" not in text and "gather" not in text


def test_frozen_shifts_are_constants_not_parameters():
  model = jsnn.ShiftResNet(8, mode="sparse", rngs=nnx.Rngs(2))
  frozen, _ = jsnn.freeze(model)
  assert not nnx.state(frozen, jsnn.ShiftParam)  # no shift parameter left
  assert jsnn.num_params(frozen) < jsnn.num_params(model)
  assert all(isinstance(b.shift.shifts, jsnn.FrozenShifts)
             for b in frozen.blocks)
  frozen.eval()
  x = jnp.ones((1, 8, 8, 3))
  # Under nnx.jit the shifts are static: plain XLA, no custom call.
  text = jax.jit(lambda x: frozen(x)).lower(x).as_text()
  assert "custom_call" not in text
  np.testing.assert_array_equal(nnx.jit(lambda m, x: m(x))(frozen, x),
                                frozen(x))
  # An integer (grouped) model freezes too.
  grouped, moving = jsnn.freeze(jsnn.ShiftResNet(8, mode="integer",
                                                 rngs=nnx.Rngs(0)))
  assert moving and all(b.shift.mode == "integer" for b in grouped.blocks)


# Run in a fresh interpreter: deserialize argv[1], call it on argv[2], save
# to argv[3]. Without jaxshift (it must not even be imported), or after a
# bare `import jaxshift` (which registers the kernels).
_RUN_EXPORTED = """
import sys
import jax
import numpy as np
{imports}
exported = jax.export.deserialize(open(sys.argv[1], "rb").read())
np.save(sys.argv[3], np.asarray(exported.call(np.load(sys.argv[2]))))
assert {check}, "jaxshift import state"
"""
_WITHOUT_JAXSHIFT = _RUN_EXPORTED.format(
    imports="", check='not any(m.split(".")[0] == "jaxshift" for m in sys.modules)')
_AFTER_IMPORT = _RUN_EXPORTED.format(imports="import jaxshift", check="True")


def _export_round_trip(tmp_path, model, script, disabled_checks=()):
  """Exports `model` (eval mode) on a (2, 8, 8, 3) batch, runs the artifact
  with `script` in a fresh process and checks the logits; returns the
  StableHLO text."""
  model.eval()
  x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
  graphdef, state = nnx.split(model)
  f = jax.jit(lambda x: nnx.merge(graphdef, state)(x))
  exported = jax.export.export(f, disabled_checks=list(disabled_checks))(
      jax.ShapeDtypeStruct(x.shape, x.dtype))
  (tmp_path / "model.bin").write_bytes(exported.serialize())
  np.save(tmp_path / "x.npy", x)
  subprocess.run([sys.executable, "-c", script, str(tmp_path / "model.bin"),
                  str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                 check=True, cwd=tmp_path, timeout=300)
  np.testing.assert_allclose(np.load(tmp_path / "y.npy"), f(x), rtol=1e-6,
                             atol=1e-6)
  return exported.mlir_module()


@pytest.mark.parametrize("kind", ["frozen", "learned impl=xla"])
def test_export_runs_where_jaxshift_is_not_imported(tmp_path, kind):
  """jax.export round trip: serialized here, deserialized and run in a fresh
  process that never imports jaxshift; the same logits."""
  if kind == "frozen":
    model, _ = jsnn.freeze(jsnn.ShiftResNet(8, mode="sparse",
                                            rngs=nnx.Rngs(3)))
  else:  # learned shifts, on the jnp path: no custom call either
    model = jsnn.ShiftResNet(8, mode="active", rngs=nnx.Rngs(3))
    for block in model.blocks:
      block.shift.impl = "xla"
  text = _export_round_trip(tmp_path, model, _WITHOUT_JAXSHIFT)
  assert "custom_call" not in text


@pytest.mark.skipif(not jaxshift.kernels_available("cpu"),
                    reason="needs the CPU kernel")
def test_export_with_the_kernels_runs_after_import_jaxshift(tmp_path):
  """Learned shifts on the kernels: the artifact holds jaxshift's custom
  call, and runs in a fresh process that only imports jaxshift (it fails
  there with JAXSHIFT_DISABLE_KERNELS=1: checked by hand)."""
  checks = [jax.export.DisabledSafetyCheck.custom_call(f"jaxshift_{d}_cpu")
            for d in ("forward", "backward")]
  text = _export_round_trip(
      tmp_path, jsnn.ShiftResNet(8, mode="active", rngs=nnx.Rngs(4)),
      _AFTER_IMPORT, checks)
  assert "jaxshift_forward_cpu" in text
