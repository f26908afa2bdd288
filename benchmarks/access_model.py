"""The memory-access model of the CUDA kernels, from the host emulator.

Runs the CUDA kernels' own code on the CPU (``JAXSHIFT_CPU_KERNEL=cuda-emulated``,
xla_ffi/emulator/), both families (walk and tiled), at the benchmark shapes with one sample (every sample is
the same work; the ratios do not depend on the batch) and prints, per kernel:

* global loads and stores: 32-byte sectors per warp request against the
  ideal ``ceil(distinct bytes / 32)`` (``sectors/ideal``: 1.00 is perfect
  coalescing);
* shared memory: wavefronts against the ideal (``waves/ideal``; 1.00: no bank
  conflicts) and the worst request's ways;
* vector (8- and 16-byte) accesses and how many were misaligned;
* DRAM: the distinct sectors read and written (each byte once, were every
  re-read an L2 hit) against the bytes the call must move, and the L2
  amplification (sectors requested / distinct sectors read).

  python benchmarks/access_model.py                  # the table
  python benchmarks/access_model.py --out FILE.md    # and write it
  python benchmarks/access_model.py --quick          # small shapes (the test)

Every kernel of both families is modelled: the walk family (the GPU default
today: walks, element-wise kernels, shift-gradient chunks) and the tiled one,
forward and backward, and the finish of each backward.
"""

import argparse
import ctypes
import json
import os
import sys
import time

os.environ.setdefault("JAXSHIFT_CPU_KERNEL", "cuda-emulated")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxshift  # noqa: E402
from jaxshift._src import ffi  # noqa: E402

FULL = [  # (name, shape per sample, channel_axis, strides)
    ("56x56x256", (1, 56, 56, 256), -1, 1),
    ("56x56x256", (1, 256, 56, 56), 1, 1),
    ("28x28x512", (1, 28, 28, 512), -1, 1),
    ("28x28x512", (1, 512, 28, 28), 1, 1),
    ("8x28x28x64 3-D", (1, 8, 28, 28, 64), -1, 1),
    ("8x28x28x64 3-D", (1, 64, 8, 28, 28), 1, 1),
    ("56x56x256 stride 2", (1, 56, 56, 256), -1, 2),
    ("56x56x256 stride 2", (1, 256, 56, 56), 1, 2),
]
QUICK = [
    ("24x24x64", (1, 24, 24, 64), -1, 1),
    ("24x24x64", (1, 64, 24, 24), 1, 1),
]


FAMILIES = ffi.KERNEL_CHOICES["cuda"][1]  # ("walk", "tiled")


class Model:
  """The emulator's C interface (xla_ffi/emulator/handlers.cc)."""

  def __init__(self):
    if not ffi.target("cpu", "forward").startswith("jaxshift_forward_cuda_emulated"):
      sys.exit("set JAXSHIFT_CPU_KERNEL=cuda-emulated (or leave it unset)")
    if not jaxshift.kernels_available("cpu"):
      sys.exit("libjaxshift_cuda_emulated.so is not built")
    self.lib = ctypes.CDLL(str(ffi.library_path("cpu")))
    self.lib.jaxshift_cuda_emulated_stats.restype = ctypes.c_int

  def run(self, fn) -> dict:
    """Runs fn() (compiled) with recording on; returns {kernel: stats}."""
    self.lib.jaxshift_cuda_emulated_configure(1, 0)
    self.lib.jaxshift_cuda_emulated_reset()
    try:
      jax.block_until_ready(fn())
    finally:
      self.lib.jaxshift_cuda_emulated_configure(0, 0)
    n = self.lib.jaxshift_cuda_emulated_stats(None, 0)
    buf = ctypes.create_string_buffer(n)
    self.lib.jaxshift_cuda_emulated_stats(buf, n)
    return json.loads(buf.value.decode())


def ratio(a, b):
  return a / b if b else float("nan")


def row(case, dtype, layout, mode, kernel, s, must_move):
  """One table row: the model's numbers for kernel `kernel`."""
  # Per launch (XLA may run a call more than once: a recorded run can hold two).
  dram = 32 * (s["ld_distinct_sectors"] + s["st_distinct_sectors"]) / max(1, s["launches"])
  return dict(
      case=case, dtype=dtype, layout=layout, mode=mode, kernel=kernel,
      ld=ratio(s["ld_sectors"], s["ld_ideal"]),
      ld_req=ratio(s["ld_sectors"], s["ld_requests"]),
      st=ratio(s["st_sectors"], s["st_ideal"]),
      sh=ratio(s["sh_wavefronts"], s["sh_ideal"]), ways=s["sh_worst"],
      vec=s["vec_accesses"], misaligned=s["vec_misaligned"],
      dram=ratio(dram, must_move),
      l2=ratio(s["ld_sectors"], s["ld_distinct_sectors"]))


def model_case(model, case, shape, cax, strides, dtype, mode, families):
  x = jnp.asarray(np.random.default_rng(0).normal(size=shape), dtype)
  c = shape[cax]
  nd = len(shape) - 2
  s = jax.random.uniform(jax.random.key(1), (c, nd), jnp.float32, -2, 2)
  layout = "NHWC" if cax == -1 else "NCHW"
  rows = []
  for family in families:
    # A new function per family: jit would reuse the other family's trace.
    f = lambda x, s: jaxshift.shift(x, s, mode=mode, strides=strides,
                                    channel_axis=cax, impl="ffi")
    with ffi.kernel_choice("cuda", family):  # the emulated family
      forward = jax.jit(f).lower(x, s).compile()
      y = jax.block_until_ready(forward(x, s))  # compiled and done before recording
      g = jnp.asarray(np.random.default_rng(1).normal(size=y.shape), dtype)
      vjp = jax.jit(lambda x, s, g: jax.vjp(f, x, s)[1](g)).lower(x, s, g).compile()
    for kernel, st in model.run(lambda: forward(x, s)).items():
      rows.append(row(case, dtype, layout, mode, kernel, st, x.nbytes + y.nbytes))
    # The backward: x and g read, dx written (+ the small ds).
    for kernel, st in model.run(lambda: vjp(x, s, g)).items():
      if "forward" not in kernel and "move" not in kernel:
        rows.append(row(case, dtype, layout, mode, kernel, st, 2 * x.nbytes + g.nbytes))
  return rows


HEADER = ("| case | dtype | layout | mode | kernel | ld sectors/ideal | "
          "ld sectors/request | st sectors/ideal | shared waves/ideal | worst ways | "
          "vector accesses (misaligned) | DRAM bytes/needed | L2 amplification |")


def fmt(r):
  return (f"| {r['case']} | {r['dtype']} | {r['layout']} | {r['mode']} | {r['kernel']} | "
          f"{r['ld']:.2f} | {r['ld_req']:.1f} | {r['st']:.2f} | {r['sh']:.2f} | {r['ways']} | "
          f"{r['vec']} ({r['misaligned']}) | {r['dram']:.2f} | {r['l2']:.2f} |")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--quick", action="store_true", help="small shapes")
  p.add_argument("--out", help="also write the table to this file")
  p.add_argument("--json", help="also write the rows as JSON")
  args = p.parse_args(argv)
  model = Model()
  cases = QUICK if args.quick else FULL
  rows = []
  start = time.time()
  print(HEADER)
  print("|" + "---|" * (HEADER.count("|") - 1))
  for case, shape, cax, strides in cases:
    plain = strides == 1 and len(shape) == 4  # the other shapes: float32 active only
    for dtype in ("float32", "bfloat16") if plain else ("float32",):
      for mode in ("active", "sparse") if plain else ("active",):
        for r in model_case(model, case, shape, cax, strides, dtype, mode, FAMILIES):
          rows.append(r)
          print(fmt(r), flush=True)
  print(f"\n({len(rows)} rows in {time.time() - start:.0f} s; one sample per shape; "
        f"uniform(-2, 2) shifts as benchmarks/bench.py)")
  if args.out:
    with open(args.out, "w") as fh:
      fh.write(HEADER + "\n|" + "---|" * (HEADER.count("|") - 1) + "\n")
      fh.write("\n".join(fmt(r) for r in rows) + "\n")
  if args.json:
    with open(args.json, "w") as fh:
      json.dump(rows, fh, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
