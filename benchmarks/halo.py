"""Spatially sharded shift: halo exchange against gathering the split axes.

A shift layer on a 3-D volume split over a 2x2x2 mesh (or H over 8) of CPU
devices: per-device memory XLA plans for the compiled step (arguments +
outputs + temporaries, `Compiled.memory_analysis`, the program one device
runs) and the time of a forward and of a forward+backward, for

- ``halo``: traced shifts with ``max_shift`` (the exchange, the default
  once a bound is given);
- ``gather``: the same call with no bound, which gathers the split axes on
  every device (what jaxshift did before halos);
- ``one device``: the unsharded volume, for scale.

It prints a table (markdown) and says whether each step fits a per-device
budget (``--budget-mb``; default twice the volume: a device that could hold
``x`` and the output whole, and nothing more).
Times are medians of ``--repeats`` calls after a warm-up, synchronised.
The 8 "devices" share this machine's cores, so times compare the work and
traffic of the two programs, not a real multi-device speed-up.

  python benchmarks/halo.py                      # 2x2x2 mesh, 128^3 x 8
  python benchmarks/halo.py --mesh 8 --shape 1,512,256,16
"""

import argparse
import os
import statistics
import time

import numpy as np


def _args(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--mesh", default="2,2,2",
                 help="mesh shape over the spatial axes, major first (8 devices)")
  p.add_argument("--shape", default="1,128,128,128,8",
                 help="x: batch, spatial axes..., channels (channels-last)")
  p.add_argument("--mode", default="active")
  p.add_argument("--padding", default="zeros")
  p.add_argument("--max-shift", type=float, default=2.0)
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--budget-mb", type=float, default=None)
  return p.parse_args(argv)


def _median_time(f, *args, repeats):
  import jax
  jax.block_until_ready(f(*args))  # compile and warm up
  jax.block_until_ready(f(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def _memory_mb(f, *args):
  m = f.lower(*args).compile().memory_analysis()
  total = (m.argument_size_in_bytes + m.output_size_in_bytes +
           m.temp_size_in_bytes - m.alias_size_in_bytes)
  return total / 2**20


def _collectives(f, *args):
  text = f.lower(*args).compile().as_text()
  found = [c for c in ("collective-permute", "all-gather", "all-reduce")
           if c in text]
  return ", ".join(found) or "none"


def main(argv=None):
  a = _args(argv)
  mesh_shape = tuple(int(v) for v in a.mesh.split(","))
  shape = tuple(int(v) for v in a.shape.split(","))
  n_dev = int(np.prod(mesh_shape))
  os.environ.setdefault("XLA_FLAGS", "")
  import jax
  jax.config.update("jax_num_cpu_devices", n_dev)
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec as P

  import jaxshift

  ndim = len(shape) - 2
  names = tuple(f"s{i}" for i in range(len(mesh_shape)))
  mesh = jax.make_mesh(mesh_shape, names)
  spec = P(None, *names, *([None] * (ndim - len(names) + 1)))
  rng = np.random.default_rng(0)
  x_np = rng.normal(size=shape).astype(np.float32)
  s = jnp.asarray(rng.uniform(-a.max_shift, a.max_shift,
                              size=(shape[-1], ndim)).astype(np.float32))
  x = jax.device_put(x_np, NamedSharding(mesh, spec))
  volume_mb = x_np.nbytes / 2**20
  budget = a.budget_mb if a.budget_mb is not None else 2 * volume_mb

  def variant(bound):
    def f(x, s):
      return jaxshift.shift(x, s, mode=a.mode, padding=a.padding,
                            max_shift=bound)
    fwd = jax.jit(f)
    step = jax.jit(jax.grad(lambda x, s: jnp.sum(f(x, s) ** 2), (0, 1)))
    return fwd, step

  rows = []
  for name, bound, arg in (("halo", a.max_shift, x), ("gather", None, x),
                           ("one device", None, jax.device_put(x_np, jax.devices()[0]))):
    fwd, step = variant(bound)
    rows.append((name, _memory_mb(fwd, arg, s), _memory_mb(step, arg, s),
                 _median_time(fwd, arg, s, repeats=a.repeats) * 1e3,
                 _median_time(step, arg, s, repeats=a.repeats) * 1e3,
                 _collectives(step, arg, s)))

  print(f"jaxshift {jaxshift.__version__}, jax {jax.__version__}, "
        f"{jax.default_backend()} x {n_dev}; x {shape} float32 "
        f"({volume_mb:.0f} MB), mesh {mesh_shape} over the spatial axes, "
        f"mode {a.mode}, padding {a.padding}, max_shift {a.max_shift}")
  print()
  fits = lambda mb: "yes" if mb <= budget else "no"
  print("| variant | fwd MB/device | f+b MB/device | fwd ms | f+b ms | "
        f"fits {budget:.0f} MB (fwd, f+b) | collectives (f+b) |")
  print("|---|---|---|---|---|---|---|")
  for name, mf, mb, tf, tb, coll in rows:
    print(f"| {name} | {mf:.1f} | {mb:.1f} | {tf:.1f} | {tb:.1f} | "
          f"{fits(mf)}, {fits(mb)} | {coll} |")


if __name__ == "__main__":
  main()
