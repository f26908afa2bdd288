"""Benchmark: jaxshift's kernel against the jnp path, a plain four-gather
shift, XLA's depthwise 3x3 convolution and a copy of the same bytes.

Prints one Markdown table (and writes it with --out). Every number of a row
comes from the same run: each function is jitted and warmed up, then all of a
row's functions are timed in turns (the copy and our kernel with each other,
the slower references among themselves), --samples rounds of --inner back-to-back
calls followed by one block_until_ready each (so launch gaps are amortised,
as on a real training step), and each reports its median.
Inputs are larger than the GPU's L2 cache in the default GPU shapes.

  python benchmarks/bench.py                 # CPU defaults: (8, 32, 32, 64)
  python benchmarks/bench.py --gpu           # issue 6 grid on the GPU

Columns: time in ms; `copy` is the floor of a forward (read and write each
element once): on the GPU y = x + 1 on the same tensor; on the CPU the faster
of a plain memory copy (`np.copyto` into a preallocated array) and XLA's
`x + 1`, both timed in turns with the kernel in the same row (on a small CPU
either can be up to 2x faster than the other, depending on size). The floor
of forward+backward is 2.5 copies (x -> y, then x and g -> dx: five passes;
integer mode, whose backward has no shift gradient to read x for, 2 copies).
`%bw` is the floor over the kernel's time: 100 % means at the floor.
`--paddings` adds rows in other paddings (the mode column names them).

  python benchmarks/bench.py --model     # ShiftResNet-20 vs its depthwise twin
"""

import argparse
import datetime
import functools
import itertools
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxshift
from jaxshift._src import ffi as jaxshift_ffi


def four_gather_shift(x, shifts, channels_last=True):
  """A plain bilinear shift with four full-size gathers (autodiff backward)."""
  if not channels_last:
    x = jnp.moveaxis(x, 1, -1)
  n, h, w, c = x.shape
  q_h = jnp.arange(h, dtype=jnp.float32)[:, None] - shifts[None, :, 0]  # (H, C)
  q_w = jnp.arange(w, dtype=jnp.float32)[:, None] - shifts[None, :, 1]  # (W, C)
  h0, w0 = jnp.floor(q_h), jnp.floor(q_w)
  fh, fw = q_h - h0, q_w - w0
  h0, w0 = h0.astype(jnp.int32), w0.astype(jnp.int32)
  ch = jnp.arange(c)

  def tap(hi, wi):
    valid = ((hi >= 0) & (hi < h))[:, None, :] & ((wi >= 0) & (wi < w))[None, :, :]
    v = x[:, jnp.clip(hi, 0, h - 1)[:, None, :], jnp.clip(wi, 0, w - 1)[None, :, :],
          ch[None, None, :]]
    return jnp.where(valid, v, 0)

  a, b = (1 - fh)[:, None, :], fh[:, None, :]
  cc, d = (1 - fw)[None, :, :], fw[None, :, :]
  y = (a * cc * tap(h0, w0) + a * d * tap(h0, w0 + 1) +
       b * cc * tap(h0 + 1, w0) + b * d * tap(h0 + 1, w0 + 1)).astype(x.dtype)
  return y if channels_last else jnp.moveaxis(y, -1, 1)


def depthwise3x3(x, kernel, channels_last=True):
  dn = ("NHWC", "HWIO", "NHWC") if channels_last else ("NCHW", "OIHW", "NCHW")
  return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=dn,
                                  feature_group_count=x.shape[-1 if channels_last else 1])


def time_in_turns(cases, samples, inner, swap=()):
  """Samples, in ms per call, of each ``name -> (fn, args)`` in `cases`.

  The functions are timed in turns (sample k of every function, then sample
  k + 1), so a machine that slows down for a while (a shared VM, a GPU
  changing clocks) slows every column alike and the ratios stay fair; the
  order is reversed every other round, so no function always runs right
  after the one that warmed the caches with the same input. `swap`: pairs
  of names that trade places in rounds 2-3 of every 4 (an A/B's two
  libraries: each then follows each neighbour equally often). Each sample
  follows one untimed call of its own function. Returns ``name -> [ms]``,
  sample k of every name from the same round.
  """
  for fn, args in cases.values():
    for _ in range(3):
      jax.block_until_ready(fn(*args))
  times = {name: [] for name in cases}
  order = list(cases)
  swapped = list(order)
  for u, v in swap:
    i, j = swapped.index(u), swapped.index(v)
    swapped[i], swapped[j] = v, u
  for r in range(samples):
    turn = swapped if r % 4 >= 2 else order
    for name in (turn if r % 2 == 0 else turn[::-1]):
      fn, args = cases[name]
      jax.block_until_ready(fn(*args))  # untimed: warm again after the others
      t0 = time.perf_counter()
      for _ in range(inner):
        out = fn(*args)
      jax.block_until_ready(out)
      times[name].append((time.perf_counter() - t0) / inner * 1e3)
  return times


def time_all(cases, samples, inner):
  """Median ms per call of each ``name -> (fn, args)`` (`time_in_turns`)."""
  return {name: statistics.median(t)
          for name, t in time_in_turns(cases, samples, inner).items()}


def floor_ratio(t, name, passes):
  """The floor (`passes` copies, `t["copy"]` the faster copy) over `name`'s
  time, in one row's times `t` (from `bench_case`)."""
  return passes * t["copy"] / t[name]


def merge_passes(runs):
  """One row's times over passes (a list of `bench_case` results): the
  median over passes of each function's median."""
  return {k: statistics.median(t[k] for t in runs) for k in runs[0]}


def percent(runs, name, passes):
  """`name`'s %bw cell: the median over passes of the floor over its time,
  and with more than one pass the lowest and highest in parentheses."""
  if name not in runs[0]:
    return "-"
  r = [100 * floor_ratio(t, name, passes) for t in runs]
  cell = f"{statistics.median(r):.0f}%"
  return cell if len(r) == 1 else f"{cell} ({min(r):.0f}-{max(r):.0f})"


def forward_backward(f):
  """y and the VJP of a fixed cotangent g: the forward stays live (a loss such
  as sum(y) would let XLA drop it, since its gradient never reads y)."""
  def fb(x, p, g):
    y, vjp = jax.vjp(f, x, p)
    return y, vjp(g)
  return fb


def bench_case(shape, dtype, layout, mode, samples, inner, impls, padding="zeros"):
  channels_last = layout == "NHWC"
  c = shape[-1] if channels_last else shape[1]
  key = jax.random.key(0)
  x = jax.random.normal(key, shape, dtype)
  s = jax.random.uniform(jax.random.key(1), (c, 2), jnp.float32, -2, 2)
  cax = -1 if channels_last else 1
  kshape = (3, 3, 1, c) if channels_last else (c, 1, 3, 3)
  kernel = jax.random.normal(jax.random.key(2), kshape, dtype)
  fns = {
      "kernel": functools.partial(lambda x, s: jaxshift.shift(
          x, s, mode=mode, padding=padding, channel_axis=cax, impl="ffi")),
      "jnp": lambda x, s: jaxshift.shift(x, s, mode=mode, padding=padding, channel_axis=cax,
                                         impl="xla"),
      "4-gather": lambda x, s: four_gather_shift(x, s, channels_last),
      "dw3x3": lambda x, k: depthwise3x3(x, k, channels_last),
  }
  cases = {"copy": (jax.jit(lambda x: x + jnp.asarray(1, x.dtype)), (x,))}
  if jax.default_backend() == "cpu":
    cases["copyto"] = copy_cases(x)["copyto"]
  for name, f in fns.items():
    if name not in impls:
      continue
    p = kernel if name == "dw3x3" else s
    cases[name] = (jax.jit(f), (x, p))
    g = jax.random.normal(jax.random.key(3), jax.eval_shape(f, x, p).shape, dtype)
    cases[name + "+bwd"] = (jax.jit(forward_backward(f)), (x, p, g))
  if "tiled" in impls and jax.default_backend() == "gpu":
    # The tiled CUDA kernels (JAXSHIFT_CUDA_KERNEL=tiled), compiled with that
    # choice, timed in the same turns as the copy and the default kernels.
    f = fns["kernel"]
    g = jax.random.normal(jax.random.key(3), jax.eval_shape(f, x, s).shape, dtype)
    with jaxshift_ffi.kernel_choice("cuda", "tiled"):
      tiled = lambda x, s: f(x, s)  # a new function: jit would reuse f's trace
      cases["tiled"] = (jax.jit(tiled).lower(x, s).compile(), (x, s))
      cases["tiled+bwd"] = (jax.jit(forward_backward(tiled)).lower(x, s, g).compile(),
                            (x, s, g))
  # The copy and the kernel (the %bw columns) in turns with each other; the
  # slower references in turns among themselves, after.
  ours = {k: v for k, v in cases.items()
          if k.startswith("copy") or k.startswith("kernel") or k.startswith("tiled")}
  rest = {k: v for k, v in cases.items() if k not in ours}
  t = {**time_all(ours, samples, inner), **time_all(rest, samples, inner)}
  t["x+1"] = t["copy"]
  t["copy"] = min(t["copy"], t.get("copyto", t["copy"]))  # the faster one is the floor
  return t


def bench_extra(samples, inner, impls, gpu=True):
  """Rows for the 3-D and strided cases of issue 15's targets: the default
  kernel's forward and forward+backward and the tiled kernels' forward
  against a copy of the input, timed in turns (on the CPU smaller shapes, and
  the copy is the faster of `np.copyto` and `x + 1`). The floors: a forward
  reads x and writes y; a forward+backward also reads g (y's size) and x and
  writes dx."""
  if gpu:
    cases = [("16x8x28x28x64 3-D", (16, 8, 28, 28, 64), -1, 1),
             ("16x64x8x28x28 3-D", (16, 64, 8, 28, 28), 1, 1),
             ("64x56x56x256 stride 2", (64, 56, 56, 256), -1, 2),
             ("64x256x56x56 stride 2", (64, 256, 56, 56), 1, 2)]
  else:
    cases = [("2x8x28x28x64 3-D", (2, 8, 28, 28, 64), -1, 1),
             ("2x64x8x28x28 3-D", (2, 64, 8, 28, 28), 1, 1),
             ("8x32x32x64 stride 2", (8, 32, 32, 64), -1, 2),
             ("8x64x32x32 stride 2", (8, 64, 32, 32), 1, 2)]
  lines = ["", "| case | layout | copy | kernel fwd | %bw | kernel f+b | f+b %bw | tiled fwd "
           "| tiled %bw |", "|---|---|---|---|---|---|---|---|---|"]
  print("\n".join(lines), flush=True)  # (the rows print as they come: a table on stdout too)
  for name, shape, cax, strides in cases:
    x = jax.random.normal(jax.random.key(0), shape, jnp.float32)
    s = jax.random.uniform(jax.random.key(1), (shape[cax], len(shape) - 2), jnp.float32, -2, 2)
    f = lambda x, s: jaxshift.shift(x, s, strides=strides, channel_axis=cax, impl="ffi")
    y = jax.eval_shape(f, x, s)
    y_bytes = y.size * 4
    g = jax.random.normal(jax.random.key(2), y.shape, jnp.float32)
    timed = {"copy": (jax.jit(lambda x: x + 1.0), (x,)), "kernel": (jax.jit(f), (x, s)),
             "kernel f+b": (jax.jit(forward_backward(f)), (x, s, g))}
    if not gpu:
      timed["copyto"] = copy_cases(x)["copyto"]
    if "tiled" in impls:
      with jaxshift_ffi.kernel_choice("cuda", "tiled"):  # a new function: a new trace
        timed["tiled"] = (jax.jit(lambda x, s: f(x, s)).lower(x, s).compile(), (x, s))
    t = time_all(timed, samples, inner)
    t["copy"] = min(t["copy"], t.get("copyto", t["copy"]))
    # The floor of a strided forward reads x once and writes the smaller y.
    x_bytes = x.size * 4
    floor = t["copy"] * (x_bytes + y_bytes) / (2 * x_bytes)
    floor_fb = t["copy"] * (3 * x_bytes + 2 * y_bytes) / (2 * x_bytes)
    pct = lambda k: f"{100 * floor / t[k]:.0f}%" if k in t else "-"
    lines.append(f"| {name} | {'NHWC' if cax == -1 else 'NCHW'} | {t['copy']:.3f} | "
                 f"{t['kernel']:.3f} | {pct('kernel')} | {t['kernel f+b']:.3f} | "
                 f"{100 * floor_fb / t['kernel f+b']:.0f}% | "
                 f"{t['tiled'] if 'tiled' in t else float('nan'):.3f} | {pct('tiled')} |")
    print(lines[-1], flush=True)
  return lines


def bench_model(samples, inner, batch=32, expansion=3):
  """ShiftResNet-20 against its depthwise twin (`jaxshift.nn`): one SGD
  training step (forward, backward, update) and inference, jitted, on a batch
  of 32x32x3 images, timed in turns. Returns the table's lines."""
  from flax import nnx
  import optax
  import jaxshift.nn as jnn
  x = jax.random.normal(jax.random.key(0), (batch, 32, 32, 3), jnp.float32)
  labels = jax.random.randint(jax.random.key(1), (batch,), 0, 10)
  cases = {}
  for name, cls in (("shift", jnn.ShiftResNet), ("depthwise", jnn.DepthwiseResNet)):
    model = cls(20, expansion=expansion, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    tx = optax.sgd(0.1, momentum=0.9)
    opt = tx.init(state)

    def loss(state, x, labels, graphdef=graphdef):
      logits = nnx.merge(graphdef, state)(x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def step(state, opt, x, labels, loss=loss, tx=tx):
      l, g = jax.value_and_grad(loss)(state, x, labels)
      updates, opt = tx.update(g, opt, state)
      return optax.apply_updates(state, updates), opt, l

    @jax.jit
    def infer(state, x, graphdef=graphdef):
      return nnx.merge(graphdef, state)(x)

    cases[name + " step"] = (step, (state, opt, x, labels))
    cases[name + " infer"] = (infer, (state, x))
  t = time_all(cases, samples, inner)
  lines = ["", f"ShiftResNet-20 (expansion {expansion}) vs DepthwiseResNet-20, batch {batch}, "
           "32x32x3, ms (median)", "",
           "| | shift | depthwise | depthwise / shift |", "|---|---|---|---|"]
  print("\n".join(lines), flush=True)  # (a table on stdout too, as bench_extra's)
  for what in ("step", "infer"):
    a, b = t["shift " + what], t["depthwise " + what]
    lines.append(f"| {'training step' if what == 'step' else 'inference'} | {a:.2f} | {b:.2f} | "
                 f"{b / a:.2f}x |")
    print(lines[-1], flush=True)
  return lines


def cpu_header() -> str:
  """The first line of a CPU table: device, jax, commit, date."""
  return (f"device: {jax.devices()[0].platform}, {os.cpu_count()} cores; jax "
          f"{jax.__version__}; jaxshift commit {git_commit()}; "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")


def copy_cases(x):
  """The two floors on the CPU, for `time_in_turns`: a plain memory copy of
  `x`'s bytes (``np.copyto``) and XLA's ``x + 1``; either can be the faster
  one depending on size."""
  x_np, dst = np.asarray(x), np.empty(x.shape, x.dtype)

  def copyto(src):
    np.copyto(dst, src)
    return dst

  return {"copyto": (copyto, (x_np,)), "x+1": (jax.jit(lambda x: x + 1), (x,))}


def emit(lines, line):
  """Appends a table row and prints it at once (long runs show progress)."""
  lines.append(line)
  print(line, flush=True)


def write_table(path, lines):
  """Writes a table's lines to `path`, if one is given (``--out``)."""
  if path:
    with open(path, "w") as fh:
      fh.write("\n".join(lines) + "\n")


def git_commit():
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
  except Exception:  # noqa: BLE001
    return "unknown"


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--gpu", action="store_true", help="issue 6 grid (H100-sized shapes)")
  p.add_argument("--shapes", nargs="*", default=None, help="e.g. 8x32x32x64 (NHWC order)")
  p.add_argument("--dtypes", nargs="*", default=None)
  p.add_argument("--layouts", nargs="*", default=None, choices=["NHWC", "NCHW"])
  p.add_argument("--modes", nargs="*", default=None, choices=["active", "sparse", "integer"])
  p.add_argument("--paddings", nargs="*", default=["zeros"],
                 choices=["zeros", "border", "periodic", "reflect", "symmetric"],
                 help="the kernel's and the jnp path's (the mode column names any but zeros)")
  p.add_argument("--impls", nargs="*", default=["kernel", "jnp", "4-gather", "dw3x3"],
                 help="also 'tiled' (GPU): the tiled CUDA kernels beside the default")
  p.add_argument("--samples", type=int, default=None)
  p.add_argument("--passes", type=int, default=1,
                 help="measure every row this many times, all rows each pass (a row's "
                      "passes minutes apart); cells are medians over passes, %%bw also "
                      "with its lowest and highest")
  p.add_argument("--inner", type=int, default=None)
  p.add_argument("--out", default=None, help="also write the table here")
  p.add_argument("--extra", action="store_true",
                 help="also the 3-D and strided forward rows (always with --gpu)")
  p.add_argument("--model", action="store_true",
                 help="also ShiftResNet-20 vs its depthwise twin (training step, inference)")
  a = p.parse_args(argv)
  if a.passes < 1:
    p.error(f"--passes must be at least 1, got {a.passes}")
  if a.gpu:
    shapes = a.shapes or ["64x56x56x256", "128x28x28x512"]
    dtypes = a.dtypes or ["float32", "bfloat16"]
    layouts = a.layouts or ["NHWC", "NCHW"]
    # integer: the same move as sparse with no shift gradient (no partial
    # sums, no scratch memory): sparse minus integer is the shift gradient's cost.
    modes = a.modes or ["active", "sparse", "integer"]
    samples, inner = a.samples or 15, a.inner or 10
  else:
    shapes = a.shapes or ["8x32x32x64"]
    dtypes = a.dtypes or ["float32"]
    layouts = a.layouts or ["NHWC"]
    modes = a.modes or ["active", "sparse"]
    samples, inner = a.samples or 15, a.inner or 3
  platform = "cuda" if jax.default_backend() == "gpu" else "cpu"
  if not jaxshift.kernels_available(platform):
    sys.exit(f"jaxshift's {platform} kernels are not built; see the README.")
  dev = jax.devices()[0]
  lines = [
      f"device: {getattr(dev, 'device_kind', dev.platform)} ({jax.default_backend()}, "
      f"{jax.device_count()} device(s)); jax {jax.__version__}; jaxshift commit "
      f"{git_commit()}; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
      f"median of {samples} samples x {inner} calls, a row's functions timed in turns (order reversed every other round)"
      + (f"; {a.passes} passes over every row, each cell the median over passes, %bw "
         "(lowest-highest)" if a.passes > 1 else "") + "; "
      "times in ms; fwd floor = copy, "
      "fwd+bwd floor = 2.5 x copy (integer mode: 2 x copy, its backward reads no x); "
      "%bw = floor / time",
      "",
      "| shape (NHWC sizes) | dtype | layout | mode | copy | np.copyto | x + 1 | kernel fwd | %bw | jnp fwd | "
      "4-gather fwd | dw3x3 fwd | kernel f+b | %bw | jnp f+b | 4-gather f+b | dw3x3 f+b | "
      "f+b: 4-gather/kernel | f+b: dw3x3/kernel | tiled fwd | tiled %bw | tiled f+b | "
      "tiled f+b %bw | f+b: dw3x3/tiled |",
      "|" + "---|" * 24,
  ]
  print("\n".join(lines), flush=True)
  fmt = lambda v: "-" if v is None else f"{v:.3f}"
  rows = []  # (shape_s, dtype, layout, shape, mode, padding), in the table's order
  for shape_s in shapes:
    nhwc = tuple(int(v) for v in shape_s.split("x"))
    for dtype in dtypes:
      for layout in layouts:
        shape = nhwc if layout == "NHWC" else (nhwc[0], nhwc[3], nhwc[1], nhwc[2])
        for mode, padding in itertools.product(modes, a.paddings):
          rows.append((shape_s, dtype, layout, shape, mode, padding))
  # Pass-major: every row once, then every row again, so that a row's passes
  # lie minutes apart and meet different spells of a shared machine.
  runs = {row: [] for row in rows}
  for k in range(a.passes):
    for row in rows:
      shape_s, dtype, layout, shape, mode, padding = row
      runs[row].append(bench_case(shape, jnp.dtype(dtype), layout, mode, samples, inner,
                                  a.impls, padding))
      if k + 1 < a.passes:
        print(f"pass {k + 1}/{a.passes}: {shape_s} {dtype} {layout} {mode} {padding}: "
              f"kernel fwd {100 * floor_ratio(runs[row][-1], 'kernel', 1):.0f}% of a copy",
              flush=True)
        continue
      r = merge_passes(runs[row])
      g = r.get
      fb = 200 if mode == "integer" else 250  # the f+b floor, in % of a copy
      ratio = lambda num, den: "-" if g(num) is None or g(den) is None else \
          f"{g(num) / g(den):.2f}x"
      name = mode if padding == "zeros" else f"{mode}, {padding}"
      line = (f"| {shape_s} | {dtype} | {layout} | {name} | {fmt(g('copy'))} | "
              f"{fmt(g('copyto'))} | {fmt(g('x+1'))} | "
              f"{fmt(g('kernel'))} | {percent(runs[row], 'kernel', 1)} | "
              f"{fmt(g('jnp'))} | {fmt(g('4-gather'))} | {fmt(g('dw3x3'))} | "
              f"{fmt(g('kernel+bwd'))} | {percent(runs[row], 'kernel+bwd', fb / 100)} | "
              f"{fmt(g('jnp+bwd'))} | {fmt(g('4-gather+bwd'))} | {fmt(g('dw3x3+bwd'))} | "
              f"{ratio('4-gather+bwd', 'kernel+bwd')} | {ratio('dw3x3+bwd', 'kernel+bwd')} | "
              f"{fmt(g('tiled'))} | {percent(runs[row], 'tiled', 1)} | {fmt(g('tiled+bwd'))} | "
              f"{percent(runs[row], 'tiled+bwd', fb / 100)} | {ratio('dw3x3+bwd', 'tiled+bwd')} |")
      lines.append(line)
      print(line, flush=True)
  if a.gpu or a.extra:
    lines += bench_extra(samples, inner, a.impls, gpu=a.gpu)
  if a.model:
    lines += bench_model(samples, inner)
  write_table(a.out, lines)


if __name__ == "__main__":
  main()
