"""Benchmark: fixed shifts (TSM, ShiftViT) on the static path vs the papers' code.

Prints one Markdown table (and writes it with --out). For each shape, in one
run and timed in turns (`bench.time_in_turns`): a plain copy of the same
bytes (``np.copyto``) and XLA's ``x + 1`` (the faster is the floor); the
static path (`jaxshift.shift` with a NumPy table: plain XLA slices); the
kernel (the same table as a traced array, ``impl="ffi"``); and the move as
the papers' code writes it (zeros, slices and concatenations, in jnp).
Forward, and forward+backward with respect to ``x`` (the VJP of a fixed
cotangent); then the same inside a small block, 1x1 convolution -> shift ->
ReLU, where the static path can fuse with its neighbours.

  python benchmarks/fixed_shifts.py
  python benchmarks/fixed_shifts.py --out benchmarks/results/x.md
"""

import argparse
import os
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (benchmarks/bench.py: the timer)

import jaxshift  # noqa: E402


def tsm_slices(x, n_segment=8, fold_div=8):
  """TSM's `shift` (ops/temporal_shift.py) in jnp: (N*T, H, W, C)."""
  nt, h, w, c = x.shape
  x = x.reshape(nt // n_segment, n_segment, h, w, c)
  fold = c // fold_div
  zero = jnp.zeros_like(x[:, :1, ..., :fold])
  left = jnp.concatenate([x[:, 1:, ..., :fold], zero], 1)
  right = jnp.concatenate([zero, x[:, :-1, ..., fold:2 * fold]], 1)
  return jnp.concatenate([left, right, x[..., 2 * fold:]], -1).reshape(
      nt, h, w, c)


def shiftvit_slices(x, n_div=12):
  """ShiftViT's `shift_feat` in jnp, channels-last: (B, H, W, C)."""
  g = x.shape[-1] // n_div
  z_w = jnp.zeros_like(x[:, :, :1, :g])
  z_h = jnp.zeros_like(x[:, :1, :, :g])
  parts = [
      jnp.concatenate([x[:, :, 1:, 0:g], z_w], 2),           # left
      jnp.concatenate([z_w, x[:, :, :-1, g:2 * g]], 2),      # right
      jnp.concatenate([x[:, 1:, :, 2 * g:3 * g], z_h], 1),   # up
      jnp.concatenate([z_h, x[:, :-1, :, 3 * g:4 * g]], 1),  # down
      x[..., 4 * g:]]
  return jnp.concatenate(parts, -1)


CASES = {  # name: (shape, which move)
    "TSM (8*8, 28, 28, 64)": ((64, 28, 28, 64), "tsm"),
    "ShiftViT (32, 28, 28, 96)": ((32, 28, 28, 96), "shiftvit"),
}


def _moves(kind, shape):
  """The move three ways: ``{name: f(x)}``."""
  c = shape[-1]
  if kind == "tsm":
    # Time and the pixels as two spatial axes, (N, T, H*W, C): the table
    # moves along time only. No transpose: a reshape of the folded batch.
    table = jaxshift.partial_shifts(c, [(-1, 0), (1, 0)], group_size=c // 8)

    def kernel(x):
      v = x.reshape(x.shape[0] // 8, 8, -1, c)
      return jaxshift.shift(v, jnp.asarray(table), mode="integer",
                            impl="ffi").reshape(x.shape)

    return {
        "static": lambda x: jaxshift.temporal_shift(x, num_segments=8),
        "kernel": kernel,
        "slices": tsm_slices,
    }
  table = jaxshift.partial_shifts(c, [(0, -1), (0, 1), (-1, 0), (1, 0)],
                                  group_size=c // 12)
  return {
      "static": lambda x: jaxshift.shift(x, table, mode="integer"),
      "kernel": lambda x: jaxshift.shift(x, jnp.asarray(table),
                                         mode="integer", impl="ffi"),
      "slices": shiftvit_slices,
  }


def _block(move, w):
  """1x1 convolution -> shift -> ReLU."""
  return lambda x: jax.nn.relu(move(jnp.einsum("nhwc,cd->nhwd", x, w)))


def row(shape, kind, samples, inner):
  x = jax.random.normal(jax.random.key(0), shape, jnp.float32)
  g = jax.random.normal(jax.random.key(1), shape, jnp.float32)
  w = jax.random.normal(jax.random.key(2), (shape[-1], shape[-1]),
                        jnp.float32) / np.sqrt(shape[-1])
  cases = bench.copy_cases(x)
  for name, move in _moves(kind, shape).items():
    for where, f in (("", move), ("block ", _block(move, w))):
      cases[where + name] = (jax.jit(f), (x,))
      # y and the VJP: the forward stays live (bench.forward_backward).
      fb = lambda x, g, f=f: (lambda y, vjp: (y, vjp(g)))(*jax.vjp(f, x))
      cases[where + name + "+bwd"] = (jax.jit(fb), (x, g))
  times = bench.time_in_turns(cases, samples, inner)
  return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--samples", type=int, default=9)
  p.add_argument("--inner", type=int, default=3)
  p.add_argument("--out", default=None, help="also write the table here")
  a = p.parse_args(argv)
  if not jaxshift.kernels_available("cpu"):
    sys.exit("jaxshift's CPU kernel is not built; see the README.")
  lines = [
      bench.cpu_header(),
      f"median of {a.samples} rounds x {a.inner} calls, timed in turns; ms. "
      "static: jaxshift.shift with a NumPy table (plain XLA); kernel: the "
      "same table traced, impl='ffi'; slices: the papers' code in jnp. "
      "block: 1x1 conv -> shift -> ReLU. f+b: the VJP in x.",
      "",
      "| case | what | copyto | x+1 | static | kernel | slices | "
      "static/slices | static/kernel |",
      "|" + "---|" * 9,
  ]
  print("\n".join(lines), flush=True)
  for name, (shape, kind) in CASES.items():
    r = row(shape, kind, a.samples, a.inner)
    for what, pre, suf in (("fwd", "", ""), ("f+b", "", "+bwd"),
                           ("block fwd", "block ", ""),
                           ("block f+b", "block ", "+bwd")):
      st, k, sl = (r[pre + n + suf] for n in ("static", "kernel", "slices"))
      line = (f"| {name} | {what} | {r['copyto']:.2f} | {r['x+1']:.2f} | "
              f"{st:.2f} | {k:.2f} | {sl:.2f} | {st / sl:.2f} | "
              f"{st / k:.2f} |")
      bench.emit(lines, line)
  bench.write_table(a.out, lines)


if __name__ == "__main__":
  main()
