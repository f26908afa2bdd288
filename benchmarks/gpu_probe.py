"""Where a GPU forward+backward's time goes: each part timed alone, then the
device's own record of every kernel.

`bench.py --gpu` times whole calls; this splits them. For each case and CUDA
kernel family (walk, tiled) and mode (active, sparse, integer), in one
process and in turns with a copy of the same bytes:

  fwd    the forward call alone
  bwd    the backward alone (the VJP of fixed residuals; XLA drops the
         forward, which its gradient does not read)
  f+b    both, as bench.py times them

then, where the runtime lets the profiler see the GPU (CUPTI; it may not
under gVisor), one traced forward+backward per family and mode with the time
of every kernel and copy the device ran, summed by name. The timings print
first, so a profiler that hangs costs only the trace.

  python benchmarks/gpu_probe.py                 # on a machine with a GPU
  python benchmarks/gpu_probe.py --trace-modes   # the timings only
"""

import argparse
import collections
import glob
import tempfile

import jax
import jax.numpy as jnp

import jaxshift
from jaxshift._src import ffi as jaxshift_ffi

from bench import forward_backward, time_all

# name, shape, channel axis, strides
CASES = {
    "nhwc": ("64x56x56x256 NHWC f32", (64, 56, 56, 256), -1, 1),
    "nchw": ("128x512x28x28 NCHW f32", (128, 512, 28, 28), 1, 1),
    "3d": ("16x8x28x28x64 3-D NDHWC f32", (16, 8, 28, 28, 64), -1, 1),
    "stride": ("64x56x56x256 NHWC stride 2", (64, 56, 56, 256), -1, 2),
}


def functions(shape, cax, strides, mode):
  """The forward, the backward alone and both, with their arguments."""
  x = jax.random.normal(jax.random.key(0), shape, jnp.float32)
  s = jax.random.uniform(jax.random.key(1), (shape[cax], len(shape) - 2), jnp.float32, -2, 2)
  f = lambda x, s: jaxshift.shift(x, s, mode=mode, strides=strides, channel_axis=cax,
                                  impl="ffi")
  g = jax.random.normal(jax.random.key(2), jax.eval_shape(f, x, s).shape, jnp.float32)
  bwd = lambda x, s, g: jax.vjp(f, x, s)[1](g)
  return {"fwd": (f, (x, s)), "bwd": (bwd, (x, s, g)), "f+b": (forward_backward(f), (x, s, g))}


def compiled(family, fn, args):
  """`fn` compiled with CUDA kernel family `family` (a new trace)."""
  with jaxshift_ffi.kernel_choice("cuda", family):
    return jax.jit(lambda *a: fn(*a)).lower(*args).compile()


def device_kernels(path):
  """Total ns and count of each event name on the GPU planes of an xplane."""
  data = jax.profiler.ProfileData.from_file(path)
  totals = collections.defaultdict(lambda: [0.0, 0])
  lines = set()
  for plane in data.planes:
    if "GPU" not in plane.name and "gpu" not in plane.name:
      continue
    for line in plane.lines:
      lines.add(f"{plane.name}/{line.name}")
      if "XLA Ops" in line.name or "Modules" in line.name or "Steps" in line.name:
        continue
      for e in line.events:
        t = totals[e.name]
        t[0] += e.duration_ns
        t[1] += 1
  return totals, sorted(lines)


def trace(family, fn, args, calls=5):
  """Per-kernel device times of `calls` calls of `fn` (ms per call)."""
  c = compiled(family, fn, args)
  jax.block_until_ready(c(*args))
  d = tempfile.mkdtemp()
  with jax.profiler.trace(d):
    for _ in range(calls):
      out = c(*args)
    jax.block_until_ready(out)
  files = glob.glob(d + "/**/*.xplane.pb", recursive=True)
  if not files:
    print("  no trace written")
    return
  totals, lines = device_kernels(files[0])
  if not totals:
    print(f"  no GPU events (lines seen: {lines[:6]})")
    return
  for name, (ns, n) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:12]:
    print(f"  {ns / calls / 1e6:8.4f} ms/call  x{n // calls:<3d} {name[:110]}")


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
  p.add_argument("--modes", nargs="*", default=["active", "sparse", "integer"])
  p.add_argument("--families", nargs="*", default=["walk", "tiled"])
  p.add_argument("--samples", type=int, default=7)
  p.add_argument("--inner", type=int, default=5)
  p.add_argument("--trace-modes", nargs="*", default=None,
                 help="the modes traced (default: --modes; none: no trace)")
  a = p.parse_args()
  print(f"device: {jax.devices()[0].device_kind}; jax {jax.__version__}; "
        f"{jaxshift.build_info()}", flush=True)
  print("| case | mode | copy ms | " + " | ".join(
      f"{fam} {part}" for fam in a.families for part in ("fwd", "bwd", "f+b")) + " |")
  print("|" + "---|" * (3 + 3 * len(a.families)))
  for key in a.cases:
    name, shape, cax, strides = CASES[key]
    for mode in a.modes:
      fns = functions(shape, cax, strides, mode)
      x = fns["fwd"][1][0]
      cases = {"copy": (jax.jit(lambda x: x + 1.0), (x,))}
      for fam in a.families:
        for part, (fn, args) in fns.items():
          cases[f"{fam} {part}"] = (compiled(fam, fn, args), args)
      t = time_all(cases, a.samples, a.inner)
      print(f"| {name} | {mode} | {t['copy']:.3f} | " + " | ".join(
          f"{t[f'{fam} {part}']:.3f}" for fam in a.families for part in fns) + " |", flush=True)
  for key in a.cases:
    name, shape, cax, strides = CASES[key]
    for mode in a.modes if a.trace_modes is None else a.trace_modes:
      fns = functions(shape, cax, strides, mode)
      for fam in a.families:
        print(f"trace: {name}, {mode}, {fam}, forward+backward", flush=True)
        trace(fam, *fns["f+b"])


if __name__ == "__main__":
  main()
