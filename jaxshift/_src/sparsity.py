"""The Sparse Shift Layer's sparsity penalty (Chen et al. 2019)."""

import jax
import jax.numpy as jnp


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
