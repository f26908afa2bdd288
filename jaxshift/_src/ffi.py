"""The compiled kernels: loading, registration, and the calls into them.

The only module that touches ``jax.ffi``. Python owns shapes: every call is
reshaped into the canonical rank-5 layout the C++ core expects
(``(N, A, B, W, C)`` channels-last or ``(N, C, A, B, W)`` channels-first,
missing spatial axes of length 1 with a zero shift), and the per-channel
shift tables are computed by `jaxshift._src.spec`, once, for every backend.

vmap never loops: `jax.custom_batching.custom_vmap` folds vmapped axes into
the batch axis (and the per-group shift tables), so a vmapped shift is one
kernel launch.
"""

import ctypes
import functools
import importlib.resources
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.custom_partitioning import custom_partitioning

from jaxshift._src import shapes
from jaxshift._src import spec

_PADDING_CODE = {p: i for i, p in enumerate(shapes.PADDINGS)}
_PLATFORM_NAME = {"cpu": "cpu", "cuda": "CUDA"}
_loaded: dict[str, bool] = {}


def _library_path(platform: str):
  name = f"libjaxshift_{platform}.so"
  try:
    path = importlib.resources.files("jaxshift") / name
  except ModuleNotFoundError:  # pragma: no cover
    return None
  return path if path.is_file() else None


def _load(platform: str) -> bool:
  if os.environ.get("JAXSHIFT_DISABLE_KERNELS", "") not in ("", "0"):
    return False
  path = _library_path(platform)
  if path is None:
    return False
  lib = ctypes.CDLL(str(path))
  for which in ("forward", "backward"):
    getter = getattr(lib, f"jaxshift_{platform}_{which}_ptr")
    getter.restype = ctypes.c_void_p
    jax.ffi.register_ffi_target(f"jaxshift_{which}_{platform}",
                                jax.ffi.pycapsule(getter()),
                                platform=_PLATFORM_NAME[platform])
  return True


def kernels_available(platform: str) -> bool:
  """Whether jaxshift's compiled kernels for `platform` are built and loaded.

  Args:
    platform: ``"cpu"`` or ``"cuda"``.

  Returns:
    True if ``impl="ffi"`` (and ``impl="auto"``) can use that platform's
    kernel. Setting the environment variable ``JAXSHIFT_DISABLE_KERNELS=1``
    before import makes this False everywhere (pure-jnp path only).
  """
  if platform not in _PLATFORM_NAME:
    raise ValueError(f"`platform` must be 'cpu' or 'cuda'; got {platform!r}.")
  if platform not in _loaded:
    _loaded[platform] = _load(platform)
  return _loaded[platform]


# --------------------------------------------------------------------------
# Canonical layout.
def _canonical_shape(cfg: shapes.ShiftConfig, shape) -> tuple[int, ...]:
  """The rank-5 shape the kernels see for an input of shape `shape`."""
  spatial = tuple(shape[a] for a in cfg.spatial_axes)
  pad = (1,) * (3 - cfg.ndim)
  channels = shape[cfg.channel_axis]
  if cfg.channels_last:
    return (int(np.prod(shape[:cfg.spatial_axes[0]])),) + pad + spatial + (channels,)
  return (int(np.prod(shape[:cfg.channel_axis])), channels) + pad + spatial


def _strides3(cfg):
  return (1,) * (3 - cfg.ndim) + cfg.strides


def _tables(cfg, x_shape, shifts, *, rounded, dtype):
  """``(m, f)``: ``[1, C, 3]`` offset and fraction tables for the kernels."""
  lengths = (1,) * (3 - cfg.ndim) + tuple(x_shape[a] for a in cfg.spatial_axes)
  # A pad, not a concatenate with zeros: under vmap on an Explicit mesh the
  # batched concatenate broadcasts the zeros with a sharding outside any mesh.
  s3 = jnp.pad(shifts.astype(dtype), ((0, 0), (3 - cfg.ndim, 0)))
  m, f = spec.shift_tables(s3, lengths, _strides3(cfg), cfg.padding,
                           rounded=rounded, dtype=dtype)
  return m[None], f[None]


def _kernel_strides(cfg, shape5):
  """The ``strides`` attribute of a call on the canonical shape `shape5`.

  The kernels' two-axis fast paths take a first canonical axis of length 1
  and stride 1 for a missing axis (zero shift) and skip it. A real first axis
  of length 1 (a 3-D call of depth 1, whose shift still matters) is passed
  with stride 2, which sends it down the general path and changes nothing
  else: its one output, o = 0, reads position o * t + m + f for any t.
  """
  t = _strides3(cfg)
  first = shape5[1 if cfg.channels_last else 2]
  if cfg.ndim == 3 and first == 1:
    t = (2,) + t[1:]
  return t


def _attrs(cfg, shape5):
  return dict(padding=np.int64(_PADDING_CODE[cfg.padding]),
              channels_last=bool(cfg.channels_last),
              strides=np.array(_kernel_strides(cfg, shape5), np.int64))


# --------------------------------------------------------------------------
# Batching: fold vmapped axes into the batch axis.
def _fold(x, batched, size):
  """(B, N, ...) -> (N*B, ...) ordered (N, B) so a sharded N stays leading."""
  if not batched:
    x = jnp.broadcast_to(x[None], (size,) + x.shape)
  return jnp.moveaxis(x, 0, 1).reshape((-1,) + x.shape[2:])


def _fold_grouped(x, batched, size):
  """(B, N, ...) -> (B*N, ...): sample b*N + n uses table group b*G + n//(N/G)."""
  if not batched:
    x = jnp.broadcast_to(x[None], (size,) + x.shape)
  return x.reshape((-1,) + x.shape[2:])


def _unfold(y, size, grouped):
  if grouped:
    return y.reshape((size, -1) + y.shape[1:])
  return jnp.moveaxis(y.reshape((-1, size) + y.shape[1:]), 1, 0)


def _fold_call(fn, axis_size, in_batched, arrays, n_data):
  """Calls `fn` once on folded arrays; the first `n_data` are sample-major."""
  tables_batched = any(in_batched[n_data:])
  fold = _fold_grouped if tables_batched else _fold
  data = [fold(a, b, axis_size) for a, b in zip(arrays[:n_data],
                                               in_batched[:n_data])]
  if tables_batched:
    tables = [(t if b else jnp.broadcast_to(t[None], (axis_size,) + t.shape))
              .reshape((-1,) + t.shape[-2:]) for t, b in zip(arrays[n_data:],
                                                            in_batched[n_data:])]
  else:
    tables = list(arrays[n_data:])
  outs = fn(*data, *tables)
  return [_unfold(o, axis_size, tables_batched) for o in outs]


# --------------------------------------------------------------------------
# Partitioning: split along batch and channels, never gather.
def _rules(cfg: shapes.ShiftConfig, grouped: bool):
  """Shardy rules ``(forward, backward, need_replication)`` on rank-5 data.

  Batch ``n`` and channels ``c`` split freely; spatial axes (input ``a b w``,
  output ``i j l``) and the tables' ``k`` stay whole. With per-group tables
  (vmap over the shifts, ``grouped``) a sample's table depends on its global
  index, so the batch stays whole too.
  """
  x, y = ("n a b w c", "n i j l c") if cfg.channels_last else (
      "n c a b w", "n c i j l")
  forward = f"{x}, g c k, g c k -> {y}"
  backward = f"{x}, {y}, g c k, g c k, g c k, g c k -> {x}, n c k"
  replicate = tuple("abwijlkg") + (("n",) if grouped else ())
  return forward, backward, replicate


def _partitioned(fn, cfg, rule: str, replicate, n_data: int, grouped: bool):
  """`fn` under `custom_partitioning`: each device runs it on its own shard.

  XLA treats a custom call as opaque and would replicate it (gathering
  every input). The Shardy `rule` says which axes may stay split; `fn` then
  runs on local shards split along batch and channels only.
  """
  wrapped = custom_partitioning(fn)

  def partition(mesh, arg_shapes, result_shape):
    args = tuple(a.sharding for a in arg_shapes)
    results = jax.tree.map(lambda r: r.sharding, result_shape)
    if isinstance(args[0], jax.sharding.NamedSharding):
      data, sample, table = (jax.sharding.NamedSharding(mesh, p) for p in
                             _specs(cfg, args[0].spec, grouped))
      args = (data,) * n_data + (table,) * (len(args) - n_data)
      results = (data,) if n_data == 1 else (data, sample)
    return mesh, fn, results, args

  factors = rule.replace(",", " ").replace("->", " ").split()
  order = {f: factors.index(f) for f in replicate}  # Shardy wants rule order
  wrapped.def_partition(partition=partition, sharding_rule=rule,
                        need_replication_factors=tuple(sorted(replicate,
                                                              key=order.get)))
  return wrapped


def _require(platform: str):
  if not kernels_available(platform):
    raise RuntimeError(f"jaxshift's {platform} kernels are not built or not loaded.")


def _one_launch(fn, n_data: int):
  """Wraps `fn` (arrays -> tuple of arrays) so vmap folds into one call.

  The first `n_data` arguments are sample-major data (batch axis first); the
  rest are ``(G, C, 3)`` shift tables.
  """
  wrapped = jax.custom_batching.custom_vmap(fn)

  @wrapped.def_vmap
  def _rule(axis_size, in_batched, *args):
    outs = _fold_call(wrapped, axis_size, in_batched, args, n_data)
    return tuple(outs), (True,) * len(outs)

  return wrapped


@functools.lru_cache(maxsize=None)
def _forward_call(platform: str, cfg: shapes.ShiftConfig):
  """``(x, m, f) -> (y,)`` on the canonical layout."""
  _require(platform)
  move = cfg.mode != "active"

  def call(x, m, f):
    # Result types from jax.typeof(x) keep x's manual axes inside shard_map.
    return (jax.ffi.ffi_call(
        f"jaxshift_forward_{platform}",
        _result_type(cfg, x, shape=_out5(cfg, x.shape)))(
            x, m, f, move=move, **_attrs(cfg, x.shape)),)

  return _one_launch(_by_grouping(call, cfg, 0), 1)


@functools.lru_cache(maxsize=None)
def _backward_call(platform: str, cfg: shapes.ShiftConfig):
  """``(x, g, m_r, f_r, m_u, f_u) -> (dx, per-sample dshifts (N, C, 3))``."""
  _require(platform)
  shift_grad = cfg.mode != "integer"

  def call(x, g, m_r, f_r, m_u, f_u):
    return tuple(jax.ffi.ffi_call(
        f"jaxshift_backward_{platform}",
        (_result_type(cfg, x),
         _result_type(cfg, x, dtype=f_u.dtype, per_sample=True)))(
             x, g, m_r, f_r, m_u, f_u, shift_grad=shift_grad,
             **_attrs(cfg, x.shape)))

  return _one_launch(_by_grouping(call, cfg, 1), 2)


def _by_grouping(call, cfg, which: int):
  """`call` partitioned by rule `which` (0 forward, 1 backward) of `_rules`."""
  variants = {}
  for grouped in (False, True):
    rules = _rules(cfg, grouped)
    variants[grouped] = _partitioned(call, cfg, rules[which], rules[2],
                                     which + 1, grouped)

  def dispatch(*args):
    return variants[args[-1].shape[0] > 1](*args)  # tables: (G, C, 3)

  return dispatch


def _result_type(cfg, x, *, shape=None, dtype=None, per_sample=False):
  """A kernel result's type: `x`'s, with the shardings the kernel produces.

  ``jax.typeof(x)`` keeps x's manual axes inside shard_map and its sharding
  under an explicit mesh; batch and channel shardings carry over, spatial
  axes come out whole (the kernel reads across them). ``per_sample``: the
  ``(N, C, 3)`` per-sample shift gradient.
  """
  t = jax.typeof(x)
  cax = _channel_axis5(cfg)
  if per_sample:
    shape = (x.shape[0], x.shape[cax], 3)
  update = dict(shape=shape or x.shape, dtype=dtype or x.dtype)
  spec = getattr(t.sharding, "spec", None)
  if spec is not None:
    data, sample, _ = _specs(cfg, spec, grouped=False)
    update["sharding"] = t.sharding.update(spec=sample if per_sample else data)
  return t.update(**update)


def _channel_axis5(cfg):
  return 4 if cfg.channels_last else 1


def _specs(cfg, x_spec, grouped: bool):
  """``(data, per-sample, table)`` specs that keep x's batch/channel split."""
  cax = _channel_axis5(cfg)
  x_spec = tuple(x_spec) + (None,) * (5 - len(x_spec))
  n, c = (None if grouped else x_spec[0]), x_spec[cax]
  data = [None] * 5
  data[0], data[cax] = n, c
  P = jax.sharding.PartitionSpec
  return P(*data), P(n, c, None), P(None, c, None)


def _out5(cfg, shape5):
  """Output shape of a canonical rank-5 input."""
  s0 = 1 if cfg.channels_last else 2
  out = list(shape5)
  for a, t in enumerate(_strides3(cfg)):
    out[s0 + a] = -(-shape5[s0 + a] // t)
  return tuple(out)


# --------------------------------------------------------------------------
# Entry points used by jaxshift._src.dispatch.
def forward(cfg: shapes.ShiftConfig, platform: str, x, shifts):
  """The shift on `platform`'s kernel. Same contract as `spec.forward`."""
  out_shape = cfg.out_shape(x.shape)
  if x.size == 0 or int(np.prod(out_shape)) == 0:
    return jnp.zeros(out_shape, x.dtype)
  dt = spec.compute_dtype(x.dtype)
  m, f = _tables(cfg, x.shape, shifts, rounded=cfg.mode != "active", dtype=dt)
  shape5 = _canonical_shape(cfg, x.shape)
  (y5,) = _forward_call(platform, cfg)(x.reshape(shape5), m, f)
  return y5.reshape(out_shape)


def backward(cfg: shapes.ShiftConfig, platform: str, x, shifts, g):
  """Cotangents on `platform`'s kernel. Same contract as `spec.backward`."""
  ds_dtype = shifts.dtype
  if x.size == 0 or g.size == 0:
    return jnp.zeros(x.shape, x.dtype), jnp.zeros(shifts.shape, ds_dtype)
  dt = spec.compute_dtype(x.dtype)
  rounds = cfg.mode != "active"
  m_r, f_r = _tables(cfg, x.shape, shifts, rounded=rounds, dtype=dt)
  m_u, f_u = _tables(cfg, x.shape, shifts, rounded=False, dtype=dt)
  shape5 = _canonical_shape(cfg, x.shape)
  g5 = g.reshape(_out5(cfg, shape5))
  dx5, partial = _backward_call(platform, cfg)(x.reshape(shape5), g5, m_r,
                                               f_r, m_u, f_u)
  ds = jnp.sum(partial[:, :, 3 - cfg.ndim:], axis=0)
  return dx5.reshape(x.shape), ds.astype(ds_dtype)
