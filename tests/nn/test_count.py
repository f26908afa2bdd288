"""jaxshift.nn._count: parameters and multiply-adds."""

import jax.numpy as jnp
from flax import nnx

import jaxshift.nn as jsnn


def test_mult_adds_counts_convs_and_matmuls():
  conv = nnx.Conv(4, 6, (3, 3), strides=2, feature_group_count=2,
                  rngs=nnx.Rngs(0))
  # 3 images x 4 x 4 outputs x 6 features, each 3 x 3 taps of 2 inputs.
  assert jsnn.mult_adds(conv, jnp.ones((3, 8, 8, 4))) == 3 * 4 * 4 * 6 * 9 * 2
  lin = nnx.Linear(5, 7, rngs=nnx.Rngs(0))
  assert jsnn.mult_adds(lin, jnp.ones((2, 5))) == 2 * 5 * 7
  assert jsnn.mult_adds(jsnn.Shift(4, rngs=nnx.Rngs(0)),
                        jnp.ones((1, 8, 8, 4))) == 0


def test_num_params_counts_shifts_and_weights():
  assert jsnn.num_params(jsnn.Shift(5, ndim=3, rngs=nnx.Rngs(0))) == 15
  assert jsnn.num_params(nnx.Linear(3, 2, rngs=nnx.Rngs(0))) == 8
