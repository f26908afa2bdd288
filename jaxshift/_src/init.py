"""Shift initialisers, with the ``(key, shape, dtype)`` signature."""

import jax
import jax.numpy as jnp

from jaxshift._src.tables import grouped_shifts


def uniform(scale: float = 1.0):
  """Initialiser: shifts uniform in ``[-scale, scale]``.

  >>> import jax
  >>> uniform(0.5)(jax.random.key(0), (4, 2)).shape
  (4, 2)
  """
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


def sign_split(scale: float = 1.0):
  """Initialiser: magnitude uniform in ``[0, scale]``, sign chosen at random.

  The second "thumb rule" of torchshifts (``init_thumb_rule=2``): no shift
  starts near a symmetric distribution's dense centre.
  """
  def init(key, shape, dtype=jnp.float32):
    k1, k2 = jax.random.split(key)
    mag = jax.random.uniform(k1, shape, dtype, 0, scale)
    return jnp.where(jax.random.bernoulli(k2, 0.5, shape), mag, -mag)
  return init


def zeros(key, shape, dtype=jnp.float32):
  """Initialiser: all shifts zero (the identity)."""
  del key
  return jnp.zeros(shape, dtype)


def grouped(kernel_size: int = 3, dilation: int = 1):
  """Initialiser: the `grouped_shifts` assignment for a ``[C, D]`` shape."""
  def init(key, shape, dtype=jnp.float32):
    del key
    if len(shape) != 2:
      raise ValueError(f"`shape` must be (C, D); got {shape!r}.")
    return jnp.asarray(grouped_shifts(shape[0], kernel_size, dilation,
                                      ndim=shape[1]), dtype)
  return init
