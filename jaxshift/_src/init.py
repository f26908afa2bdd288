"""Shift assignments, initialisers and the sparsity penalty."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxshift._src import shapes


def grouped_shifts(channels: int, kernel_size: int = 3, dilation: int = 1, *,
                   ndim: int = 2) -> np.ndarray:
  """The fixed grouped-shift assignment of Wu et al. (2017).

  The channels are split into ``kernel_size**ndim`` contiguous groups of
  ``channels // kernel_size**ndim`` channels, one group per offset of the
  ``k x k`` (or ``k``, ``k x k x k``) neighbourhood in raster order, scaled by
  `dilation`. The ``channels % kernel_size**ndim`` channels left over keep a
  zero shift (the centre), as in the paper.

  Args:
    channels: ``C``, at least ``kernel_size**ndim``.
    kernel_size: odd neighbourhood size ``k``.
    dilation: spacing of the neighbourhood.
    ndim: number of spatial axes ``D``.

  Returns:
    ``[C, D]`` float32 numpy array of integer-valued shifts, usable with any
    `mode` (typically ``mode="integer"``).

  >>> grouped_shifts(9, 3).tolist()[:4]
  [[-1.0, -1.0], [-1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]]
  """
  channels = shapes.positive_int("channels", channels)
  k = shapes.positive_int("kernel_size", kernel_size, odd=True)
  dilation = shapes.positive_int("dilation", dilation)
  ndim = shapes.spatial_ndim("ndim", ndim)
  groups = k**ndim
  if channels < groups:
    raise ValueError(
        f"`channels` (={channels}) must be at least kernel_size**ndim "
        f"(={groups}) so that every offset of the neighbourhood gets a "
        "channel; use a smaller `kernel_size` or learned (active) shifts.")
  size = channels // groups
  offsets = np.array(list(itertools.product(range(k), repeat=ndim))) - k // 2
  out = np.zeros((channels, ndim), np.float32)
  out[:size * groups] = np.repeat(offsets, size, axis=0) * dilation
  return out


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


def sparsity_loss(shifts, weight: float = 1.0) -> jax.Array:
  """The Sparse Shift Layer's L1 penalty, ``weight * sum(|shifts|)``.

  Args:
    shifts: a ``[C, D]`` array, or any pytree of them (summed over leaves).
    weight: the penalty ``lambda``; Chen et al. and torchshifts use about
      ``5e-4``.

  Returns:
    A float32 (or wider) scalar. Its gradient is ``weight * sign(shifts)``,
    zero at a zero shift, so zero shifts stay put.

  >>> import jax.numpy as jnp
  >>> round(float(sparsity_loss(jnp.array([[1., -2.], [0., 0.5]]), weight=0.1)), 6)
  0.35
  """
  def l1(leaf):
    leaf = jnp.asarray(leaf)
    leaf = leaf.astype(jnp.promote_types(leaf.dtype, jnp.float32))
    # |s| with the minimum-norm subgradient sign(s): zero at s == 0, so a
    # shift that has reached zero is not pushed off it (jnp.abs' derivative
    # at 0 is 1).
    return jnp.sum(leaf * jax.lax.stop_gradient(jnp.sign(leaf)))
  total = sum(l1(leaf) for leaf in jax.tree.leaves(shifts))
  return weight * jnp.asarray(total)
