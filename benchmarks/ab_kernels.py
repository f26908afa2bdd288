"""A/B of two builds of the CPU kernel library, in one process.

Loads each library under its own target names and times, in turns with each
other and with the copy floors (`np.copyto` and XLA's `x + 1` on the same
bytes), the forward and the forward+backward of each build on the same
canonical inputs and shift tables. Use it to show that a change of the
kernels' code is no slower (or how much faster it is):

  python benchmarks/ab_kernels.py --a OLD.so --b NEW.so [--a-abi 0]
      [--modes active sparse integer] [--layouts NHWC] [--padding reflect]

`--a-abi 0` is the calling convention before the `present` attribute
(commit e08977c and earlier); the default, 1, is today's.

Prints one Markdown table: medians over --samples rounds (each round calls
every function --inner times back to back after one untimed call, in an
order reversed every other round), B/A as the median over rounds of the
ratio within a round, B's time as a ratio to the faster copy of the same
bytes, and whether B's results (forward; y, dx and the shift gradient of the
forward+backward) are A's bit for bit ("only y, dx": the others are not).

A and B trade places in rounds 2-3 of every 4 (`time_in_turns`' `swap`), so
that each follows each neighbour equally often. Before that, B always ran
right after A or A's forward + backward, and with the same library as A and
B, B/A came out 0.72-1.06 (medians 0.93-0.96 over three rounds) on the
2-core VM: one order flattered B by about 5 % (benchmarks/NOTES.md, v23).
With the swap: 0.97-1.03.
"""

import argparse
import ctypes
import datetime
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from bench import time_in_turns  # benchmarks/bench.py, beside this script
from jaxshift._src import layout
from jaxshift._src import shapes
from jaxshift._src import spec


def register(path: str, tag: str):
  lib = ctypes.CDLL(path)
  for which in ("forward", "backward"):
    getter = getattr(lib, f"jaxshift_cpu_{which}_ptr")
    getter.restype = ctypes.c_void_p
    jax.ffi.register_ffi_target(f"ab_{tag}_{which}", jax.ffi.pycapsule(getter()),
                                platform="cpu")


def tables(call, s):
  """The kernels' tables as jaxshift builds them: ``(m, f)`` of the forward
  (rounded in sparse mode) and ``(m_u, f_u)``, the exact ones the shift
  gradient reads (sparse mode's straight-through derivative)."""
  m, f = spec.shift_tables(call, s, rounded=call.rounds)
  m_u, f_u = spec.shift_tables(call, s, rounded=False)
  return m[None], f[None], m_u[None], f_u[None]


def kernel_fns(tag, abi, call, x5, s, traced):
  """Jitted forward ``(x5, s)`` and forward + backward ``(x5, g5, s)`` on
  library `tag`. `traced`: the tables are computed inside the program from
  `s`, as `jaxshift.shift` does, so XLA dispatches it as it does a user's
  call; else they are constants and the program is the bare custom call,
  which XLA's CPU client runs inline on the calling thread (its cost model
  counts a custom call as no work; benchmarks/NOTES.md, v34)."""
  attrs = dict(padding=np.int64(shapes.PADDINGS.index(call.padding)), channels_last=call.channels_last,
               strides=np.array(call.kernel_strides, np.int64))
  if abi >= 1:
    attrs["present"] = np.array(call.present, np.int64)
  out5 = call.out_shape5()
  fwd = jax.ffi.ffi_call(f"ab_{tag}_forward",
                         jax.ShapeDtypeStruct(out5, x5.dtype))
  bwd = jax.ffi.ffi_call(f"ab_{tag}_backward",
                         (jax.ShapeDtypeStruct(x5.shape, x5.dtype),
                          jax.ShapeDtypeStruct((x5.shape[0], call.channels, 3),
                                               jnp.dtype(call.compute_dtype))))
  move = call.rounds
  if traced:
    tabs = lambda v: tables(call, v)
  else:
    fixed = tables(call, s)
    tabs = lambda v: fixed

  @jax.jit
  def forward(x, v):
    m, f, _, _ = tabs(v)
    return fwd(x, m, f, move=move, **attrs)

  @jax.jit
  def forward_backward(x, g, v):
    m, f, m_u, f_u = tabs(v)
    y = fwd(x, m, f, move=move, **attrs)
    dx, ds = bwd(x, g, m, f, m_u, f_u, shift_grad=call.shift_grad, **attrs)
    return y, dx, ds

  return forward, forward_backward


def paired_ratio(times, b, a):
  """Median over rounds of time b / time a within the same round."""
  return statistics.median(tb / ta for tb, ta in zip(times[b], times[a]))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--a", required=True, help="library A (e.g. before)")
  p.add_argument("--b", required=True, help="library B (e.g. after)")
  p.add_argument("--a-abi", type=int, default=1)
  p.add_argument("--b-abi", type=int, default=1)
  p.add_argument("--shape", default="8x32x32x64",
                 help="channels-last sizes, NHWC or NDHWC (3-D)")
  p.add_argument("--padding", default="zeros", choices=["zeros", "border", "periodic",
                                                        "reflect", "symmetric"])
  p.add_argument("--dtype", default="float32",
                 choices=["float32", "bfloat16", "float16", "float64"])
  p.add_argument("--strides", type=int, default=1, help="on every spatial axis")
  p.add_argument("--modes", nargs="*", default=["active", "sparse"],
                 choices=["active", "sparse", "integer"],
                 help="integer: sparse's move with no shift gradient")
  p.add_argument("--layouts", nargs="*", default=["NHWC", "NCHW"], choices=["NHWC", "NCHW"])
  p.add_argument("--samples", type=int, default=31)
  p.add_argument("--inner", type=int, default=5)
  p.add_argument("--tables", default="traced", choices=["traced", "constant"],
                 help="traced (default): the tables computed in the program from the "
                      "shifts, as jaxshift.shift does; constant: the bare custom call, "
                      "which XLA runs inline on the calling thread")
  p.add_argument("--out", default=None)
  a = p.parse_args(argv)
  register(a.a, "a")
  register(a.b, "b")
  sizes = [int(v) for v in a.shape.split("x")]
  n, spatial, c = sizes[0], sizes[1:-1], sizes[-1]
  if a.dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  dtype = jnp.dtype(a.dtype)
  lines = [f"A = {a.a}, B = {a.b}; {a.shape} {a.dtype}, {a.padding} padding, "
           f"{a.tables} tables"
           f"{f', strides {a.strides}' if a.strides > 1 else ''}; "
           f"{jax.devices()[0].device_kind}, jax "
           f"{jax.__version__}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
           f"median of {a.samples} rounds x {a.inner} calls, all functions of a row in turns "
           f"(order reversed every other round); B/A: median of per-round ratios; ms",
           "", "| layout | mode | np.copyto | x + 1 | A fwd | B fwd | B/A fwd | A f+b | B f+b "
           "| B/A f+b | B fwd / copy | B f+b / 2.5 copies | same bits |", "|" + "---|" * 13]
  rng = np.random.default_rng(0)
  for layout_name in a.layouts:
    shape = (n, *spatial, c) if layout_name == "NHWC" else (n, c, *spatial)
    x = jnp.asarray(rng.normal(size=shape), dtype)
    s = jnp.asarray(rng.uniform(-2, 2, (c, len(spatial))), jnp.float32)
    for mode in a.modes:
      call = layout.make_call(x, s, mode=mode, padding=a.padding,
                              channel_axis=-1 if layout_name == "NHWC" else 1,
                              strides=a.strides, impl="ffi")
      x5 = x.reshape(call.shape5())
      g5 = jnp.asarray(rng.normal(size=call.out_shape5()), dtype)
      traced = a.tables == "traced"
      fa, fba = kernel_fns("a", a.a_abi, call, x5, s, traced)
      fb, fbb = kernel_fns("b", a.b_abi, call, x5, s, traced)
      np.testing.assert_allclose(np.asarray(fa(x5, s), np.float32),
                                 np.asarray(fb(x5, s), np.float32),
                                 rtol=1e-2, atol=1e-2)
      # Whether B computes A's results bit for bit (forward; y, dx and the
      # shift gradient of the forward+backward).
      equal = [name for name, u, v in
               zip(("y", "dx", "ds"), fba(x5, g5, s), fbb(x5, g5, s))
               if np.array_equal(np.asarray(u), np.asarray(v))]
      if not np.array_equal(np.asarray(fa(x5, s)), np.asarray(fb(x5, s))):
        equal = [e for e in equal if e != "y"]
      same = "yes" if len(equal) == 3 else ("only " + ", ".join(equal) if equal else "no")
      host = np.asarray(x)
      dst = np.empty_like(host)
      plus = jax.jit(lambda v: v + 1)
      times = time_in_turns({
          "copyto": (lambda: np.copyto(dst, host), ()),
          "plus": (plus, (x,)),
          "a": (fa, (x5, s)), "b": (fb, (x5, s)),
          "a_fb": (fba, (x5, g5, s)), "b_fb": (fbb, (x5, g5, s))}, a.samples, a.inner,
          swap=(("a", "b"), ("a_fb", "b_fb")))
      t = {k: statistics.median(v) for k, v in times.items()}
      copy = min(t["copyto"], t["plus"])
      lines.append(
          f"| {layout_name} | {mode} | {t['copyto']:.3f} | {t['plus']:.3f} | "
          f"{t['a']:.3f} | {t['b']:.3f} | {paired_ratio(times, 'b', 'a'):.2f} | "
          f"{t['a_fb']:.3f} | {t['b_fb']:.3f} | "
          f"{paired_ratio(times, 'b_fb', 'a_fb'):.2f} | {t['b'] / copy:.2f} | "
          f"{t['b_fb'] / (2.5 * copy):.2f} | {same} |")
      print(lines[-1], flush=True)
  print("\n".join(lines[:4]))
  if a.out:
    with open(a.out, "w") as fh:
      fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
