"""Inputs the jaxshift.nn tests share."""

import jax.numpy as jnp
import numpy as np


def smooth_images(seed, n, size, channels):
  """Gaussian-smoothed noise: sub-pixel shifts are identifiable."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, size + 12, size + 12, channels))
  k = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
  k /= k.sum()
  for axis in (1, 2):
    x = np.apply_along_axis(np.convolve, axis, x, k, mode="valid")
  return jnp.asarray(x / x.std(), jnp.float32)
