"""The compiled kernels: loading, registration, and the calls into them.

The only module that touches ``jax.ffi``. Python owns shapes: every call is
reshaped into the canonical rank-5 layout of its `layout.ShiftCall`, the
kernels are told which canonical axes are present (an attribute, not a
guess from a length), and the per-channel shift tables are computed by
`jaxshift._src.spec`, once, for every backend.

vmap never loops: `jax.custom_batching.custom_vmap` folds vmapped axes into
the batch axis (and the per-group shift tables), so a vmapped shift is one
kernel launch. Partitioning is `jaxshift._src.partition`'s.
"""

import contextlib
import ctypes
import functools
import importlib.resources
import os
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxshift._src import layout
from jaxshift._src import partition
from jaxshift._src import shapes
from jaxshift._src import spec

_PADDING_CODE = {p: i for i, p in enumerate(shapes.PADDINGS)}
_PLATFORM_NAME = {"cpu": "cpu", "cuda": "CUDA"}
_loaded: dict[str, bool] = {}

# Which kernels `impl="ffi"` runs on each platform, chosen before import:
#   JAXSHIFT_CPU_KERNEL   native (default): the CPU kernels; cuda-emulated: the
#                         CUDA kernels' own code on the host emulator
#                         (libjaxshift_cuda_emulated.so; slow, for testing the
#                         GPU code without a GPU), of the family that
#                         JAXSHIFT_CUDA_KERNEL names;
#   JAXSHIFT_CUDA_KERNEL  walk (default): the walk family; tiled: the tiled
#                         family (opt-in until a GPU run has passed with it).
# The first value of each is the default.
KERNEL_CHOICES = {
    "cpu": ("JAXSHIFT_CPU_KERNEL", ("native", "cuda-emulated")),
    "cuda": ("JAXSHIFT_CUDA_KERNEL", ("walk", "tiled")),
}
# The FFI target family of each CUDA choice: jaxshift_{forward,backward}_<family>.
_CUDA_FAMILY = {"walk": "cuda", "tiled": "cuda_tiled"}


def _choice(platform: str) -> str:
  var, choices = KERNEL_CHOICES[platform]
  value = os.environ.get(var, "") or choices[0]
  if value not in choices:
    raise ValueError(f"{var}={value!r} is not a jaxshift kernel choice: expected one of "
                     f"{', '.join(map(repr, choices))} (or unset for {choices[0]!r}).")
  return value


_CHOICE = {platform: _choice(platform) for platform in KERNEL_CHOICES}


def _family(platform: str) -> str:
  """The FFI target family `impl="ffi"` calls on `platform` now."""
  if platform == "cuda":
    return _CUDA_FAMILY[_CHOICE["cuda"]]
  if _CHOICE["cpu"] == "cuda-emulated":
    return f"cuda_emulated_{_CHOICE['cuda']}"
  return "cpu"


def target(platform: str, which: str) -> str:
  """The FFI target `impl="ffi"` calls for `which` (``"forward"`` or
  ``"backward"``) on `platform`, e.g. ``jaxshift_forward_cpu`` or, with
  ``JAXSHIFT_CPU_KERNEL=cuda-emulated``, ``jaxshift_forward_cuda_emulated_walk``."""
  return target_of(_family(platform), which)


def target_of(family: str, which: str) -> str:
  """The FFI target of kernel family `family` (`_family`) for `which`."""
  return f"jaxshift_{which}_{family}"


@contextlib.contextmanager
def kernel_choice(platform: str, value: str):
  """Calls traced inside use kernel choice `value` on `platform` (the values
  of `KERNEL_CHOICES`), e.g. ``kernel_choice("cuda", "tiled")``: for
  benchmarks that time the walk and tiled CUDA kernels in one process (the
  CUDA choice also picks the emulated family of
  ``JAXSHIFT_CPU_KERNEL=cuda-emulated``). Compile inside
  (``jax.jit(f).lower(...).compile()``); a jitted function traced later uses
  the process's choice again."""
  var, choices = KERNEL_CHOICES[platform]
  if value not in choices:
    raise ValueError(f"`value` must be one of {', '.join(map(repr, choices))} for {var}; "
                     f"got {value!r}.")
  saved_choice, saved_loaded = dict(_CHOICE), dict(_loaded)
  before = {p: _family(p) for p in _PLATFORM_NAME}
  _CHOICE[platform] = value
  changed = [p for p in _PLATFORM_NAME if _family(p) != before[p]]
  for p in changed:
    _loaded.pop(p, None)
  try:
    if changed and not any(kernels_available(p) for p in changed):
      raise RuntimeError(f"jaxshift's {platform} kernels ({value}) are not built.")
    yield
  finally:
    _CHOICE.update(saved_choice)
    _loaded.clear()
    _loaded.update(saved_loaded)


def library_path(platform: str):
  """The kernel library of `platform` that `kernels_available` loads, or None.

  ``JAXSHIFT_<PLATFORM>_LIBRARY`` in the environment (e.g.
  ``JAXSHIFT_CPU_LIBRARY=/path/libjaxshift_cpu.so``) names another build to
  load, such as a sanitizer build; otherwise the library installed in the
  package.
  """
  override = os.environ.get(f"JAXSHIFT_{platform.upper()}_LIBRARY", "")
  if override:
    path = pathlib.Path(override)
    if not path.is_file():
      raise FileNotFoundError(
          f"JAXSHIFT_{platform.upper()}_LIBRARY={override!r} is not a file; "
          "unset it to load the library installed with jaxshift.")
    return path
  library = ("cuda_emulated" if _family(platform).startswith("cuda_emulated")
             else platform)
  try:
    path = importlib.resources.files("jaxshift") / f"libjaxshift_{library}.so"
  except ModuleNotFoundError:  # pragma: no cover
    return None
  return path if path.is_file() else None


def cpu_setting(symbol: str, ctype=ctypes.c_int64):
  """The CPU library's exported run-time setting `symbol` as a function.

  For the tests and benchmarks, which change how the kernels run (never
  what they compute): ``jaxshift_cpu_tile_budget`` (the lanes' column
  tiles' L1 budget in bytes, 0: none), ``jaxshift_cpu_windows`` (the window
  rows, 1 or 0), ``jaxshift_cpu_long_task_bytes``,
  ``jaxshift_cpu_select_isa`` (``ctypes.c_int``). Called with a request it
  sets the setting and returns the value in use; a request < 0 only asks.

    >>> budget = cpu_setting("jaxshift_cpu_tile_budget")
    >>> before = budget(-1); budget(0); budget(before)  # doctest: +SKIP
  """
  path = library_path("cpu")
  if path is None:
    raise RuntimeError("jaxshift's CPU library is not built; reinstall jaxshift with its "
                       "kernels (pip install -e .) to change its settings")
  fn = getattr(ctypes.CDLL(str(path)), symbol)
  fn.restype, fn.argtypes = ctype, [ctype]
  return fn


def _load(platform: str) -> bool:
  if os.environ.get("JAXSHIFT_DISABLE_KERNELS", "") not in ("", "0"):
    return False
  path = library_path(platform)
  if path is None:
    return False
  lib = ctypes.CDLL(str(path))
  family = _family(platform)
  for which in ("forward", "backward"):
    getter = getattr(lib, f"jaxshift_{family}_{which}_ptr")
    getter.restype = ctypes.c_void_p
    jax.ffi.register_ffi_target(target(platform, which),
                                jax.ffi.pycapsule(getter()),
                                platform=_PLATFORM_NAME[platform])
  return True


def build_info() -> str:
  """Which kernel libraries the installed jaxshift was built with, and why.

  Returns:
    One line per library as the build recorded it, e.g.
    ``cpu: built; cuda: not built: no NVIDIA driver found (...)``; and which
    libraries are loaded now. Reinstall with the switches of the README
    ("Building the kernels") to change it.
  """
  try:
    recorded = (importlib.resources.files("jaxshift") /
                "_build_info.txt").read_text().strip()
  except (FileNotFoundError, ModuleNotFoundError):
    recorded = "no build record (jaxshift was not installed with its kernels)"
  loaded = ", ".join(f"{p}={kernels_available(p)} ({target(p, 'forward')})"
                     for p in _PLATFORM_NAME)
  return f"{recorded}\nloaded: {loaded}"


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


def register_kernels() -> None:
  """Loads and registers every built kernel library (called by ``import
  jaxshift``), so a deserialized `jax.export` artifact that holds jaxshift's
  custom calls runs in a process that has only imported jaxshift. A library
  that fails to load is reported as a warning here and an error at use."""
  for platform in _PLATFORM_NAME:
    try:
      kernels_available(platform)
    except OSError as e:  # a broken or foreign build: say so, do not fail import
      warnings.warn(f"jaxshift's {platform} kernel library did not load ({e}); "
                    "set JAXSHIFT_DISABLE_KERNELS=1 to use the jnp path, or "
                    "reinstall (README, 'Building the kernels').", RuntimeWarning,
                    stacklevel=2)


def _attrs(call: layout.ShiftCall):
  """The attributes both kernels take (xla_ffi/ffi/common.h, Options)."""
  return dict(padding=np.int64(_PADDING_CODE[call.padding]),
              channels_last=bool(call.channels_last),
              strides=np.array(call.kernel_strides, np.int64),
              present=np.array(call.present, np.int64))


def _data_layout(call: layout.ShiftCall):
  """The layout (major to minor) the kernels' data operands are given in:
  row-major, with the canonical axes a call does not have (length 1) named
  most major. A length-1 axis places no byte, so this is row-major's memory
  exactly; naming it lets XLA pass the input's reshape to rank 5 as it is
  where its layout assignment puts the new axis first: on the CPU it did so
  for bfloat16 (jax 0.10.2) and then copied the whole input to row-major
  before each call (a bfloat16 move took 1.5x a float16 one).
  None where every spatial axis is present."""
  absent = [a for a, p in zip(call.spatial_axes5, call.present) if not p]
  if not absent:
    return None
  return tuple(absent) + tuple(d for d in range(5) if d not in absent)


def _tables(call: layout.ShiftCall, shifts, *, rounded: bool):
  """``(m, f)``: ``[1, C, 3]`` offset and fraction tables for the kernels."""
  m, f = spec.shift_tables(call, shifts, rounded=rounded)
  return m[None], f[None]


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


def _require(platform: str):
  if not kernels_available(platform):
    raise RuntimeError(f"jaxshift's {platform} kernels are not built or not loaded.")


# The call wrappers are cached per target family as well as per call: jax
# caches what it traces of a wrapper (custom_vmap's jaxpr) by the wrapper's
# identity, so a wrapper shared by two families would run the family traced
# first under a later `kernel_choice` (seen on the GPU, jax 0.11.2: the tiled
# columns of bench.py ran the walk kernels).
@functools.lru_cache(maxsize=None)
def _forward_call(platform: str, family: str, call: layout.ShiftCall):
  """``(x5, m, f) -> (y5,)`` on the canonical layout, `family`'s target."""
  _require(platform)

  def kernel(x, m, f):
    # Result types from jax.typeof(x) keep x's manual axes inside shard_map.
    out = partition.result_type(call, x, shape=call.out_shape5(x.shape))
    data = _data_layout(call)
    return (jax.ffi.ffi_call(target_of(family, "forward"), out,
                             input_layouts=(data, None, None))(
        x, m, f, move=call.rounds, **_attrs(call)),)

  return _one_launch(partition.partitioned(kernel, call, backward=False), 1)


@functools.lru_cache(maxsize=None)
def _backward_call(platform: str, family: str, call: layout.ShiftCall):
  """``(x5, g5, m_r, f_r, m_u, f_u) -> (dx5, per-sample dshifts (N, C, 3))``."""
  _require(platform)

  def kernel(x, g, m_r, f_r, m_u, f_u):
    outs = (partition.result_type(call, x),
            partition.result_type(call, x, dtype=f_u.dtype, per_sample=True))
    data = _data_layout(call)
    return tuple(jax.ffi.ffi_call(target_of(family, "backward"), outs,
                                  input_layouts=(data, data) + (None,) * 4)(
        x, g, m_r, f_r, m_u, f_u, shift_grad=call.shift_grad, **_attrs(call)))

  return _one_launch(partition.partitioned(kernel, call, backward=True), 2)


# --------------------------------------------------------------------------
# Entry points used by jaxshift._src.dispatch.
def _move_operand(x):
  """An integer or bool `x` as the kernels take it for a move: integers of 2,
  4 and 8 bytes as they are (the handlers move them as the float storage of
  their width, bit for bit: a move does no arithmetic), 1-byte ones and bool
  widened to int16. `_move_result` undoes it."""
  return x.astype(jnp.int16) if x.dtype.itemsize == 1 else x


def _move_result(y, dtype):
  """The kernel's output of `_move_operand(x)` in x's `dtype`."""
  return y.astype(dtype) if jnp.dtype(dtype).itemsize == 1 else y


def forward(call: layout.ShiftCall, platform: str, x, shifts):
  """The shift on `platform`'s kernel. Same contract as `spec.forward`.

  An integer or bool `x` (a move) goes through the kernel as it is
  (`_move_operand`: 1-byte ones as int16); a channel with a NaN shift is zero
  (`spec.nan_fill`): with zeros padding its tables read only padding, else
  the kernel writes it with a NaN's bits and a pass after sets it to zero.
  """
  if call.empty:
    return jnp.zeros(call.out_shape, x.dtype)
  m, f = _tables(call, shifts, rounded=call.rounds)
  if not call.moves_bits:
    (y5,) = _forward_call(platform, _family(platform), call)(x.reshape(call.shape5()), m, f)
    return y5.reshape(call.out_shape)
  nan = jnp.any(jnp.isnan(f), axis=-1, keepdims=True)  # [1, C, 1]: per channel
  # With zeros padding a NaN channel's move reads only padding: zeros, as
  # spec.nan_fill asks, with no pass over y after the kernel.
  far_nan = call.padding == "zeros" and call.halo is None
  if far_nan:
    far = np.array([n if p else 0 for n, p in zip(call.lengths, call.present)], np.int32)
    m, f = jnp.where(nan, far, m), jnp.where(nan, jnp.zeros((), f.dtype), f)
  data = _move_operand(x).reshape(call.shape5())
  (y5,) = _forward_call(platform, _family(platform), call)(data, m, f)
  if not far_nan:
    shape = [1] * 5
    shape[call.channel_axis5] = -1
    y5 = jnp.where(nan[0, :, 0].reshape(shape), jnp.zeros((), y5.dtype), y5)
  return _move_result(y5, x.dtype).reshape(call.out_shape)


def backward(call: layout.ShiftCall, platform: str, x, shifts, g):
  """Cotangents on `platform`'s kernel. Same contract as `spec.backward`."""
  if call.empty:
    return jnp.zeros(x.shape, x.dtype), jnp.zeros(shifts.shape,
                                                  call.grad_dtype)
  m_r, f_r = _tables(call, shifts, rounded=call.rounds)
  m_u, f_u = _tables(call, shifts, rounded=False)
  dx5, per_sample = _backward_call(platform, _family(platform), call)(
      x.reshape(call.shape5()), g.reshape(call.out_shape5()), m_r, f_r, m_u,
      f_u)
  present = [a for a in range(3) if call.present[a]]
  ds = jnp.sum(per_sample[:, :, present], axis=0)
  return dx5.reshape(x.shape), ds.astype(call.grad_dtype)
