"""Benchmark: the CPU lanes' column tiles (or window rows) on and off, in one process.

The channels-last CPU kernel splits a task's columns into tiles where the
rows that a line of x (or g) is read from would overflow L1 (`tile_columns`
in xla_ffi/cpu/lanes.h). The library exports its tiles' L1 budget
(`jaxshift_cpu_tile_budget`: bytes, 0 = no tiles), so this script times the
same library, the same calls and inputs, with tiles and without, in turns
(order reversed every other round): the only difference between the columns
is the tiling. A plain copy (`np.copyto`) and XLA's `x + 1` of the same
bytes are timed in the same turns; the faster is the floor.

`--setting windows` times the window rows (`window_row`, `window_move`: the
2-D float32 forward without gathers, NOTES.md v40; `jaxshift_cpu_windows`,
1 or 0) on against off the same way, the tiles at the library's default.

  python benchmarks/column_tiles.py
  python benchmarks/column_tiles.py --shapes 1x56x56x64,32x32x32x64 --out t.md
  python benchmarks/column_tiles.py --strides 2 --modes active
  python benchmarks/column_tiles.py --shapes 2x56x56x512 --dtype bfloat16
  python benchmarks/column_tiles.py --budget 21504   # tiles of a 21 KB budget
  python benchmarks/column_tiles.py --setting windows --reach 2 --modes active,sparse,integer

The tiles run at `--budget` (default 32 KB, the library's kTileBudget)
whatever the library's default on this CPU, which is that budget only where
L1 holds 48 KB or more and no tiles elsewhere (cpu/isa.h; NOTES.md, v39).

Columns: ms per call (median over rounds); `on / off`: the median over
rounds of the ratio within a round; `% floor`: the floor over the `on`
time (forward: one copy of x's bytes; backward: 1.5 copies, reading x and g
and writing dx; with strides the output's bytes count as they are).
"""

import argparse
import datetime
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


# --setting: the library's exported setting (ffi.cpu_setting) and its value
# for `off`; `on` is --budget for the tiles, 1 for the windows.
SETTINGS = {"tiles": ("jaxshift_cpu_tile_budget", 0),
            "windows": ("jaxshift_cpu_windows", 0)}


def with_setting(fn, setting, value):
  """`fn` with the setting at `value` first: the kernel reads it when a
  call runs, and every call of a sample (bench.time_in_turns) runs before
  the next function's first."""
  def run(*args):
    setting(value)
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
  p.add_argument("--reach", type=float, default=3.0,
                 help="shifts uniform in [-R, R) per channel and axis (the window rows take "
                      "groups whose integer parts span at most 4 values: R <= 2)")
  p.add_argument("--setting", default="tiles", choices=sorted(SETTINGS),
                 help="what to turn on and off (default: the column tiles)")
  p.add_argument("--out", default=None)
  args = p.parse_args(argv)
  if args.budget <= 0:
    p.error(f"--budget: expected a positive number of bytes; got {args.budget}")
  jax.config.update("jax_platforms", "cpu")
  symbol, off = SETTINGS[args.setting]
  setting = ffi_module.cpu_setting(symbol)
  on = args.budget if args.setting == "tiles" else 1
  default = setting(-1)
  rng = np.random.default_rng(0)
  lines = [
      (f"Column tiles ({args.budget} bytes of L1; this CPU's default {default}) against none"
       if args.setting == "tiles" else f"Window rows on against off (this library's default "
       f"{default})") + f", same library, {args.dtype}; cpu, "
      f"jax {jax.__version__}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
      f"median of {args.samples} rounds, in turns (order reversed every other round); ms",
      "",
      "| shape | mode | pass | np.copyto | x + 1 | off | on | on / off | % floor |",
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
    s = jnp.asarray(rng.uniform(-args.reach, args.reach, (c, 2)).astype(np.float32))
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
                 "off": (with_setting(fn, setting, off), (x, s)),
                 "on": (with_setting(fn, setting, on), (x, s))}
        times = bench.time_in_turns(cases, args.samples, inner)
        setting(default)
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = statistics.median(a / b for a, b in zip(times["on"], times["off"]))
        floor = copies * min(med["copyto"], med["x + 1"])
        label = f"{text} stride {t}" if t > 1 else text
        row = (f"| {label} | {mode} | {name} | {med['copyto']:.3f} | "
               f"{med['x + 1']:.3f} | {med['off']:.3f} | {med['on']:.3f} | "
               f"{ratio:.2f} | {100 * floor / med['on']:.0f} |")
        print(row, flush=True)
        lines.append(row)
  if args.out:
    with open(args.out, "w") as fh:
      fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
