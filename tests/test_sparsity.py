"""The sparsity penalty (`jaxshift._src.sparsity`)."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxshift


def test_sparsity_loss():
  s = jnp.array([[1.0, -2.0], [0.0, 0.5]])
  np.testing.assert_allclose(jaxshift.sparsity_loss(s, weight=0.1), 0.35)
  tree = {"a": s, "b": [s.astype(jnp.bfloat16)]}
  np.testing.assert_allclose(jaxshift.sparsity_loss(tree), 7.0)
  g = jax.grad(lambda s: jaxshift.sparsity_loss(s, 2.0))(s)
  np.testing.assert_array_equal(g, 2.0 * jnp.sign(s))
