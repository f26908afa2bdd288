"""Benchmark: the pure-jnp path (``impl="xla"``) against the kernel and a copy.

Prints one Markdown table (and writes it with --out). For each shape (channels
last, float32, active mode unless --modes) every column comes from the same
run, timed in turns with `bench.time_in_turns`: a plain memory copy
(``np.copyto``) and XLA's ``x + 1`` on the same bytes (on a small CPU either
can be the faster one; the faster is the floor), the CPU kernel
(``impl="ffi"``) and the jnp path (``impl="xla"``, what every backend without a
kernel runs), forward and forward+backward (the VJP of a fixed cotangent).
``--baseline REV`` adds the jnp path of an earlier commit (its
``jaxshift/_src/spec.py``, run through the same custom VJP) as a column,
where its memory allows.

  python benchmarks/jnp_path.py
  python benchmarks/jnp_path.py --baseline 99b917a --out benchmarks/results/x.md
"""

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (benchmarks/bench.py: the timer)

import jaxshift  # noqa: E402
from jaxshift._src import layout  # noqa: E402

SHAPES = ["8x32x32x64", "1x100000x4", "2x512x512x16"]


def load_spec(rev):
  """`jaxshift._src.spec` as it was at git revision `rev`."""
  src = subprocess.run(["git", "show", f"{rev}:jaxshift/_src/spec.py"],
                       capture_output=True, text=True, check=True).stdout
  path = os.path.join(tempfile.mkdtemp(), f"spec_{rev}.py")
  with open(path, "w") as fh:
    fh.write(src)
  module_spec = importlib.util.spec_from_file_location(f"spec_{rev}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def with_vjp(spec_module, call):
  """``f(x, s)`` with the module's forward and backward as its custom VJP."""
  @jax.custom_vjp
  def f(x, s):
    return spec_module.forward(call, x, s)

  f.defvjp(lambda x, s: (spec_module.forward(call, x, s), (x, s)),
           lambda res, g: spec_module.backward(call, *res, g))
  return f


def row(shape, mode, samples, inner, baseline):
  key = jax.random.key(0)
  x = jax.random.normal(key, shape, jnp.float32)
  c, ndim = shape[-1], len(shape) - 2
  s = jax.random.uniform(jax.random.key(1), (c, ndim), jnp.float32, -2, 2)
  f = {
      "kernel": lambda x, s: jaxshift.shift(x, s, mode=mode, impl="ffi"),
      "jnp": lambda x, s: jaxshift.shift(x, s, mode=mode, impl="xla"),
  }
  # The earlier dense path needs C * L**2 elements per axis: skipped where
  # that passes 1 GiB.
  if baseline is not None and c * max(shape[1:-1]) ** 2 * 4 <= 2**30:
    call = layout.make_call(x, s, mode=mode, padding="zeros", channel_axis=-1,
                            strides=1, impl="xla")
    f["baseline"] = with_vjp(baseline, call)
  g = jax.random.normal(jax.random.key(3), shape, jnp.float32)
  cases = bench.copy_cases(x)
  for name, fn in f.items():
    cases[name] = (jax.jit(fn), (x, s))
    cases[name + "+bwd"] = (jax.jit(bench.forward_backward(fn)), (x, s, g))
  times = bench.time_in_turns(cases, samples, inner)
  return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--shapes", nargs="*", default=SHAPES,
                 help="channels-last sizes, e.g. 1x100000x4 (N, L, C)")
  p.add_argument("--modes", nargs="*", default=["active"],
                 choices=list(jaxshift.MODES))
  p.add_argument("--baseline", default=None, help="git revision to compare")
  p.add_argument("--samples", type=int, default=9)
  p.add_argument("--inner", type=int, default=2)
  p.add_argument("--out", default=None, help="also write the table here")
  a = p.parse_args(argv)
  if not jaxshift.kernels_available("cpu"):
    sys.exit("jaxshift's CPU kernel is not built; see the README.")
  baseline = load_spec(a.baseline) if a.baseline else None
  b = f" | jnp@{a.baseline} fwd | jnp@{a.baseline} f+b" if baseline else ""
  lines = [
      bench.cpu_header(),
      f"median of {a.samples} rounds x {a.inner} calls, timed in turns; ms; "
      "floor = the faster copy (f+b floor: 2.5 copies)",
      "",
      "| shape | mode | copyto | x+1 | kernel fwd | jnp fwd | jnp/kernel fwd"
      " | jnp fwd/floor | kernel f+b | jnp f+b | jnp/kernel f+b" + b + " |",
      "|" + "---|" * (11 + 2 * bool(baseline)),
  ]
  print("\n".join(lines), flush=True)
  for shape_s in a.shapes:
    shape = tuple(int(v) for v in shape_s.split("x"))
    for mode in a.modes:
      r = row(shape, mode, a.samples, a.inner, baseline)
      floor = min(r["copyto"], r["x+1"])
      extra = ""
      if baseline:
        extra = (f" | {r['baseline']:.2f} | {r['baseline+bwd']:.2f}"
                 if "baseline" in r else " | (too large) | (too large)")
      line = (f"| {shape_s} | {mode} | {r['copyto']:.2f} | {r['x+1']:.2f} | "
              f"{r['kernel']:.2f} | {r['jnp']:.2f} | "
              f"{r['jnp'] / r['kernel']:.2f}x | {r['jnp'] / floor:.1f}x | "
              f"{r['kernel+bwd']:.2f} | {r['jnp+bwd']:.2f} | "
              f"{r['jnp+bwd'] / r['kernel+bwd']:.2f}x{extra} |")
      bench.emit(lines, line)
  bench.write_table(a.out, lines)


if __name__ == "__main__":
  main()
