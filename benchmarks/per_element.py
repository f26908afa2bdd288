"""Benchmark: the kernel's time an element across shapes and dtypes, in turns.

bench.py times each row's kernel in turns with its own copies, so two rows
(bfloat16 and float32, or 64 and 1024 channels) are compared across minutes,
and single runs on a shared VM move by up to 1.8x in minutes
(benchmarks/NOTES.md, v35). This script times every row's jitted
`jaxshift.shift` and `np.copyto` of the same bytes in one loop of rounds
(order reversed every other round), so rows can be compared with each other:
ns an element, the median over rounds, with the lowest and highest round.

  python benchmarks/per_element.py 32x56x56x64:bfloat16 2x56x56x1024:bfloat16
  taskset -c 0 python benchmarks/per_element.py --modes active,sparse \\
      32x56x56x64:float32 2x56x56x1024:float32

Rows are NHWC ``shape:dtype``; shifts uniform in [-1.5, 1.5) per channel
and axis (2-D), zeros padding.
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxshift


def _row(spec, mode, rng):
  """(label, call, elements) for the kernel and for np.copyto of one spec."""
  text, dtype = spec.split(":")
  shape = tuple(int(v) for v in text.split("x"))
  x = jnp.asarray(rng.standard_normal(shape), dtype)
  s = jnp.asarray(rng.uniform(-1.5, 1.5, (shape[-1], 2)), jnp.float32)
  f = jax.jit(lambda x, s: jaxshift.shift(x, s, mode=mode, impl="ffi"))
  host = np.asarray(x)
  dst = np.empty_like(host)
  return [(f"{text} {dtype} {mode}", lambda: f(x, s).block_until_ready(), x.size),
          (f"{text} {dtype} np.copyto", lambda: np.copyto(dst, host), x.size)]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("specs", nargs="+", help="NHWC shape:dtype, e.g. 2x56x56x1024:bfloat16")
  p.add_argument("--modes", default="active", help="comma-separated: active,sparse,integer")
  p.add_argument("--rounds", type=int, default=15)
  p.add_argument("--calls", type=int, default=10, help="a round's calls of each row (median)")
  args = p.parse_args(argv)
  jax.config.update("jax_platforms", "cpu")
  rng = np.random.default_rng(0)
  modes = args.modes.split(",")
  for mode in modes:
    if mode not in jaxshift.MODES:
      p.error(f"--modes: expected some of {', '.join(jaxshift.MODES)}; got {mode!r}")
  rows = [r for mode in modes for spec in args.specs for r in _row(spec, mode, rng)]
  for _, call, _ in rows:  # compile and warm
    for _ in range(3):
      call()
  samples = [[] for _ in rows]
  for r in range(args.rounds):
    order = range(len(rows)) if r % 2 == 0 else reversed(range(len(rows)))
    for k in order:
      _, call, n = rows[k]
      t = []
      for _ in range(args.calls):
        t0 = time.perf_counter()
        call()
        t.append(time.perf_counter() - t0)
      samples[k].append(np.median(t) / n * 1e9)
  print(f"jax {jax.__version__}; {args.rounds} rounds of {args.calls} calls a row, "
        "in turns (order reversed every other round); ns an element\n")
  print("| row | median | lowest-highest round |")
  print("|---|---|---|")
  for (label, _, _), t in zip(rows, samples):
    print(f"| {label} | {np.median(t):.3f} | {min(t):.3f}-{max(t):.3f} |")


if __name__ == "__main__":
  main()
