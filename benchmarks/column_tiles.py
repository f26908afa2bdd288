"""Benchmark: the CPU lanes' column tiles on and off, in one process.

The channels-last CPU kernel splits a task's columns into tiles where the
rows that a line of x (or g) is read from would overflow L1 (`tile_columns`
in xla_ffi/cpu/lanes.h). The library exports its tiles' L1 budget
(`jaxshift_cpu_tile_budget`: bytes, 0 = no tiles), so this script times the
same library, the same calls and inputs, with tiles and without, in turns
(order reversed every other round): the only difference between the columns
is the tiling. A plain copy (`np.copyto`) and XLA's `x + 1` of the same
bytes are timed in the same turns; the faster is the floor.

  python benchmarks/column_tiles.py
  python benchmarks/column_tiles.py --shapes 1x56x56x64,32x32x32x64 --out t.md
  python benchmarks/column_tiles.py --strides 2 --modes active
  python benchmarks/column_tiles.py --shapes 2x56x56x512 --dtype bfloat16
  python benchmarks/column_tiles.py --budget 21504   # tiles of a 21 KB budget

The tiles run at `--budget` (default 32 KB, the library's kTileBudget)
whatever the library's default on this CPU, which is that budget only where
L1 holds 48 KB or more and no tiles elsewhere (cpu/isa.h; NOTES.md, v39).

Columns: ms per call (median over rounds); `tiles / none`: the median over
rounds of the ratio within a round; `% floor`: the floor over the tiled
time (forward: one copy of x's bytes; backward: 1.5 copies, reading x and g
and writing dx; with strides the output's bytes count as they are).
"""

import argparse
import ctypes
import datetime
import functools
import os
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (benchmarks/bench.py: the timer)

import jaxshift  # noqa: E402
from jaxshift._src import ffi as ffi_module  # noqa: E402

SHAPES = ("1x32x32x64,1x56x56x64,1x112x112x32,8x32x32x64,32x32x32x64,"
          "32x32x32x48,32x16x16x96,2x512x512x16")


@functools.cache
def _budget_setter():
  fn = ctypes.CDLL(str(ffi_module.library_path("cpu"))).jaxshift_cpu_tile_budget
  fn.restype, fn.argtypes = ctypes.c_int64, [ctypes.c_int64]
  return fn


def tile_budget(nbytes: int) -> int:
  """Sets the CPU lanes' column tiles' L1 budget (bytes; 0: no tiles; < 0
  only asks) and returns the one in use. The kernel reads it when a call
  runs: every call of a sample (bench.time_in_turns) runs before the next
  function's first."""
  return _budget_setter()(nbytes)


def with_budget(fn, nbytes):
  def run(*args):
    tile_budget(nbytes)
    return fn(*args)
  return run


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--shapes", default=SHAPES, help="NHWC shapes, x-separated")
  p.add_argument("--dtype", default="float32",
                 choices=["float32", "bfloat16", "float16", "float64"])
  p.add_argument("--modes", default="active,sparse")
  p.add_argument("--strides", type=int, default=1, help="on both axes")
  p.add_argument("--samples", type=int, default=21)
  p.add_argument("--budget", type=int, default=32 << 10,
                 help="the tiles' L1 budget in bytes (default: the library's kTileBudget, "
                      "which it uses by default only where L1 holds 48 KB or more)")
  p.add_argument("--out", default=None)
  args = p.parse_args(argv)
  if args.budget <= 0:
    p.error(f"--budget: expected a positive number of bytes; got {args.budget}")
  jax.config.update("jax_platforms", "cpu")
  default = tile_budget(-1)
  rng = np.random.default_rng(0)
  lines = [
      f"Column tiles ({args.budget} bytes of L1; this CPU's default {default}) against none, "
      f"same library, {args.dtype}; cpu, "
      f"jax {jax.__version__}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
      f"median of {args.samples} rounds, in turns (order reversed every other round); ms",
      "",
      "| shape | mode | pass | np.copyto | x + 1 | none | tiles | tiles / none | % floor |",
      "|---|---|---|---|---|---|---|---|---|"]
  print("\n".join(lines), flush=True)
  for text in args.shapes.split(","):
    shape = tuple(int(v) for v in text.split("x"))
    c = shape[-1]
    x = jnp.asarray(rng.standard_normal(shape, np.float32), args.dtype)
    t = args.strides
    out_shape = (shape[0], -(-shape[1] // t), -(-shape[2] // t), c)
    g = jnp.asarray(rng.standard_normal(out_shape, np.float32), args.dtype)
    out = np.prod(out_shape) / np.prod(shape)  # the output's bytes over x's
    s = jnp.asarray(rng.uniform(-3, 3, (c, 2)).astype(np.float32))
    host = np.asarray(x)
    dst = np.empty_like(host)
    inner = max(2, int(4e6 // x.size))
    for mode in args.modes.split(","):
      f = lambda x, s, mode=mode: jaxshift.shift(  # noqa: E731
          x, s, mode=mode, strides=t, impl="ffi")
      passes = {"forward": (jax.jit(f), (1 + out) / 2),
                "backward": (jax.jit(lambda x, s, f=f: jax.vjp(f, x, s)[1](g)),
                             (2 + out) / 2)}
      for name, (fn, copies) in passes.items():
        cases = {"copyto": (lambda: np.copyto(dst, host) or x, ()),
                 "x + 1": (jax.jit(lambda x: x + 1), (x,)),
                 "none": (with_budget(fn, 0), (x, s)),
                 "tiles": (with_budget(fn, args.budget), (x, s))}
        times = bench.time_in_turns(cases, args.samples, inner)
        tile_budget(default)
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = statistics.median(a / b for a, b in zip(times["tiles"], times["none"]))
        floor = copies * min(med["copyto"], med["x + 1"])
        label = f"{text} stride {t}" if t > 1 else text
        row = (f"| {label} | {mode} | {name} | {med['copyto']:.3f} | "
               f"{med['x + 1']:.3f} | {med['none']:.3f} | {med['tiles']:.3f} | "
               f"{ratio:.2f} | {100 * floor / med['tiles']:.0f} |")
        print(row, flush=True)
        lines.append(row)
  if args.out:
    with open(args.out, "w") as fh:
      fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
