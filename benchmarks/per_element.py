"""Benchmark: the kernel's time an element across shapes and dtypes, in turns.

bench.py times each row's kernel in turns with its own copies, so two rows
(bfloat16 and float32, or 64 and 1024 channels) are compared across minutes,
and single runs on a shared VM move by up to 1.8x in minutes
(benchmarks/NOTES.md, v35). This script times every row's jitted
`jaxshift.shift` and `np.copyto` of the same bytes in one loop of rounds
(bench.py's `time_in_turns`: order reversed every other round), so rows can
be compared with each other: ns an element, the median over rounds, with the
lowest and highest round.

  python benchmarks/per_element.py 32x56x56x64:bfloat16 2x56x56x1024:bfloat16
  taskset -c 0 python benchmarks/per_element.py --modes active,sparse \\
      32x56x56x64:float32 2x56x56x1024:float32

Rows are NHWC ``shape:dtype``; shifts uniform in [-1.5, 1.5) per channel
and axis (2-D), zeros padding.
"""
import argparse
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


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("specs", nargs="+", help="NHWC shape:dtype, e.g. 2x56x56x1024:bfloat16")
  p.add_argument("--modes", default="active", help="comma-separated: active,sparse,integer")
  p.add_argument("--rounds", type=int, default=15)
  p.add_argument("--calls", type=int, default=10, help="back-to-back calls in a round's sample")
  args = p.parse_args(argv)
  modes = args.modes.split(",")
  for mode in modes:
    if mode not in jaxshift.MODES:
      p.error(f"--modes: expected some of {', '.join(jaxshift.MODES)}; got {mode!r}")
  jax.config.update("jax_platforms", "cpu")
  rng = np.random.default_rng(0)
  cases, elements = {}, {}
  for spec in args.specs:
    text, dtype = spec.split(":")
    shape = tuple(int(v) for v in text.split("x"))
    x = jnp.asarray(rng.standard_normal(shape), dtype)
    s = jnp.asarray(rng.uniform(-1.5, 1.5, (shape[-1], 2)), jnp.float32)
    host = np.asarray(x)
    dst = np.empty_like(host)
    row = {f"{text} {dtype} {mode}": (jax.jit(functools.partial(jaxshift.shift, mode=mode,
                                                                impl="ffi")), (x, s))
           for mode in modes}
    row[f"{text} {dtype} np.copyto"] = (lambda dst=dst, host=host, x=x: np.copyto(dst, host) or x,
                                        ())
    cases.update(row)
    elements.update(dict.fromkeys(row, x.size))
  times = bench.time_in_turns(cases, args.rounds, args.calls)
  print(f"jax {jax.__version__}; {args.rounds} rounds of {args.calls} back-to-back calls a "
        "row, in turns (order reversed every other round); ns an element\n")
  print("| row | median | lowest-highest round |")
  print("|---|---|---|")
  for name, t in times.items():
    ns = [v * 1e6 / elements[name] for v in t]
    print(f"| {name} | {statistics.median(ns):.3f} | {min(ns):.3f}-{max(ns):.3f} |")


if __name__ == "__main__":
  main()
