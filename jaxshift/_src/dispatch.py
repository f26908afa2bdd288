"""The public `shift`: validation, the custom VJP, and the choice of backend.

This is the one place that decides between the compiled kernels
(`jaxshift._src.ffi`), the pure-jnp reference (`jaxshift._src.spec`) and,
for concrete shifts in a rounding mode, plain XLA slices
(`jaxshift._src.static`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxshift._src import ffi
from jaxshift._src import halo
from jaxshift._src import layout
from jaxshift._src import partition
from jaxshift._src import spec
from jaxshift._src import static


def _by_platform(call, kernel_fn, jnp_fn, *args):
  """Runs `kernel_fn` where a kernel is built for the platform, else `jnp_fn`.

  ``impl="ffi"`` calls the kernel of the default backend (or raises);
  ``impl="auto"`` lowers through `lax.platform_dependent`, so one traced
  function serves every platform it is lowered for: the kernel where one is
  built, the jnp path elsewhere.
  """
  if call.impl == "xla":
    return jnp_fn(*args)
  platforms = [p for p in ("cpu", "cuda") if ffi.kernels_available(p)]
  if call.impl == "ffi":
    backend = {"gpu": "cuda"}.get(jax.default_backend(), jax.default_backend())
    if backend not in platforms:
      raise RuntimeError(
          f"impl='ffi' was requested but jaxshift has no compiled kernel for "
          f"the {backend!r} backend (loaded: {platforms or 'none'}). The build "
          f"recorded: {ffi.build_info().splitlines()[0]}. Reinstall with the "
          "kernels (see README, 'Building the kernels'), or pass impl='auto' "
          "to fall back to the pure-jnp path.")
    return kernel_fn(backend, *args)
  if not platforms:
    return jnp_fn(*args)
  branches = {p: functools.partial(kernel_fn, p) for p in platforms}
  return lax.platform_dependent(*args, default=jnp_fn, **branches)


# The jnp path as one compiled function per call: run eagerly, its few dozen
# small ops would each be dispatched (and compiled) on their own. It reads
# whole spatial axes (partition.whole_spatial).
@functools.partial(jax.jit, static_argnums=0)
def _jnp_forward(call, x, s):
  return spec.forward(call, partition.whole_spatial(call, x), s)


@functools.partial(jax.jit, static_argnums=0)
def _jnp_backward(call, x, s, g):
  return spec.backward(call, partition.whole_spatial(call, x), s,
                       partition.whole_spatial(call, g))


def _forward(call, x, s):
  return _by_platform(call, functools.partial(ffi.forward, call),
                      functools.partial(_jnp_forward, call), x, s)


def _backward(call, x, s, g):
  return _by_platform(call, functools.partial(ffi.backward, call),
                      functools.partial(_jnp_backward, call), x, s, g)


def _vary_like(s, x):
  """Inside shard_map: lets replicated shifts vary over x's manual axes.

  AD then transposes the cast into a psum, so the shift gradient is summed
  over the devices that share the shifts. Outside shard_map: a no-op.
  """
  try:
    missing = (jax.typeof(x).manual_axis_type.varying -
               jax.typeof(s).manual_axis_type.varying)
  except AttributeError:  # no manual axes in this jax or context
    return s
  if not missing:
    return s
  return lax.pcast(s, tuple(sorted(missing)), to="varying")


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _shift(call, x, s):
  return _forward(call, x, s)


def _shift_fwd(call, x, s):
  return _forward(call, x, s), (x, s)


def _sharded_like(v, ref):
  """`v` with `ref`'s sharding where an explicit mesh gives them different
  ones (the gathering paths compute ``dx`` with whole spatial axes)."""
  want = getattr(jax.typeof(ref), "sharding", None)
  if getattr(want, "spec", None) is None or jax.typeof(v).sharding == want:
    return v
  return jax.sharding.reshard(v, want)


def _shift_bwd(call, res, g):
  x, s = res
  if call.moves_bits:  # integer x and output: no cotangent flows
    dx = np.zeros(x.shape, jax.dtypes.float0)
    ds = jnp.zeros(s.shape, call.grad_dtype)
  else:
    dx, ds = _backward(call, x, s, g)
    dx = _sharded_like(dx, x)
  if not jnp.issubdtype(s.dtype, jnp.floating):  # integer shifts: no tangent
    ds = np.zeros(s.shape, jax.dtypes.float0)
  else:  # inside shard_map, a zero gradient varies as the shifts do
    ds = _vary_like(ds, s)
  return dx, ds


_shift.defvjp(_shift_fwd, _shift_bwd)


def _block(call, x, s):
  """The unsharded shift of one block (`halo.shift`): static slices for
  NumPy shifts, else the custom VJP (kernel or jnp path)."""
  if isinstance(s, np.ndarray):
    return static.forward(call, x, s)
  return _shift(call, x, _vary_like(s, x))


def shift(x, shifts, *, mode: str = "active", padding: str = "zeros",
          channel_axis: int = -1, strides=1, impl: str = "auto",
          max_shift=None) -> jax.Array:
  r"""Moves each channel of `x` by its own (real or integer) offset.

  ``out[n, p, c] = X_c(p * strides - shifts[c])``: a positive shift moves
  content toward higher indices (as ``jnp.roll`` and ``scipy.ndimage.shift``
  do). ``X_c`` interpolates channel ``c`` multilinearly and answers reads
  outside the array through `padding`.

  Args:
    x: ``[*batch, *spatial, C]`` (``channel_axis=-1``, the default) or
      ``[*batch, C, *spatial]`` (``channel_axis`` the axis just before the
      spatial ones, e.g. 1 for ``[N, C, H, W]``). float16, bfloat16, float32
      or float64; for the moves (``mode="integer"``, and the forward of
      ``"sparse"``) also any integer dtype or bool: raw video frames,
      quantized activations, masks, moved exactly (``zeros`` reads 0 or
      False; a channel whose shift is NaN is 0). ``"active"`` interpolates
      and raises a `TypeError` for them (cast first).
    shifts: ``[C, D]``, one offset per channel and spatial axis, ``D`` in
      1, 2, 3 (the number of spatial axes of `x`). Integer dtypes are accepted
      with ``mode="integer"`` (and used exactly, whatever their size).
      Concrete shifts (a NumPy array or Python sequence, e.g. a table of
      `jaxshift.partial_shifts` or a frozen model's shifts) are known at
      trace time: they lower to plain XLA slices and pads (``"active"``: plus
      constant per-channel weights) that fuse with the neighbouring ops, with
      no gather and no custom call (``impl="auto"`` and ``"xla"``; ``"ffi"``
      still calls the kernel), and have no gradient.
      A `jax.Array` (traced or not) always takes the kernel or jnp path.
    mode: ``"active"``: bilinear (trilinear) interpolation at the real shift,
      exact gradients. ``"sparse"``: moves by ``round(shifts)`` (half to even),
      a pure copy; the shift gradient is the active one at the unrounded shift
      (straight-through). ``"integer"``: moves by ``round(shifts)``; shifts
      get a zero gradient (grouped shift).
    padding: how reads outside ``[0, L)`` are answered: ``"zeros"``,
      ``"border"`` (clamp), ``"periodic"`` (wrap), ``"reflect"`` (mirror,
      edge not repeated), ``"symmetric"`` (mirror, edge repeated).
    channel_axis: the channel axis of `x`.
    strides: a positive int or one per spatial axis; the output samples
      ``X(o * stride - s)`` with length ``ceil(L / stride)``.
    impl: ``"auto"`` (the compiled kernel of the platform if built, else
      jnp; static slices for concrete shifts in a rounding mode), ``"xla"``
      (pure jnp, or those static slices), ``"ffi"`` (compiled kernel, or an
      error).
    max_shift: for an `x` whose spatial axes an explicit mesh splits and
      traced shifts: the largest ``|shift|`` (a number, or one per spatial
      axis) the halo exchange is sized for (``ceil(max_shift) + 1`` cells
      each side). A call whose shifts reach further is still right: it
      passes the blocks round the ring of shards instead (slower, no
      gather). None (the default): traced shifts on split spatial axes
      gather them. Concrete shifts size the halo themselves. See the guide,
      "Sharding space".

  Returns:
    Same layout and dtype as `x`; spatial lengths ``ceil(L / stride)``.
    An integer or bool `x` is moved bit for bit and has no gradient.
    Every implementation computes in float32 (float64 for float64 `x`),
    after reducing the shifts in their own precision; the shift gradient
    has the dtype of `shifts` (float32 for integer shifts, which have no
    gradient).

  Raises:
    TypeError, ValueError: at trace time, naming the offending argument.
      Spatial axes may have at most ``2**28`` positions.

  Example:
    >>> import jax.numpy as jnp, jaxshift
    >>> x = jnp.array([[1., 2., 3., 4., 5.]])[..., None]   # (N=1, W=5, C=1)
    >>> jaxshift.shift(x, jnp.array([[0.25]]))[0, :, 0].tolist()
    [0.75, 1.75, 2.75, 3.75, 4.75]
    >>> jaxshift.shift(x, jnp.array([[2]]), mode="integer",
    ...                padding="reflect")[0, :, 0].tolist()
    [3.0, 2.0, 1.0, 2.0, 3.0]
  """
  x = jnp.asarray(x)
  # Concrete shifts (NumPy, Python sequences) stay NumPy: a rounding mode
  # then lowers to plain XLA slices (`static`), unless impl="ffi".
  concrete = static.is_static(shifts)
  shifts = static.as_numpy(shifts) if concrete else jnp.asarray(shifts)
  call = layout.make_call(x, shifts, mode=mode, padding=padding,
                          channel_axis=channel_axis, strides=strides,
                          impl=impl)
  bound = halo.max_shift_bound(max_shift, call.ndim)  # checked on every call
  static_path = concrete and call.impl != "ffi"
  plan = halo.plan(call, x, shifts, bound=bound, static_path=static_path)
  with jax.named_scope(f"jaxshift.shift.{call.mode}"):
    if plan is not None:  # split spatial axes: a halo exchange
      if static_path and plan.spec[call.channel_axis] is None:
        return halo.shift(call, plan, x, None, _block, static_shifts=shifts)
      return halo.shift(call, plan, x, jnp.asarray(shifts), _block)
    if static_path:
      return static.forward(call, x, shifts)
    shifts = jnp.asarray(shifts)
    return _shift(call, x, _vary_like(shifts, x))
