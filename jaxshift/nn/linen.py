"""A Flax Linen `Shift` for codebases not yet on NNX."""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxshift._src import dispatch
from jaxshift.nn import _layers


class Shift(nn.Module):
  """Linen twin of `jaxshift.nn.Shift`: a ``"shifts"`` param of ``[C, ndim]``.

  ``C`` is read from the input's channel axis at ``init``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxshift.nn.linen import Shift
    >>> layer = Shift(strides=2)
    >>> params = layer.init(jax.random.key(0), jnp.ones((1, 8, 8, 4)))
    >>> params["params"]["shifts"].shape
    (4, 2)
    >>> layer.apply(params, jnp.ones((1, 8, 8, 4))).shape
    (1, 4, 4, 4)
  """

  ndim: int = 2
  mode: str = "active"
  padding: str = "zeros"
  strides: int | Sequence[int] = 1
  channel_axis: int = -1
  shift_init: Callable[..., jax.Array] | None = None
  param_dtype: jnp.dtype = jnp.float32
  impl: str = "auto"
  max_shift: float | Sequence[float] | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    init = self.shift_init or _layers._default_init(self.mode)
    shifts = self.param("shifts", init, (x.shape[self.channel_axis], self.ndim),
                        self.param_dtype)
    return dispatch.shift(x, shifts, mode=self.mode, padding=self.padding,
                          channel_axis=self.channel_axis, strides=self.strides,
                          impl=self.impl, max_shift=self.max_shift)
