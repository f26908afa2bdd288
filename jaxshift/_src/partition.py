"""Partitioning the kernel calls: split along batch and channels, never gather.

XLA treats a custom call as opaque and would replicate it, gathering every
input. `partitioned` wraps a kernel call in `custom_partitioning` with a
Shardy rule that lets the batch ``n`` and channels ``c`` stay split (spatial
axes and the shift tables stay whole), so each device runs the kernel on its
own shard. `result_type` gives the kernel's results the shardings the kernel
produces, so that under an explicit mesh or inside `shard_map` the types
agree with what partitioning does.
"""

import jax
from jax.experimental.custom_partitioning import custom_partitioning

from jaxshift._src import layout

P = jax.sharding.PartitionSpec


def rules(call: layout.ShiftCall, grouped: bool):
  """Shardy rules ``(forward_rule, backward_rule, need_replication)``.

  On the canonical rank-5 data: batch ``n`` and channels ``c`` split freely;
  spatial axes (input ``a b w``, output ``i j l``) and the tables' ``k``
  stay whole. With per-group tables (vmap over the shifts, `grouped`) a
  sample's table depends on its global index, so the batch stays whole too.
  """
  x, y = ("n a b w c", "n i j l c") if call.channels_last else (
      "n c a b w", "n c i j l")
  forward_rule = f"{x}, g c k, g c k -> {y}"
  backward_rule = f"{x}, {y}, g c k, g c k, g c k, g c k -> {x}, n c k"
  replicate = tuple("abwijlkg") + (("n",) if grouped else ())
  return forward_rule, backward_rule, replicate


def specs(call: layout.ShiftCall, x_spec, grouped: bool):
  """``(data, per-sample, table)`` specs that keep x's batch/channel split."""
  cax = call.channel_axis5
  x_spec = tuple(x_spec) + (None,) * (5 - len(x_spec))
  n, c = (None if grouped else x_spec[0]), x_spec[cax]
  data = [None] * 5
  data[0], data[cax] = n, c
  return P(*data), P(n, c, None), P(None, c, None)


def result_type(call: layout.ShiftCall, x, *, shape=None, dtype=None,
                per_sample=False):
  """A kernel result's type: `x`'s, with the shardings the kernel produces.

  ``jax.typeof(x)`` keeps x's manual axes inside shard_map and its sharding
  under an explicit mesh; batch and channel shardings carry over, spatial
  axes come out whole (the kernel reads across them). ``per_sample``: the
  ``(N, C, 3)`` per-sample shift gradient.
  """
  t = jax.typeof(x)
  if per_sample:
    shape = (x.shape[0], x.shape[call.channel_axis5], 3)
  update = dict(shape=shape or x.shape, dtype=dtype or x.dtype)
  x_spec = getattr(t.sharding, "spec", None)
  if x_spec is not None:
    data, sample, _ = specs(call, x_spec, grouped=False)
    update["sharding"] = t.sharding.update(spec=sample if per_sample else data)
  return t.update(**update)


def whole_spatial(call: layout.ShiftCall, v):
  """`v` (``x`` or an output cotangent of `call`), gathered whole along its
  spatial axes where an explicit mesh splits them.

  The jnp path reads a spatial axis at per-channel offsets, which needs the
  whole axis on each device: under an explicit mesh XLA would not choose
  that itself (a gather along a split axis has no unambiguous sharding), so
  the axes are resharded first, at the cost of one all-gather. Batch and
  channel splits are kept (everything the jnp path derives from `v` keeps
  them); elsewhere (Auto axes, shard_map) a no-op.
  """
  sharding = getattr(jax.typeof(v), "sharding", None)
  spec = getattr(sharding, "spec", None)
  if not spec or all(a >= len(spec) or spec[a] is None for a in call.spatial_axes):
    return v
  whole = list(spec)
  for a in call.spatial_axes:
    if a < len(whole):
      whole[a] = None
  return jax.sharding.reshard(v, sharding.update(spec=P(*whole)))


def _wrap(fn, call, rule: str, replicate, n_data: int, grouped: bool):
  """`fn` under `custom_partitioning` with Shardy `rule`."""
  wrapped = custom_partitioning(fn)

  def partition(mesh, arg_shapes, result_shape):
    args = tuple(a.sharding for a in arg_shapes)
    results = jax.tree.map(lambda r: r.sharding, result_shape)
    if isinstance(args[0], jax.sharding.NamedSharding):
      data, sample, table = (jax.sharding.NamedSharding(mesh, p) for p in
                             specs(call, args[0].spec, grouped))
      args = (data,) * n_data + (table,) * (len(args) - n_data)
      results = (data,) if n_data == 1 else (data, sample)
    return mesh, fn, results, args

  factors = rule.replace(",", " ").replace("->", " ").split()
  order = {f: factors.index(f) for f in replicate}  # Shardy wants rule order
  wrapped.def_partition(partition=partition, sharding_rule=rule,
                        need_replication_factors=tuple(sorted(replicate,
                                                              key=order.get)))
  return wrapped


def partitioned(fn, call: layout.ShiftCall, *, backward: bool):
  """`fn` (a forward or backward kernel call) under custom partitioning.

  `fn` takes the canonical data (one array forward, ``x`` and ``g``
  backward) and then ``(G, C, 3)`` tables; ``G > 1`` (vmap over the shifts)
  selects the rule that keeps the batch whole.
  """
  n_data = 2 if backward else 1
  variants = {}
  for grouped in (False, True):
    forward_rule, backward_rule, replicate = rules(call, grouped)
    variants[grouped] = _wrap(fn, call,
                              backward_rule if backward else forward_rule,
                              replicate, n_data, grouped)

  def dispatch(*args):
    return variants[args[-1].shape[0] > 1](*args)  # tables: (G, C, 3)

  return dispatch
