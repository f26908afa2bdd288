"""GPU-only checks of the CUDA kernels beyond the shared equivalence suite
(tests/test_ffi.py runs that suite on whatever the default backend is)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxshift

requires_cuda_kernels = pytest.mark.skipif(
    not (jax.default_backend() == "gpu" and jaxshift.kernels_available("cuda")),
    reason="needs a GPU and jaxshift's CUDA kernels")


@requires_cuda_kernels
@pytest.mark.parametrize("channels_last", [True, False])
def test_64bit_indexing_past_2_31_elements(channels_last):
  # 2 samples of 2**30 + 2**20 bf16 elements: the second lies past 2**31.
  c, h, w = 64, 129, 130080
  shape = (2, h, w, c) if channels_last else (2, c, h, w)
  cax = -1 if channels_last else 1
  key = jax.random.key(0)
  x = jax.random.normal(key, shape, jnp.bfloat16)
  assert x.size > 2**31
  s = jax.random.uniform(jax.random.key(1), (c, 2), jnp.float32, -3, 3)
  f = jax.jit(lambda x: jaxshift.shift(x, s, channel_axis=cax, impl="ffi"))
  y_last = f(x)[1]
  want = f(x[1:])[0]  # the same sample on its own: small indices
  np.testing.assert_array_equal(np.asarray(y_last.astype(jnp.float32)),
                                np.asarray(want.astype(jnp.float32)))
  g = jax.jit(jax.grad(lambda x, s: jnp.sum(jaxshift.shift(
      x, s, channel_axis=cax, impl="ffi").astype(jnp.float32)), (0, 1)))
  dx, ds = g(x, s)
  dx1, ds1 = g(x[1:], s)
  np.testing.assert_array_equal(np.asarray(dx[1].astype(jnp.float32)),
                                np.asarray(dx1[0].astype(jnp.float32)))
  dx0, ds0 = g(x[:1], s)
  np.testing.assert_allclose(ds, ds0 + ds1, rtol=1e-4, atol=1e-2)
