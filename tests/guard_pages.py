"""Kernel calls on arrays that end (or start) at an unreadable page.

Run as a script (test_ffi.py's test_gathers_stay_inside_their_buffers runs it
in a subprocess, where a read past a buffer is a segmentation fault, not a
crashed test worker). `jax.device_put` of a 64-byte-aligned numpy array on
the CPU aliases its memory, and a jitted function's parameter is the custom
call's operand as it is (test_kernels_take_their_inputs_without_a_copy), so
x and the cotangent g are the guarded memory itself. Each case's results
must equal the same call's on ordinary arrays.

Usage: python guard_pages.py  (prints "ok" and the number of checks)
"""

import ctypes
import functools
import mmap

import jax
import jax.numpy as jnp
import numpy as np

import jaxshift

PAGE = mmap.PAGESIZE
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_KEEP = []  # the mappings stay alive while their arrays are used

# (dtype, N, H, W, C, strides, channels last): C % 8 == 1 puts a group's
# lane 0 on the buffer's last element (the lanes' 16-bit gathers test for it
# there); other channel counts read it through a high half. 2-D: the lanes,
# channels-last, and channels-first on rows under 8 cells (a lane a plane
# apart; their moves: the direct rows' flat runs); channels-first strided
# rows (cpu/direct.h: vectors that leave a row gather their cells).
CASES = [
    ("bfloat16", 1, 4, 8, 9, 1, True), ("bfloat16", 2, 4, 8, 16, 1, True),
    ("float16", 1, 8, 16, 9, 2, True), ("float16", 2, 4, 8, 12, 1, True),
    ("bfloat16", 1, 8, 4, 9, 1, False), ("float16", 2, 5, 4, 16, 1, False),
    ("float32", 1, 4, 4, 9, 1, False),
    ("float16", 1, 8, 32, 2, 2, False),  # channels-first strided rows' edge gathers
]
# A case's last channel's shift where its reads must reach the buffer's last
# element: the channels-first strided rows gather the last row's last cell
# (row tap 1 of output row 3; column tap 0 of the last output, in a vector
# whose other reads leave the row).
LAST_SHIFT = {CASES[-1]: (-0.5, -1.5)}


def guarded(a, at_end):
  """A copy of `a` in memory whose next page (at_end) or previous page is
  unreadable, aliased by a jax array."""
  nbytes = a.nbytes
  assert nbytes % 64 == 0 and nbytes <= PAGE
  m = mmap.mmap(-1, 3 * PAGE)
  base = ctypes.addressof(ctypes.c_char.from_buffer(m))
  for page in (0, 2):
    if _LIBC.mprotect(base + page * PAGE, PAGE, 0) != 0:
      raise OSError(ctypes.get_errno(), "mprotect")
  off = 2 * PAGE - nbytes if at_end else PAGE
  raw = np.frombuffer(m, np.uint8)[off:off + nbytes]
  view = raw.view(a.dtype).reshape(a.shape)
  view[...] = a
  out = jax.device_put(view)
  if out.unsafe_buffer_pointer() != view.ctypes.data:
    raise RuntimeError("jax copied the host array: the guard pages would not be read")
  _KEEP.append((m, view))
  return out


@functools.partial(jax.jit, static_argnames=("strides", "channel_axis"))
def calls(x, s, g, strides, channel_axis):
  """Forward and VJP of every mode and padding (x, and g of the output's
  shape, as given)."""
  out = []
  for mode in ("active", "sparse", "integer"):
    for padding in jaxshift.PADDINGS:
      f = lambda x, s: jaxshift.shift(x, s, mode=mode, padding=padding, strides=strides,
                                      channel_axis=channel_axis, impl="ffi")
      y, vjp = jax.vjp(f, x, s)
      out.append((y,) + vjp(g))
  return out


def main():
  checks = 0
  rng = np.random.default_rng(0)
  for case in CASES:
    dtype, n, h, w, c, strides, channels_last = case
    ho, wo = -(-h // strides), -(-w // strides)
    x_shape, g_shape = ((n, h, w, c), (n, ho, wo, c)) if channels_last else \
        ((n, c, h, w), (n, c, ho, wo))
    x = rng.normal(size=x_shape).astype(jnp.dtype(dtype))
    g = rng.normal(size=g_shape).astype(jnp.dtype(dtype))
    s = rng.uniform(-2.5, 2.5, (c, 2))
    if case in LAST_SHIFT:
      s[-1] = LAST_SHIFT[case]
    s = jnp.asarray(s, jnp.float32)
    axis = -1 if channels_last else 1
    want = calls(jnp.asarray(x), s, jnp.asarray(g), strides, axis)
    for at_end in (True, False):
      got = calls(guarded(x, at_end), s, guarded(g, at_end), strides, axis)
      for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
        checks += 1
  print("ok", checks)


if __name__ == "__main__":
  main()
