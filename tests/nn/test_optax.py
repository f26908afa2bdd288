"""jaxshift.nn._optax: the per-channel shift-gradient normalisation."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxshift.nn as jsnn


def test_normalize_shift_gradients():
  tx = jsnn.normalize_shift_gradients()
  g = jnp.array([[3.0, -4.0], [0.0, 0.0], [1e-3, 0.0]])
  out, _ = tx.update({"a": g}, tx.init({"a": g}))
  np.testing.assert_allclose(out["a"], [[0.6, -0.8], [0, 0], [1, 0]], rtol=1e-6)
  with pytest.raises(ValueError, match=r"\[C, D\]"):
    tx.update({"k": jnp.ones((3, 3, 2))}, tx.init(None))
