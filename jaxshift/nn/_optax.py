"""Optax transformations for shift parameters."""

import jax
import jax.numpy as jnp
import optax


def normalize_shift_gradients(eps: float = 1e-12) -> optax.GradientTransformation:
  """Scales each channel's shift gradient to unit length (Caffe ASL's option).

  For every ``[C, D]`` update ``g`` (other ranks are an error), row ``c``
  becomes ``g[c] / max(||g[c]||_2, eps)``: each channel moves at a rate set
  by the learning rate alone, however small its raw gradient. Jeon & Kim
  train active shifts this way (``normalize: true``). Apply it only to the
  shifts, e.g. through `optax.partition` on `jaxshift.nn.ShiftParam`.

  Args:
    eps: floor on the norm, so zero rows stay zero.

  Returns:
    A stateless `optax.GradientTransformation`.

  Example:
    >>> import jax.numpy as jnp
    >>> tx = normalize_shift_gradients()
    >>> g, _ = tx.update(jnp.array([[3., 4.], [0., 0.]]), tx.init(None))
    >>> g.tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
  """

  def update(updates, state, params=None):
    del params

    def rows(g):
      if g.ndim != 2:
        raise ValueError(
            "normalize_shift_gradients expects [C, D] shift gradients; got "
            f"shape {g.shape}. Apply it to the shifts only (e.g. "
            "optax.partition with jaxshift.nn.ShiftParam).")
      norm = jnp.linalg.norm(g.astype(jnp.float32), axis=1, keepdims=True)
      return (g / jnp.maximum(norm, eps).astype(g.dtype)).astype(g.dtype)

    return jax.tree.map(rows, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
