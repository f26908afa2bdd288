"""Odd cases for every kernel path, in one sweep.

`GROUPS` lists calls at the edges of what `jaxshift.shift` accepts:
length-1 and tiny axes, shifts far beyond the axis and huge ones, strides
beyond the axis (up to 2**40), 1-, 2- and 3-D, depth-one volumes, both
layouts, NaN shifts, planes that stage, that fall back to walks (far shifts,
planes too large to stage) and that take the element-wise path, in float32,
bfloat16, float16 and (with x64) float64. Each group is one shape and dtype
in both layouts, evaluated in one jitted function: the forward and its VJP
for every padding, the mode turning with the group, so that every
(mode, padding, layout) appears in several groups (a call costs a compile:
about 0.2 s on the kernel, 0.4 s on the jnp path).

It is run three ways:

* ``tests/test_ffi.py`` compares every call on the kernel with the jnp path
  (normal build);
* ``tests/test_sanitizers.py`` runs it on the ASan + UBSan build of the CPU
  kernels (``python tests/kernel_sweep.py --kernel-only``, the library given
  by ``JAXSHIFT_CPU_LIBRARY``), which must report nothing;
* ``benchmarks/gpu_session.sh`` runs it under compute-sanitizer on a GPU.

  python tests/kernel_sweep.py                # kernel vs jnp path
  python tests/kernel_sweep.py --kernel-only  # the kernel alone (sanitizers)
"""

import argparse
import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxshift

# Shift values per axis: lattice, half-way, fractions, beyond tiny axes,
# beyond the staged halo (16), and huge.
NEAR = [0.0, 0.5, -0.5, 1.25, -2.75, 3.0]
FAR = [-17.5, 40.0, 1e6 + 0.25, -1e10, 2.0**31 + 1.0]

# The CPU lanes' column tiles' budget where they are on (cpu/isa.h's
# kTileBudget, the default only on CPUs whose L1 holds 48 KB or more): the
# sweep sets it, so that its tile cases tile on every CPU.
TILE_BUDGET = 32 << 10


def _shifts(c, ndim, values, seed):
  rng = np.random.default_rng(seed)
  return rng.choice(values, size=(c, ndim)).astype(np.float32)


# (spatial lengths, strides, channels, dtype, shift values, NaN shift?)
GROUPS = [
    ((1,), 1, 3, "float32", NEAR + FAR, True),
    ((2,), 2**40, 4, "float32", NEAR + FAR, False),
    ((5,), 2, 5, "bfloat16", NEAR + FAR, False),
    ((1, 1), 1, 3, "float32", NEAR + FAR, False),
    ((1, 7), (1, 3), 4, "float16", NEAR + FAR, False),
    ((3, 1), (5, 1), 3, "float32", NEAR + FAR, True),
    ((4, 33), 1, 20, "float32", NEAR, False),    # staged: 16 + 4 channels
    ((5, 9), 1, 6, "bfloat16", NEAR + FAR, True),  # staged and walked blocks
    ((1, 3, 4), 1, 3, "float32", NEAR + FAR, False),  # depth one
    ((2, 1, 3), (2, 7, 1), 3, "float32", NEAR + FAR, True),
    ((3, 4, 5), (1, 2, 3), 4, "float16", NEAR + FAR, False),
    ((150, 150), 1, 2, "float32", NEAR + FAR, False),  # too large to stage
    ((2, 700), 1, 3, "float32", NEAR + FAR, False),  # direct rows, uncached columns
    ((6, 11), (2, 3), 17, "bfloat16", NEAR + FAR, True),  # lanes: 2 groups + 1
    ((3, 4, 9), 1, 10, "float16", NEAR + FAR, True),  # 3-D lanes: 1 group + 2
    ((4, 5, 3), (2, 1, 2), 9, "bfloat16", NEAR + FAR, False),  # strided 3-D lanes
    ((3, 4, 10), 1, 5, "float32", NEAR + FAR, True),  # 3-D direct rows, folds
    ((3, 5, 6), 1, 9, "bfloat16", NEAR, False),  # 3-D lanes, folds by rows
    # float32 channels-last one-pass backwards (the modes turn with the
    # group's index): 3-D spanning its planes (active with periodic; sparse
    # with zeros, where these shifts' rounded tables refuse it), 2-D (a NaN
    # shift), strided (active with zeros)
    ((3, 4, 9), 1, 10, "float32", NEAR + FAR, False),
    ((5, 7), 1, 9, "float32", NEAR + FAR, True),
    ((6, 11), 2, 12, "float32", NEAR + FAR, False),
    # channels-last lanes in column tiles (far shifts: tiles of 16 columns),
    # unit strides and strided (two groups: the x64 groups keep their layout
    # in test_ffi's ODD_CASES)
    ((3, 40), 1, 9, "float32", NEAR + FAR, False),
    ((4, 70), 2, 9, "float32", NEAR + FAR, True),
    # channels-first strided rows of 16-bit storage (gathers of 32 bits up to
    # the array's last element)
    ((2, 3, 17), (1, 2, 2), 3, "float16", NEAR + FAR, False),
    # channels-last groups that share a line (the 2-D float32 forward's
    # fused_pair; integer moves' move_line): shifts all off the lattice, no
    # NaN, 16 float32 channels (two groups) and 32 bfloat16 (four; two
    # groups: the x64 groups keep their layout in test_ffi's ODD_CASES)
    ((3, 6), 1, 16, "float32", [0.25, -1.5, 2.75, -0.5, 1.5], False),
    ((3, 6), 1, 32, "bfloat16", [0.25, -1.5, 2.75, -0.5, 1.5], False),
    # channels-first 2-D float32 planes of rows under 8 cells and 40 cells or
    # more: the one-pass backward reads and writes a row as 8 cells (zeros
    # and periodic padding; two groups: the x64 groups keep their layout)
    ((9, 5), 1, 3, "float32", NEAR + FAR, False),
    ((7, 7), 1, 9, "float32", NEAR, False),
    # channels-last float32 window rows (cpu/lanes.h, window_row): integer
    # offsets -2 .. 1, so each group's window lies inside x on some rows and
    # columns; rows of 10 and 8 window outputs (12 the least), a NaN group
    # and a partial one (gathers), two groups: the x64 groups keep their layout
    ((9, 14), 1, 16, "float32", [0.25, -1.5, 1.75, -0.5, 0.5, -1.25], False),
    ((8, 12), 1, 20, "float32", [0.25, -1.5, 1.75, -0.5, 0.5, -1.25], True),
]
X64_GROUPS = [
    ((4, 6), 1, 3, "float64", NEAR + FAR, True),
    ((3, 9), 1, 3, "float64", NEAR + FAR, False),  # direct rows (NCHW in test_ffi)
    ((2, 3, 5), (1, 2, 2**20), 3, "float64", NEAR + FAR, False),
]


def cases(groups):
  """Every group in both layouts: ``x`` (float64 numpy, to be cast to
  ``dtype`` where it is used: a float64 group needs x64 on), ``shifts``,
  ``strides``, ``channel_axis``, the (mode, padding) ``pairs``, a ``name``."""
  for i, (lengths, strides, c, dtype, values, nan) in enumerate(groups):
    ndim = len(lengths)
    s = _shifts(c, ndim, values, seed=i)
    if nan:
      s[c // 2, ndim - 1] = np.nan
    for channels_last in (True, False):
      shape = (2, *lengths, c) if channels_last else (2, c, *lengths)
      x = np.random.default_rng(100 + i).normal(size=shape)
      pairs = tuple((jaxshift.MODES[(i + j + channels_last) % 3], padding)
                    for j, padding in enumerate(jaxshift.PADDINGS))
      yield dict(x=x, dtype=dtype, shifts=s,
                 strides=strides, channel_axis=-1 if channels_last else 1,
                 pairs=pairs,
                 name=f"{lengths} strides={strides} {dtype} "
                      f"{'NHWC' if channels_last else 'NCHW'}")


def cotangent(shape, dtype, seed=0):
  """A fixed cotangent with no structure a shift could hide: a scrambled
  index in [-1, 1) (cheap to compile, unlike a random draw in the graph).

  Integer arithmetic and values k/1024 - 1, exact in float32: every
  compilation gives the same bits (cos of a large argument did not: its range
  reduction differs with and without FMA, by 1e-4 at 1e5 elements).
  """
  p = 2048  # the period; an odd multiplier scrambles the index modulo p
  i = jnp.arange(int(np.prod(shape)), dtype=jnp.int32).reshape(shape) % p
  k = (i * 7919 + 331 * seed) % p
  return (k.astype(jnp.float32) / (p // 2) - 1.0).astype(dtype)


@functools.partial(jax.jit, static_argnames=("strides", "channel_axis",
                                             "pairs", "impl"))
def evaluate(x, shifts, *, strides, channel_axis, pairs, impl):
  """Forward and VJP (a fixed cotangent) of each (mode, padding) pair."""
  out = {}
  for mode, padding in pairs:
    f = lambda x, s: jaxshift.shift(x, s, mode=mode, padding=padding,
                                    strides=strides,
                                    channel_axis=channel_axis, impl=impl)
    y, vjp = jax.vjp(f, x, shifts)
    out[(mode, padding)] = (y,) + vjp(cotangent(y.shape, y.dtype, len(out)))
  return out


def run(groups, impl):
  """``{case name: {(mode, padding): (y, dx, dshifts)}}`` on `impl`."""
  results = {}
  for case in cases(groups):
    results[case["name"]] = jax.device_get(evaluate(
        jnp.asarray(case["x"], case["dtype"]), case["shifts"],
        strides=case["strides"],
        channel_axis=case["channel_axis"], pairs=case["pairs"], impl=impl))
  return results


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--kernel-only", action="store_true",
                 help="run the kernel only (for the sanitizers)")
  args = p.parse_args(argv)
  platform = "cuda" if jax.default_backend() == "gpu" else "cpu"
  if not jaxshift.kernels_available(platform):
    sys.exit(f"jaxshift's {platform} kernels are not built")
  jax.config.update("jax_enable_x64", True)
  groups = GROUPS + X64_GROUPS
  if platform == "cpu":  # the tile cases tile on any CPU (cpu/isa.h's default)
    from jaxshift._src import ffi  # pylint: disable=import-outside-toplevel
    ffi.cpu_setting("jaxshift_cpu_tile_budget")(TILE_BUDGET)
  kernel = run(groups, "ffi")
  calls = sum(len(v) for v in kernel.values())
  if args.kernel_only:
    from jaxshift._src import ffi  # pylint: disable=import-outside-toplevel
    print(f"kernel_sweep: {calls} calls on the {platform} kernel "
          f"({ffi.library_path(platform)})")
    return 0
  ref = run(groups, "xla")
  bad = 0
  for name, by_call in kernel.items():
    for key, arrays in by_call.items():
      for what, a, b in zip(("y", "dx", "ds"), arrays, ref[name][key]):
        if not close(a, b):
          bad += 1
          print("MISMATCH", name, key, what)
  print(f"kernel_sweep: {calls} calls, {bad} mismatches")
  return 1 if bad else 0


def close(a, b) -> bool:
  """Same NaN pattern, and equal to the dtype's rounding elsewhere."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
    return False
  ok = ~np.isnan(b)
  scale = max(1.0, float(np.abs(b[ok]).max(initial=0)))
  return bool(np.allclose(a[ok], b[ok], rtol=3e-2, atol=3e-2 * scale))


if __name__ == "__main__":
  sys.exit(main())
