"""`jax.export` with a symbolic batch, on every path (issue 25).

An artifact exported once with a symbolic batch axis (``b``), serialized and
deserialized, runs at several batch sizes with the numbers of the unexported
function: the static path, the jnp path, the kernel (its custom calls
allowed), the gradient, the temporal functions (a folded ``N*T`` batch
declared as a multiple of the segment count) and the models of
`jaxshift.nn`, frozen (every mode) and not.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import export

import jaxshift
import jaxshift.nn as jsnn

KERNEL_CALLS = [export.DisabledSafetyCheck.custom_call(f"jaxshift_{which}_cpu")
                for which in ("forward", "backward")]
S = np.random.default_rng(0).uniform(-1.5, 1.5, (4, 2)).astype(np.float32)


def _round_trip(f, spec, batches, axis=0):
  """Exports `f` for `spec` (a symbolic batch), round-trips the artifact
  through bytes and checks it against `f` at each batch size."""
  exported = export.export(jax.jit(f), disabled_checks=KERNEL_CALLS)(spec)
  loaded = export.deserialize(exported.serialize())
  assert any(not isinstance(d, int) for d in loaded.in_avals[0].shape)
  rng = np.random.default_rng(1)
  for n in batches:
    shape = list(spec.shape)
    shape[axis] = n
    x = jnp.asarray(rng.normal(size=shape) * 10, spec.dtype)
    np.testing.assert_allclose(loaded.call(x), f(x), rtol=1e-5, atol=1e-5)


def _spec(shape, dtype=jnp.float32, batch="b"):
  sym = export.symbolic_shape(batch)[0]
  return jax.ShapeDtypeStruct((sym,) + tuple(shape), dtype)


@pytest.mark.parametrize("path", ["static", "static active", "xla", "ffi", "uint8"])
def test_shift_exports_with_a_symbolic_batch(path):
  if path == "ffi" and not jaxshift.kernels_available("cpu"):
    pytest.skip("needs the CPU kernel")
  fs = {
      "static": lambda x: jaxshift.shift(x, S, mode="integer", padding="reflect"),
      "static active": lambda x: jaxshift.shift(x, S, padding="border"),
      "xla": lambda x: jaxshift.shift(x, jnp.asarray(S), impl="xla"),
      "ffi": lambda x: jaxshift.shift(x, jnp.asarray(S), impl="ffi", strides=2),
      "uint8": lambda x: jaxshift.shift(x, jnp.asarray(S), mode="integer"),
  }
  dtype = jnp.uint8 if path == "uint8" else jnp.float32
  _round_trip(fs[path], _spec((6, 5, 4), dtype), (1, 3))


def test_the_gradient_exports_with_a_symbolic_batch():
  f = lambda x: jax.grad(lambda x, s: jnp.sum(jnp.sin(jaxshift.shift(x, s))),
                         (0, 1))(x, jnp.asarray(S))
  _round_trip(lambda x: f(x)[0], _spec((6, 5, 4)), (2, 3))
  _round_trip(lambda x: f(x)[1], _spec((6, 5, 4)), (2, 3))


def test_temporal_functions_export_with_a_symbolic_batch():
  _round_trip(lambda x: jaxshift.temporal_shift(x), _spec((4, 3, 3, 16)), (1, 3))
  # Folded (N*T, C, H, W): the batch is declared a multiple of the segments.
  folded = lambda x: jaxshift.temporal_shift(x, num_segments=4, channel_axis=1)
  _round_trip(folded, _spec((16, 3, 3), batch="4*b"), (4, 12))
  with pytest.raises(ValueError, match=r"symbolic_shape\('4\*b, \.\.\.'\)"):
    export.export(jax.jit(folded))(_spec((16, 3, 3)))
  layer = jsnn.TemporalShift()
  _round_trip(lambda x: layer(x), _spec((4, 3, 3, 16)), (2,))


@pytest.mark.parametrize("mode", jaxshift.MODES)
def test_models_export_with_a_symbolic_batch_frozen_or_not(mode):
  """A frozen ShiftResNet of every mode, which has no custom call and no
  gather left, and (one mode: the same path for all) the model itself on
  the kernel."""
  model = jsnn.ShiftResNet(8, mode=mode, rngs=nnx.Rngs(0))
  model.eval()
  frozen, _ = jsnn.freeze(model)
  for m in ((model, frozen) if mode == "sparse" else (frozen,)):
    graphdef, state = nnx.split(m)
    run = lambda x, graphdef=graphdef, state=state: nnx.merge(graphdef, state)(x)
    _round_trip(run, _spec((16, 16, 3)), (1, 4))
  graphdef, state = nnx.split(frozen)
  text = export.export(jax.jit(lambda x: nnx.merge(graphdef, state)(x)))(
      _spec((16, 16, 3))).mlir_module()
  # (export's own shape assertions are custom calls too)
  assert "jaxshift_" not in text and "gather" not in text
