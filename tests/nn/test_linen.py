"""jaxshift.nn.linen: the Linen Shift equals the NNX one."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from helpers_nn import smooth_images

import jaxshift.nn as jsnn
from jaxshift.nn import linen as jsnn_linen


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
