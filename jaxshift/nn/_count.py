"""Counting a model's parameters and multiply-adds."""

import math

import jax
import numpy as np
from flax import nnx
from jax.extend import core as jex_core


def _sub_jaxprs(eqn):
  for value in eqn.params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(item, jex_core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jex_core.Jaxpr):
        yield item


def _count(jaxpr) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    if "jaxshift.shift" in str(eqn.source_info.name_stack):
      continue  # a shift: no multiplications (as the papers count it)
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      rhs = eqn.invars[1].aval.shape
      out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
      total += math.prod(eqn.outvars[0].aval.shape) * math.prod(rhs) // out_features
    elif name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += (math.prod(eqn.outvars[0].aval.shape) *
                math.prod(lhs[d] for d in contract))
    else:
      subs = list(_sub_jaxprs(eqn))
      if name == "cond":  # branches are alternatives: count the largest
        total += max((_count(j) for j in subs), default=0)
      else:
        total += sum(_count(j) for j in subs)
  return total


def mult_adds(model: nnx.Module, x: jax.Array) -> int:
  """Multiply-adds of one inference call ``model(x)`` (convolutions, matmuls).

  Counts every convolution (``out elements x kernel footprint x in features
  per group``) and matrix product; shifts, like the papers, count as zero,
  and so do normalisation and activations. Traced in eval mode on a copy, so
  `model`'s state is not touched; nothing is computed, so an abstract model
  (from `nnx.eval_shape`) and an abstract `x` (`jax.ShapeDtypeStruct`) work.

  Args:
    model: an NNX module.
    x: an example input (its batch size multiplies the count).

  Returns:
    The count, an int.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> conv = nnx.Conv(4, 8, (3, 3), use_bias=False, rngs=nnx.Rngs(0))
    >>> mult_adds(conv, jnp.ones((1, 5, 5, 4)))  # 5*5*8 outputs x 3*3*4
    7200
  """
  model = nnx.clone(model)
  model.eval()
  graphdef, state = nnx.split(model)
  abstract = lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype)
  jaxpr = jax.make_jaxpr(lambda s, v: nnx.merge(graphdef, s)(v))(
      jax.tree.map(abstract, state),
      jax.ShapeDtypeStruct(np.shape(x), getattr(x, "dtype", np.float32)))
  return _count(jaxpr.jaxpr)


def num_params(model: nnx.Module) -> int:
  """Number of trainable scalars (`nnx.Param` leaves, shifts included).

  Example:
    >>> from flax import nnx
    >>> num_params(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
    8
  """
  return sum(int(np.size(p)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
