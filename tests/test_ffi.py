"""The compiled kernels (`impl="ffi"`) against the jnp reference (`impl="xla"`).

Runs on the default backend: the CPU kernel in CI, the CUDA kernel on a GPU.
Each comparison is one jitted function holding both paths' forward and VJP
(a fixed cotangent), so a case costs one compile.
"""

import concurrent.futures
import contextlib
import ctypes
import functools
import itertools
import importlib.resources
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import examples
from oracles import scipy_shift

import jaxshift
import kernel_sweep
import oracles
from jaxshift._src import ffi as ffi_module
from jaxshift._src import shapes

PLATFORM = "cuda" if jax.default_backend() == "gpu" else "cpu"
FORWARD = ffi_module.target(PLATFORM, "forward")
BACKWARD = ffi_module.target(PLATFORM, "backward")
# JAXSHIFT_CPU_KERNEL=cuda-emulated: the CUDA kernels' code on the CPU
# (tests/test_cuda_emulated.py runs this module so).
EMULATED = "cuda_emulated" in FORWARD
pytestmark = pytest.mark.skipif(
    not jaxshift.kernels_available(PLATFORM),
    reason=f"jaxshift's {PLATFORM} kernels are not built")

TOL = {"float32": 2e-5, "bfloat16": 2e-2, "float16": 4e-3, "float64": 1e-12}


@functools.partial(jax.jit, static_argnames=("kw",))
def _both(x, s, kw):
  """``[(y, dx, ds) on the kernel, (y, dx, ds) on the jnp path]``."""
  out = []
  for impl in ("ffi", "xla"):
    f = lambda x, s: jaxshift.shift(x, s, impl=impl, **dict(kw))
    y, vjp = jax.vjp(f, x, s)
    out.append((y,) + vjp(kernel_sweep.cotangent(y.shape, y.dtype)))
  return out


def assert_close(a, b, tol, what):
  """Equal NaN patterns, and equal to `tol` relative to the largest value."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=what)
  ok = ~np.isnan(b)
  scale = max(1.0, float(np.abs(b[ok]).max(initial=0)))
  np.testing.assert_allclose(a[ok], b[ok], rtol=tol, atol=tol * scale,
                             err_msg=what)


def assert_matches(kernel, reference, x_dtype, what=""):
  """The kernel's forward, dx and dshifts equal the jnp path's."""
  tol = TOL[jnp.dtype(x_dtype).name]
  for i, name in enumerate(("forward", "dx", "dshifts")):
    assert kernel[i].dtype == reference[i].dtype, (what, name)
    assert_close(kernel[i], reference[i],
                 tol if i < 2 else max(tol, 1e-4) * 4, f"{what} {name}")


def assert_kernel_matches(x, s, **kw):
  kernel, reference = _both(x, s, tuple(sorted(kw.items())))
  assert_matches(kernel, reference, x.dtype, str(kw))


def cpu_setting(symbol: str, ctype):
  """The loaded CPU library's exported setting `symbol`: called with a
  request (< 0 only asks), it returns the value in use."""
  return ffi_module.cpu_setting(symbol, ctype)


def instruction_sets():
  """The instruction sets to run a check in, each with ``cpu_isa`` (which
  says whether this CPU has it): ``"avx2"`` and ``"baseline"`` for the CPU
  library on x86-64, else ``[None]`` (the kernels as they are)."""
  if PLATFORM == "cpu" and not EMULATED and platform.machine() == "x86_64":
    return ["avx2", "baseline"]
  return [None]


@contextlib.contextmanager
def cpu_set(symbol: str, value: int, ctype=ctypes.c_int64):
  """Runs the block with the CPU library's setting `symbol` (`cpu_setting`)
  at `value`; yields the value in use."""
  setting = cpu_setting(symbol, ctype)
  before = setting(-1)
  try:
    yield setting(value)
  finally:
    setting(before)


@contextlib.contextmanager
def cpu_isa(name: str):
  """Runs the CPU kernel's SIMD loops in instruction set `name` (``"avx2"``
  or ``"baseline"``); yields whether this CPU has it."""
  want = {"baseline": 0, "avx2": 1}[name]
  with cpu_set("jaxshift_cpu_select_isa", want, ctypes.c_int) as got:
    yield got == want


SHIFT_VALUES = st.one_of(st.floats(-12, 12, allow_nan=False, width=32),
                         st.integers(-11, 11).map(float),
                         st.integers(-11, 11).map(lambda i: i + 0.5))


@hypothesis.settings(max_examples=examples(25))
@hypothesis.given(
    ndim=st.integers(1, 3), mode=st.sampled_from(jaxshift.MODES),
    padding=st.sampled_from(jaxshift.PADDINGS), channels_last=st.booleans(),
    dtype=st.sampled_from(["float32", "bfloat16", "float16"]), data=st.data())
def test_matches_jnp_path(ndim, mode, padding, channels_last, dtype, data):
  lengths = data.draw(st.lists(st.integers(1, 9), min_size=ndim,
                               max_size=ndim))
  n, c = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 5))
  strides = tuple(data.draw(st.lists(st.integers(1, 3), min_size=ndim,
                                     max_size=ndim)))
  s = np.array(data.draw(st.lists(SHIFT_VALUES, min_size=c * ndim,
                                  max_size=c * ndim)), np.float32)
  rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
  shape = (n, *lengths, c) if channels_last else (n, c, *lengths)
  x = jnp.asarray(rng.normal(size=shape), dtype)
  assert_kernel_matches(x, jnp.asarray(s.reshape(c, ndim)), mode=mode,
                        padding=padding,
                        channel_axis=-1 if channels_last else 1,
                        strides=strides)


@hypothesis.settings(max_examples=examples(6))
@hypothesis.given(
    mode=st.sampled_from(jaxshift.MODES),
    padding=st.sampled_from(jaxshift.PADDINGS), channels_last=st.booleans(),
    dtype=st.sampled_from(["float32", "bfloat16"]), data=st.data())
def test_matches_jnp_path_on_wide_rows(mode, padding, channels_last, dtype,
                                       data):
  """Rows long enough for the kernels' SIMD row loops (2-D, stride 1)."""
  h, w = data.draw(st.integers(1, 5)), data.draw(st.integers(10, 40))
  c = data.draw(st.integers(1, 4))
  s = np.array(data.draw(st.lists(
      st.one_of(st.floats(-14, 14, allow_nan=False, width=32),
                st.integers(-13, 13).map(lambda i: i + 0.5)),
      min_size=2 * c, max_size=2 * c)), np.float32).reshape(c, 2)
  rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
  shape = (2, h, w, c) if channels_last else (2, c, h, w)
  x = jnp.asarray(rng.normal(size=shape), dtype)
  assert_kernel_matches(x, jnp.asarray(s), mode=mode, padding=padding,
                        channel_axis=-1 if channels_last else 1)


@hypothesis.settings(max_examples=examples(6))
@hypothesis.given(
    mode=st.sampled_from(jaxshift.MODES),
    padding=st.sampled_from(jaxshift.PADDINGS), channels_last=st.booleans(),
    dtype=st.sampled_from(["float32", "bfloat16", "float16"]),
    ndim=st.sampled_from([2, 2, 3]), data=st.data())
def test_matches_jnp_path_in_channel_blocks(mode, padding, channels_last,
                                            dtype, ndim, data):
  """Many channels (the CPU kernel gathers lanes of 8 channels, with a partial
  group at the end, in channels-last and in channels-first 3-D or strided
  calls; 2-D unit-stride channels-first calls read rows straight from the
  array, or stage 16-bit ones in blocks), a mix of near shifts (within the
  staged halo, inside a row's vectors) and far ones (staged blocks that fall
  back to in-place walks, rows whose every vector gathers), and strides."""
  lengths = [data.draw(st.integers(1, 12)), data.draw(st.integers(1, 24))]
  if ndim == 3:
    lengths = [data.draw(st.integers(1, 5)), lengths[0] // 2 + 1, lengths[1]]
  c = data.draw(st.integers(6, 40))
  near = st.one_of(st.floats(-3, 3, allow_nan=False, width=32),
                   st.integers(-3, 3).map(float))
  far = st.floats(-40, 40, allow_nan=False, width=32)
  s = np.array(data.draw(st.lists(st.one_of(near, near, near, far),
                                  min_size=ndim * c, max_size=ndim * c)),
               np.float32).reshape(c, ndim)
  strides = 1 if data.draw(st.booleans()) else tuple(data.draw(st.lists(
      st.sampled_from([1, 2, 3]), min_size=ndim, max_size=ndim)))
  rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
  shape = (2, *lengths, c) if channels_last else (2, c, *lengths)
  x = jnp.asarray(rng.normal(size=shape), dtype)
  assert_kernel_matches(x, jnp.asarray(s), mode=mode, padding=padding,
                        channel_axis=-1 if channels_last else 1,
                        strides=strides)


@hypothesis.settings(max_examples=examples(6))
@hypothesis.given(
    mode=st.sampled_from(jaxshift.MODES),
    padding=st.sampled_from(jaxshift.PADDINGS),
    dtype=st.sampled_from(["float32", "bfloat16", "float16"]),
    data=st.data())
def test_grouped_tables_match_jnp_path(mode, padding, dtype, data):
  """Channels-last runs of channels with one shift (grouped and fixed tables):
  the CPU kernel reads a group of 8 channels at equal offsets as one vector
  load instead of a gather, next to groups that gather."""
  h, w = data.draw(st.integers(1, 8)), data.draw(st.integers(1, 20))
  runs = data.draw(st.lists(st.tuples(
      st.integers(1, 12), SHIFT_VALUES, SHIFT_VALUES), min_size=1, max_size=5))
  s = np.array([(a, b) for n, a, b in runs for _ in range(n)], np.float32)
  hypothesis.assume(len(s) >= 8)
  strides = data.draw(st.sampled_from([1, 1, 2]))
  rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
  x = jnp.asarray(rng.normal(size=(2, h, w, len(s))), dtype)
  assert_kernel_matches(x, jnp.asarray(s), mode=mode, padding=padding,
                        strides=strides)


@hypothesis.settings(max_examples=examples(10))
@hypothesis.given(
    padding=st.sampled_from(["zeros", "periodic"]), channels_last=st.booleans(),
    dtype=st.sampled_from(["float32", "bfloat16", "float16"]),
    ndim=st.sampled_from([1, 2, 2, 3]), data=st.data())
def test_integer_input_gradient_is_the_jnp_paths_bit_for_bit(
    padding, channels_last, dtype, ndim, data):
  """Integer mode's input gradient with zeros or periodic padding (unit
  strides) is a move of g by the negated offsets, which the CPU kernel runs
  as its forward's move: no arithmetic, so the jnp path's dx bit for bit,
  NaN channels and shifts beyond the array included, at any channel count
  (channels-last lanes from 8 channels, partial groups) and in both
  layouts."""
  lengths = data.draw(st.lists(st.integers(1, 12), min_size=ndim,
                               max_size=ndim))
  c = data.draw(st.integers(1, 40))
  near = st.integers(-3, 3).map(float)
  far = st.integers(-30, 30).map(lambda i: i + 0.25)
  s = np.array(data.draw(st.lists(st.one_of(near, near, far),
                                  min_size=ndim * c, max_size=ndim * c)),
               np.float32).reshape(c, ndim)
  if data.draw(st.booleans()):
    s[data.draw(st.integers(0, c - 1)), -1] = np.nan
  rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
  shape = (2, *lengths, c) if channels_last else (2, c, *lengths)
  x = jnp.asarray(rng.normal(size=shape), dtype)
  kernel, reference = _both(x, jnp.asarray(s), tuple(sorted(dict(
      mode="integer", padding=padding,
      channel_axis=-1 if channels_last else 1).items())))
  for i, name in enumerate(("forward", "dx")):
    np.testing.assert_array_equal(
        np.asarray(kernel[i]).view(np.uint8), np.asarray(reference[i]).view(np.uint8),
        err_msg=f"{name}: {padding}, {shape}, {s.tolist()}")


ALL_PAIRS = tuple((m, p) for m in jaxshift.MODES for p in jaxshift.PADDINGS)


STAGED_BLOCKS = [
    (True, (7, 13), 1, "float32"), (False, (7, 13), 1, "float32"),
    (True, (3, 5, 6), 1, "float32"), (False, (4, 5, 11), 1, "float32"),
    (False, (4, 5, 7), (2, 1, 2), "float32"), (True, (7, 13), 2, "float32"),
    (True, (5, 6, 7), (2, 3, 2), "float32"), (False, (6, 13), (2, 3), "float32"),
    (True, (7, 13), 1, "bfloat16"), (True, (7, 13), 1, "float16"),
    (False, (7, 13), 1, "bfloat16")]


@pytest.mark.parametrize("channels_last,lengths,strides,dtype", STAGED_BLOCKS)
def test_staged_blocks_match_on_every_instruction_set(channels_last, lengths,
                                                       strides, dtype):
  """20 channels: in channels-last two groups of 8 lanes (gathers) and a
  partial group of 4; in 2-D and 3-D channels-first rows read straight from
  the array (edge vectors permuted or gathered through the padding, a last
  vector overlapping the one before; a shift beyond the row), in 3-D
  strided channels-first lanes again; with a stride of 2 or more on every
  axis, an input gradient of one gather a vector (one tap of each axis
  collects an output); every padding, the mode turning with the case (each
  mode and padding in three or four cases: one jitted call of 5 pairs, not
  15, a third of the compile time). In 3-D
  channels-last a task's planes share their depth taps, except in the group
  whose shifts are whole in depth. 16-bit
  channels-last active calls take the lanes (32-bit gathers, the element in
  the high half but in lane 0) for the forward (a pair of plain groups:
  two gathers and a word blend) and for backwards with zeros or periodic
  padding (one pass: input and shift gradients from the same moved rows of
  g); channels-first zeros and periodic backwards stage their planes, a
  channel at a time. 16-bit backwards whose padding
  folds (border, reflect, symmetric) take the lanes' two passes in either
  layout (channels-first: 8 planes a gather), and 16-bit channels-last
  moves a line of 32 channels at a time, two gathers and a word blend a
  pair of groups. The same compiled kernel runs once per instruction set
  the CPU has."""
  rng = np.random.default_rng(1)
  c, nd = 20, len(lengths)
  shape = (2, *lengths, c) if channels_last else (2, c, *lengths)
  x = jnp.asarray(rng.normal(size=shape), dtype)
  s = rng.uniform(-2.5, 2.5, (c, nd)).astype(np.float32)
  s[3, -2:] = [0.0, 1.0]
  s[17, -2:] = [-19.5, 3.25]
  if nd == 3:  # channels 8-15 on the depth lattice: that group reads one plane
    s[8:16, 0] = np.round(s[8:16, 0])
  turn = STAGED_BLOCKS.index((channels_last, lengths, strides, dtype))
  pairs = tuple((jaxshift.MODES[(turn + j) % 3], padding)
                for j, padding in enumerate(jaxshift.PADDINGS))
  kw = dict(strides=strides, channel_axis=-1 if channels_last else 1, pairs=pairs)
  reference = kernel_sweep.evaluate(x, jnp.asarray(s), impl="xla", **kw)
  ran = []
  for isa in instruction_sets():
    with (cpu_isa(isa) if isa else contextlib.nullcontext(True)) as have:
      if not have:
        continue
      kernel = kernel_sweep.evaluate(x, jnp.asarray(s), impl="ffi", **kw)
      for pair in pairs:
        assert_matches(kernel[pair], reference[pair], x.dtype, f"{isa} {pair}")
      ran.append(isa)
  assert ran[-1] in ("baseline", None)  # the baseline versions always run


@pytest.mark.parametrize("padding", ["zeros", "periodic", "reflect"])
@pytest.mark.parametrize("batch,dtype", [(1, "float32"), (16, "float32"),
                                         (16, "bfloat16")])
def test_3d_channels_last_task_spans(batch, dtype, padding):
  """3-D channels-last with unit strides: the CPU forward's tasks take every
  depth plane of a strip of rows and gather each plane once for two output
  planes; the backward's shift-gradient sums take all planes of a task when
  there are at least as many such tasks as threads (here batch 16; batch 1
  keeps a task per plane) and gather one depth tap a plane instead of three,
  and so does the input gradient (one instead of two) where no padding
  folds (float32 there takes one pass: the test below; bfloat16 these two).
  Shifts off the depth lattice, on it (a group of 8), and far."""
  rng = np.random.default_rng(batch)
  c = 24
  x = jnp.asarray(rng.normal(size=(batch, 6, 7, 5, c)), dtype)
  s = rng.uniform(-2.5, 2.5, (c, 3)).astype(np.float32)
  s[8:16, 0] = np.round(s[8:16, 0])
  s[20] = [7.5, -0.25, 1.0]
  for mode in jaxshift.MODES:
    assert_kernel_matches(x, jnp.asarray(s), mode=mode, padding=padding)


@pytest.mark.parametrize("padding", ["zeros", "periodic"])
@pytest.mark.parametrize("dhw", [(2, 3, 2), (6, 7, 5)])
def test_3d_channels_last_one_pass_backward(dhw, padding):
  """3-D channels-last float32, unit strides, zeros or periodic padding,
  tasks spanning their planes (batch 16): the CPU backward takes the input
  gradient and the shift gradient (adjoint form) in one pass from three
  moved strips of g at depth taps -1, 0, 1 that rotate from plane to plane.
  Per lane: off every lattice, on the depth, row, column lattice, on all; a
  group of 8 equal shifts (one vector load); a NaN shift; shifts beyond the
  axes; a partial group of 4; sparse mode rounding up or down on each axis.
  A 2 x 3 x 2 volume wraps every tap."""
  rng = np.random.default_rng(sum(dhw))
  c = 28
  x = jnp.asarray(rng.normal(size=(16, *dhw, c)), jnp.float32)
  s = rng.uniform(-2.5, 2.5, (c, 3)).astype(np.float32)
  s[1, 0], s[2, 1], s[3, 2], s[4] = 1.0, -2.0, 0.0, [0.0, 1.0, -1.0]
  s[8:16] = [-0.5, 0.75, -1.25]
  s[5] = [0.25, np.nan, 0.5]
  s[6], s[20], s[21] = [0.5, 13.5, -0.25], [-1.0, 0.5, 12.0], [9.25, 0.0, 0.5]
  for mode in jaxshift.MODES:
    assert_kernel_matches(x, jnp.asarray(s), mode=mode, padding=padding)
  # Sparse mode takes the one pass where no shift is NaN: its input gradient
  # is then a strip's element at depth, row and column tap 0 or 1 per lane.
  s[5], s[7], s[9] = [0.5, -1.5, 2.5], [2.5, 1.5, -0.5], [-1.5, 0.25, 0.75]
  assert_kernel_matches(x, jnp.asarray(s), mode="sparse", padding=padding)
  s = np.round(s[:, ::-1])  # integers: sparse mode's tables are the same
  assert_kernel_matches(x, jnp.asarray(s), mode="sparse", padding=padding)


@pytest.mark.parametrize("padding", ["zeros", "periodic"])
@pytest.mark.parametrize("hw", [(2, 3), (9, 11)])
def test_2d_channels_last_one_pass_backward(hw, padding):
  """2-D channels-last, unit strides, zeros or periodic padding, tables the
  same for both gradients (active mode; integer shifts in sparse mode): the
  CPU backward takes the shift gradient in its adjoint form, from the moved
  rows of g that the input gradient gathers, with x read in place (sparse
  mode too: its input gradient is then one of those rows' elements). Per lane:
  off both lattices, on the row lattice, on the column lattice, on both; a
  group of 8 equal shifts (one vector load); a NaN shift; shifts beyond the
  axes; a partial group of 4. A 2 x 3 image wraps every tap."""
  rng = np.random.default_rng(sum(hw))
  c = 28
  x = jnp.asarray(rng.normal(size=(3, *hw, c)), jnp.float32)
  s = rng.uniform(-2.5, 2.5, (c, 2)).astype(np.float32)
  s[1, 0], s[2, 1], s[3] = 1.0, -2.0, [0.0, 0.0]
  s[8:16] = [0.75, -1.25]
  s[5] = [np.nan, 0.5]
  s[6], s[20] = [13.5, -0.25], [-1.0, 12.0]
  for mode in jaxshift.MODES:
    assert_kernel_matches(x, jnp.asarray(s), mode=mode, padding=padding)
  # Sparse mode takes the one pass where no shift is NaN: its input gradient
  # is then a move to a moved row's element at row and column tap 0 or 1
  # per lane (rounding up or down; ties to even).
  s[5], s[7] = [0.5, -1.5], [2.5, 1.5]
  assert_kernel_matches(x, jnp.asarray(s), mode="sparse", padding=padding)
  s = np.round(s[:, ::-1])  # integers: sparse mode's tables are the same
  assert_kernel_matches(x, jnp.asarray(s), mode="sparse", padding=padding)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("padding", ["zeros", "periodic"])
@pytest.mark.parametrize("lengths", [(2, 8), (9, 11), (3, 2, 13)])
def test_channels_first_one_pass_backward(lengths, padding, dtype):
  """Channels-first, unit strides, rows of 8 cells or more (the CPU's
  direct rows), zeros or periodic padding: a channel whose shift is not NaN
  (3-D: off every lattice), with the same tables for both gradients (active
  mode) or sparse mode's moves by m or m + 1, takes its input gradient and
  shift gradient (adjoint form) in one pass over g's rows, x read in place;
  float32 channel by channel, 16-bit storage where every channel can. Per
  channel: off every lattice, on the rows', the columns' or both lattices
  (the slopes' mean-derivative taps), the depth lattice, NaN, shifts beyond
  the axes, sparse mode rounding up or down on each axis; a 2 x 8 plane
  wraps every row tap. On both instruction sets where the CPU has AVX2."""
  rng = np.random.default_rng(sum(lengths))
  c, nd = 12, len(lengths)
  x = jnp.asarray(rng.normal(size=(3, c, *lengths)), dtype)
  off = rng.uniform(-2.5, 2.5, (c, nd)).astype(np.float32)  # (no lattice: measure zero)
  lattice = off.copy()  # (2-D: every channel in the one pass)
  lattice[1, -2], lattice[2, -1], lattice[3] = 1.0, -2.0, 0.0
  mixed = lattice.copy()
  mixed[6, -2], mixed[7, -1] = 13.5, -12.25  # (zeros padding: the tables' lattice)
  mixed[4, 0] = -1.0  # (3-D: the depth lattice alone)
  mixed[5, -1] = np.nan
  # Sparse mode's exact shifts off every lattice, rounding down or up on
  # each axis (ties to even): its input gradient is one of the rows'
  # elements, at tap 0 or 1 per axis.
  rounding = off.copy()
  rounding[8], rounding[9], rounding[10] = 2.5, -1.5, [0.75, -0.5, 1.5][-nd:]
  for isa in instruction_sets():
    with (cpu_isa(isa) if isa else contextlib.nullcontext(True)) as have:
      if not have:
        continue
      for s in (off, lattice, mixed):
        for mode in jaxshift.MODES:
          assert_kernel_matches(x, jnp.asarray(s), mode=mode, padding=padding, channel_axis=1)
      assert_kernel_matches(x, jnp.asarray(rounding), mode="sparse", padding=padding,
                            channel_axis=1)


@pytest.mark.parametrize("padding", ["zeros", "periodic"])
@pytest.mark.parametrize("lengths,channels", [((7, 7), 12), ((300, 5), 64), ((40, 1), 8),
                                              ((8, 5), 9), ((3, 7), 9)])
def test_channels_first_short_rows_one_pass_backward(lengths, channels, padding):
  """2-D float32 channels-first backwards on planes of rows under 8 cells
  and 40 cells or more, where every channel takes the one pass (zeros or
  periodic padding, no NaN shift; active mode or sparse mode's moves by m
  or m + 1), take each row as one vector: g's rows read 8 cells (the rows
  at g's end their W alone), x read and dx written 8 cells where those are
  the task's rows (the cells past the row written again with the rows
  after it; a channel's last rows their W alone), the shift-gradient sums
  over the row's W lanes. Off and on the lattices, shifts beyond the axes,
  sparse rounding up and down; 300 rows of 64 channels in strips; rows of
  one cell; an 8 x 5 plane wraps its taps; a NaN shift, or a plane under 40
  cells (3 x 7), sends the call to the channel lanes. On both instruction
  sets where the CPU has AVX2."""
  rng = np.random.default_rng(sum(lengths) + channels)
  x = jnp.asarray(rng.normal(size=(3, channels, *lengths)), jnp.float32)
  off = rng.uniform(-2.5, 2.5, (channels, 2)).astype(np.float32)
  lattice = off.copy()
  lattice[1, 0], lattice[2, 1], lattice[3], lattice[4] = 1.0, -2.0, 0.0, [9.5, -11.0]
  rounding = off.copy()
  rounding[5], rounding[6], rounding[7] = [2.5, -1.5], [0.75, -0.5], [-7.5, 6.25]
  nan = off.copy()
  nan[2, 1] = np.nan
  for isa in instruction_sets():
    with (cpu_isa(isa) if isa else contextlib.nullcontext(True)) as have:
      if not have:
        continue
      for s, modes in ((off, jaxshift.MODES), (lattice, jaxshift.MODES),
                       (rounding, ("sparse",)), (nan, ("active",))):
        for mode in modes:
          assert_kernel_matches(x, jnp.asarray(s), mode=mode, padding=padding,
                                channel_axis=1)


def channels_first_ffi_and_jnp(x, s, **kwargs):
  """Yields ("isa padding", the kernel's result, the jnp path's) of
  `jaxshift.shift(x, s, channel_axis=1, **kwargs)` for each padding and each
  instruction set the CPU has. A padding's two functions are compiled once:
  the kernel's instruction set is chosen when it runs (``cpu_isa``)."""
  for padding in jaxshift.PADDINGS:
    kernel, reference = (jax.jit(functools.partial(
        jaxshift.shift, padding=padding, channel_axis=1, impl=impl, **kwargs))
                         for impl in ("ffi", "xla"))
    want = reference(x, s)
    for isa in instruction_sets():
      with (cpu_isa(isa) if isa else contextlib.nullcontext(True)) as have:
        if have:
          yield f"{isa} {padding}", kernel(x, s), want


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
@pytest.mark.parametrize("lengths", [(100, 16), (5, 32), (7, 13), (6, 33), (3, 2, 20),
                                     (4, 3, 9), (4, 70), (2, 4100)])
def test_channels_first_forward_ring(x64, lengths, dtype):
  """Channels-first forwards of unit strides on rows of 8-32 cells (the
  CPU's direct rows) keep each input row's column stencil in a ring for the
  next output row, per depth tap; a channel on the rows' or the columns'
  lattice, NaN, or on rows longer than 32 cells reads its four taps as
  before. 16-bit storage takes the ring on every row up to 4096 cells (70
  cells: edges, a run of vectors inside the row, edges) and lattice case,
  its taps widened as read; longer 16-bit rows take the staged planes. Per
  channel: off every lattice, on the depth lattice alone (one ring), on the
  rows' or the columns' lattice, NaN, beyond the axes; every
  padding (edge vectors through each rule, a last vector overlapping the one
  before where W is not a multiple of 8); 100 rows of 64 channels split
  into strips (a strip's first row taken before its outputs; without far
  shifts, float32's strips are 87 rows, so the second starts on an odd
  row, the ring's other slot). On both instruction sets where the CPU has
  AVX2. The forward is the jnp path's."""
  rng = np.random.default_rng(sum(lengths))
  c, nd = 64 if lengths[0] == 100 else 12, len(lengths)
  x = jnp.asarray(rng.normal(size=(2, c, *lengths)), dtype)
  s = rng.uniform(-2.5, 2.5, (c, nd))
  s[1, -2], s[2, -1], s[3, -1] = 1.0, -2.0, np.nan  # rows', columns' lattice; NaN
  if nd == 3:
    s[4] = [-1.0, 0.5, 1.5]  # the depth lattice alone
  if lengths[0] != 100:
    s[5, -1], s[6, -2] = 40.5, -30.25  # beyond the axes
  s = jnp.asarray(s, dtype)
  for what, got, want in channels_first_ffi_and_jnp(x, s):
    assert_close(got, want, TOL[dtype], what)


STRIDED_ROWS = [((9, 33), 2, "active", "float32"), ((9, 15), 2, "active", "float32"),
                ((40, 16), (2, 1), "active", "float32"),
                ((5, 7, 32), (2, 1, 2), "active", "float32"),
                ((4, 6, 21), 2, "active", "bfloat16"), ((600, 19), (3, 2), "active", "float16"),
                ((9, 33), 2, "sparse", "float32"), ((6, 5, 18), (1, 2, 1), "sparse", "bfloat16")]


def _strided_rows_case(lengths, dtype):
  """x (2 samples, 16 channels first) and its shifts (numpy): per channel off every
  lattice, on each axis' lattice, NaN, beyond the axes, column offsets -2,
  0, 1, 2 and 5."""
  rng = np.random.default_rng(sum(lengths))
  c, nd = 16, len(lengths)
  x = jnp.asarray(rng.normal(size=(2, c, *lengths)), dtype)
  s = rng.uniform(-2.5, 2.5, (c, nd))
  s[1, -1], s[2, -2], s[3, 0], s[4, -1] = 1.0, -2.0, 0.0, np.nan  # lattices; NaN
  s[5, -1], s[6, -2] = 40.5, -30.25  # beyond the axes
  s[7:12, -1] = [1.25, -0.75, -1.5, -2.25, -5.5]  # column offsets -2, 0, 1, 2, 5
  return x, s


@pytest.mark.parametrize("lengths,strides,mode,dtype", STRIDED_ROWS)
def test_channels_first_strided_rows(lengths, strides, mode, dtype):
  """Channels-first strided active forwards of a column stride of 1 or 2
  and at least 8 output columns read rows straight from the array: at column
  stride 2 a vector's two column taps are the even and odd cells of a run
  of 16, at 1 two loads; vectors whose reads leave the row gather their
  cells through the padding (a thread's records kept by offset: channels
  sharing one, and one evicting another). Per channel: off every lattice,
  on each axis' lattice, NaN, beyond the axes, offsets -1 .. 2 and 5 (the
  records' slots, two offsets on one slot); every padding; rows of 8 and
  more outputs, the last vector overlapping the one before; row and depth
  strides; 600 rows split into strips. Sparse's forward, a move, stays on
  the channel lanes (two cases here). On both instruction sets. The jnp
  path's."""
  x, s = _strided_rows_case(lengths, dtype)
  s = jnp.asarray(s, dtype)
  for what, got, want in channels_first_ffi_and_jnp(x, s, strides=strides, mode=mode):
    assert_close(got, want, TOL[dtype], what)


STRIDED_BACKWARD = [((9, 33), 2, "float32"), ((40, 16), (2, 1), "float32"),
                    ((5, 7, 32), (2, 1, 2), "float32"), ((4, 6, 21), 2, "bfloat16"),
                    ((1000, 19), (3, 2), "float16"), ((3, 4, 16), (3, 2, 1), "float32")]


@pytest.mark.parametrize("lengths,strides,dtype", STRIDED_BACKWARD)
def test_channels_first_strided_backward(lengths, strides, dtype):
  """Channels-first strided backwards of a column stride of 1 or 2 and at
  least 8 output columns take the input gradient and the shift gradient in
  one pass over the input rows: each row's list of g's rows (the outputs
  whose reads land on it, through the padding: rows and planes folded onto
  it too) and g's cells a vector of 8 inputs reads by one load and a
  permutation within g's row (at column stride 2 a cell a lane pair; lane
  weights by the parity of the first input); columns folded onto the row
  added after its vectors (16-bit rows through a row of floats). Per
  channel: off every lattice, on each axis' lattice (the slopes' taps -1
  and +1), NaN, beyond the axes, column offsets on the records' slots, the
  last channel's reads at the end of g; every padding; every mode (sparse
  rounding up and down; integer: the input gradient alone); the last
  vector of a row overlapping the one before; rows and planes no output
  reads (stride 3); 1000 rows in strips. On both instruction sets. The jnp
  path's."""
  x, s = _strided_rows_case(lengths, dtype)
  s[12, -2:], s[13, -2:] = [0.5, -1.5], [2.5, 3.5]  # sparse: rounding down and up
  s[15, -1] = -1.5  # the last channel: its last vector reads g's last cells
  s = jnp.asarray(s, dtype)
  pairs = tuple(itertools.product(jaxshift.MODES, jaxshift.PADDINGS))
  for isa in instruction_sets():
    with (cpu_isa(isa) if isa else contextlib.nullcontext(True)) as have:
      if have:
        got = _every_mode_and_padding(x, s, pairs, strides)
        for pair, (kernel, reference) in zip(pairs, got):
          assert_matches(kernel, reference, x.dtype, f"{isa} {pair}")


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_channels_first_strided_backward_keeps_non_finite_local(padding):
  """The strided rows' input gradient masks its taps of weight zero (the
  columns' lattice reads one cell in two; sparse mode's move one of its two
  taps) instead of multiplying them: an inf in g reaches exactly the inputs
  its output reads (scipy's response to a delta there)."""
  rng = np.random.default_rng(3)
  shape, q = (1, 4, 6, 17), (2, 5)  # (N, C, H, W); g's inf at output q
  s = np.array([[0.5, 2.0], [1.0, -1.25], [0.0, 0.0], [-1.5, 0.75]])
  x = rng.normal(size=shape)
  for mode in ("active", "sparse"):
    f = lambda x: jaxshift.shift(x, jnp.asarray(s, jnp.float32), mode=mode, padding=padding,
                                 strides=2, channel_axis=1, impl="ffi")
    y, vjp = jax.vjp(f, jnp.asarray(x, jnp.float32))
    g = np.zeros(y.shape, np.float32)
    g[(0, slice(None)) + q] = np.inf
    dx = np.asarray(jax.jit(vjp)(jnp.asarray(g))[0])
    read = np.zeros(shape, bool)
    for i in np.ndindex(shape[2:]):
      delta = np.zeros(shape)
      delta[(0, slice(None)) + i] = 1.0
      response = scipy_shift(delta, s, mode=mode, padding=padding, strides=2, channel_axis=1)
      read[(0, slice(None)) + i] = response[(0, slice(None)) + q] != 0
    np.testing.assert_array_equal(~np.isfinite(dx), read, err_msg=mode)


@functools.partial(jax.jit, static_argnames=("pairs", "strides"))
def _every_mode_and_padding(x, s, pairs, strides):
  """``_both`` of channels-first calls for each (mode, padding) of `pairs`,
  compiled once."""
  out = []
  for mode, padding in pairs:
    kw = dict(mode=mode, padding=padding, strides=strides, channel_axis=1)
    out.append(_both.__wrapped__(x, s, tuple(sorted(kw.items()))))
  return out


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("lengths", [(8, 8), (100, 8), (3, 5, 8), (7, 7), (100, 5), (9, 1)])
def test_channels_first_rows_of_one_vector(lengths, dtype):
  """Channels-first active forwards on rows of 8 cells (8x8 planes), and 2-D
  float32 ones on rows under 8 cells, take each row as one vector, its
  column taps by a permutation and mask, the row above's value kept for the
  next row. Per channel: off every lattice, on the rows', the columns' or
  both lattices (column offset 0: the row itself; -2: a permutation), NaN,
  beyond the axes; 3-D channels on the depth lattice (one plane; the others
  take the ring); 100 rows of 64 channels split into strips (a strip's first
  row read before its outputs; rows of 5 cells: 8 written where the next
  rows are the strip's, the strip's last rows cell by cell); rows of one
  cell; every padding; both instruction sets. The jnp path's."""
  rng = np.random.default_rng(len(lengths) + lengths[0])
  c, nd = 64 if lengths[0] == 100 else 12, len(lengths)
  x = jnp.asarray(rng.normal(size=(2, c, *lengths)), dtype)
  s = rng.uniform(-2.5, 2.5, (c, nd))
  s[1, -2], s[2, -1], s[3, -2:], s[4, -2:] = 1.0, -2.0, [0.0, 0.0], [1.0, -2.0]
  s[5, -1], s[6, -2], s[7, -1] = 40.5, -30.25, np.nan
  if nd == 3:
    s[8:, 0] = [-1.0, 0.0, 2.0, 0.0][: c - 8]  # the depth lattice: one plane
  s = jnp.asarray(s, dtype)
  for what, got, want in channels_first_ffi_and_jnp(x, s):
    assert_close(got, want, TOL[dtype], what)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int32", "bool"])
@pytest.mark.parametrize("lengths", [(100, 16), (16, 8), (5, 13), (3, 4, 11), (7, 7), (6, 3),
                                     (2, 5, 6)])
def test_channels_first_moves_by_plane(lengths, dtype):
  """Channels-first moves (integer mode, sparse forwards) of unit strides
  copy the output rows whose source rows are the array's as one flat run of
  the plane, at offset m1 W + m2, then set in each row the |m2| cells the
  columns' padding answers; rows read through the rows' padding, column
  offsets of a vector or more and planes outside the depth axis (zeros) go
  by vectors (on rows under 8 cells, 7 and 3 here, cell by cell). Per channel:
  offsets of every sign up to 9 cells (flat, by vectors, beyond short rows),
  rows beyond the axis, NaN; every padding; rows of 8 cells (one vector)
  and 13 (a run under two vectors); 100 rows of 64 channels in
  strips (a strip's rows start inside the plane); int32 of every bit pattern
  (float32's storage, NaNs among them). On both instruction sets where the
  CPU has AVX2. Bit for bit the jnp path's."""
  rng = np.random.default_rng(sum(lengths) + len(dtype))
  c, nd = 64 if lengths[0] == 100 else 12, len(lengths)
  x = rng.normal(size=(2, c, *lengths)) * 40
  if dtype == "int32":  # every bit pattern, NaNs of float32 among them
    x = rng.integers(-2**31, 2**31, size=x.shape)
  x = jnp.asarray(x > 0 if dtype == "bool" else x, dtype)
  s = rng.integers(-9, 10, (c, nd)).astype(np.float32)
  s[1, -2], s[2, -1], s[3, -2] = lengths[-2] + 1, -lengths[-1] - 3, np.nan  # beyond; NaN
  s[4, -1] = 0.0  # rows copied whole
  s = jnp.asarray(s)
  for what, got, want in channels_first_ffi_and_jnp(x, s, mode="integer"):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want), what)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("lengths,channels", [((7, 7), 16), ((5, 4), 9), ((9, 1), 8)])
@pytest.mark.parametrize("mode", ["active", "sparse"])
def test_channels_first_short_rows_on_lanes(lengths, channels, mode, dtype):
  """Channels-first calls on rows under 8 cells, of 8 channels or more,
  take the channel lanes (the direct rows need 8 cells but for 2-D float32
  forwards and one-pass backwards, the test above; the staged planes were
  slower; double's stay there, as before): forward, input gradient
  and shift gradient as the jnp path's, in every padding, with shifts on
  and off the lattice, beyond the axes and NaN; two groups, a group and
  one channel, one group; rows of one cell."""
  rng = np.random.default_rng(sum(lengths) + channels)
  x = jnp.asarray(rng.normal(size=(2, channels, *lengths)), dtype)
  s = rng.uniform(-3, 3, (channels, 2))
  s[1], s[2, 0], s[3, 1], s[4, 1] = [1.0, -2.0], np.nan, 9.5, -20.25
  for padding in jaxshift.PADDINGS:
    assert_kernel_matches(x, jnp.asarray(s, dtype), mode=mode, padding=padding,
                          channel_axis=1)


def cpu_tile_budget(nbytes: int):
  """Runs the CPU lanes with column tiles of an L1 budget of `nbytes` (0:
  no tiles)."""
  return cpu_set("jaxshift_cpu_tile_budget", nbytes)


# The column tiles' budget where they are on (cpu/isa.h's kTileBudget; the
# default only where L1 holds 48 KB or more).
TILE_BUDGET = kernel_sweep.TILE_BUDGET


def l1_data_bytes():
  """This CPU's L1 data cache in bytes as glibc reports it (the library
  asks sysconf), or None where `getconf` cannot say."""
  getconf = shutil.which("getconf")
  if getconf is None:
    return None
  out = subprocess.run([getconf, "LEVEL1_DCACHE_SIZE"], capture_output=True, text=True)
  try:
    return int(out.stdout.strip()) if out.returncode == 0 else None
  except ValueError:
    return None


@pytest.mark.skipif(PLATFORM != "cpu" or EMULATED, reason="the CPU library's setting")
def test_column_tiles_default_follows_l1():
  """The column tiles are on by default (at TILE_BUDGET) only where the L1
  data cache holds 48 KB or more: on a 32 KB L1 (AMD Zen 3) they were
  1.0-1.6x slower in every row measured (benchmarks/NOTES.md, v39). A CPU
  whose size glibc cannot report runs without them."""
  l1 = l1_data_bytes()
  if l1 is None:
    pytest.skip("getconf cannot report the L1 data cache's size")
  # (every test that sets the budget puts it back: cpu_set)
  in_use = cpu_setting("jaxshift_cpu_tile_budget", ctypes.c_int64)(-1)
  assert in_use == (TILE_BUDGET if l1 >= 48 << 10 else 0), l1


def cpu_long_tasks(nbytes: int):
  """Runs the CPU kernels with tasks of `nbytes` or more counted as long
  (their caller leaves them to the pool's threads; 0: every call of two or
  more tasks)."""
  return cpu_set("jaxshift_cpu_long_task_bytes", nbytes)


@pytest.mark.skipif(PLATFORM != "cpu" or EMULATED, reason="the CPU library's threads")
@pytest.mark.parametrize("channel_axis", [-1, 1])
def test_long_tasks_run_on_the_pool_with_the_same_results(channel_axis):
  """The CPU kernels' long tasks (cpu/parallel.h: a call's bytes over its
  tasks of 1 MiB or more) run on every pool thread while the calling XLA
  thread waits; a caller that is a pool thread, or whose helpers do not all
  start, takes tasks itself. With every call of two or more tasks counted
  as long: every mode and padding's forward and both gradients, as
  independent custom calls in one program (which XLA may run on the pool's
  own threads: a call there must not wait on itself), and the same program
  run from two Python threads at once, are the short-task policy's bit for
  bit (each task writes its own outputs; the shift gradient's partial sums
  are added in task order)."""
  rng = np.random.default_rng(3)
  shape = (4, 12, 10, 40) if channel_axis == -1 else (4, 40, 12, 10)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  s = jnp.asarray(rng.uniform(-2.5, 2.5, (40, 2)), jnp.float32)
  run = jax.jit(functools.partial(kernel_sweep.evaluate, strides=1, impl="ffi",
                                  pairs=ALL_PAIRS, channel_axis=channel_axis))
  want = jax.device_get(run(x, s))
  with cpu_long_tasks(0):
    got = [jax.device_get(run(x, s))]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
      got += [f.result() for f in [pool.submit(lambda: jax.device_get(run(x, s)))
                                   for _ in range(2)]]
  for i, pair in itertools.product(range(len(got)), ALL_PAIRS):
    for j, name in enumerate(("forward", "dx", "dshifts")):
      np.testing.assert_array_equal(got[i][pair][j], want[pair][j], f"{i} {pair} {name}")


@pytest.mark.parametrize("dtype,mode", [("float32", "active"), ("float32", "integer"),
                                        ("bfloat16", "active"), ("float16", "active"),
                                        ("bfloat16", "integer"), ("int16", "integer")])
def test_groups_that_share_a_line_run_together(dtype, mode):
  """In channels-last the CPU lanes take the groups of 8 channels that share
  64-byte lines of x and y a column of all at a time: two plain groups of an
  active forward (fused_pair; 16-bit storage in AVX2 its Pair16, two
  gathers and a word blend a column of the pair, unless both are uniform;
  with a row stride of 2 strided_pair16, run here at strides (2, 1) and 2),
  and two groups of 4-byte or four of 2-byte elements of a move without a
  NaN lane (move_line); a group with a lane on the lattice or a NaN shift
  (active), or a NaN shift (moves), or a partial one, goes alone. 100
  channels: group 1 has a lane on the lattice, group 3 a NaN shift and group
  12 4 channels, so groups alone and together alternate at every offset;
  groups 5-7 are uniform (every lane at the same offsets, fractions apart),
  so group 4 pairs with a uniform group and 6 with 7 both uniform. Floats
  carry NaNs in x at one pixel of groups 4 and 5 (the 16-bit stores' NaN
  rule). The forward (and for floats both gradients) is the jnp path's,
  bit for bit where it moves."""
  c = 100
  rng = np.random.default_rng(7)
  s = rng.uniform(-2.5, 2.5, (c, 2)).astype(np.float32)
  s[40:64] = rng.uniform(0.1, 0.9, (24, 2)) + [1.0, -1.0]  # groups 5-7 uniform
  s[9] = [1.0, -0.5]  # group 1: a lane on the rows' lattice
  s[27, 1] = np.nan   # group 3
  shape = (2, 9, 13, c)
  if dtype == "int16":
    x = jnp.asarray(rng.integers(-2**15, 2**15, shape), jnp.int16)
  else:
    x = rng.normal(size=shape)
    x[1, 4, 6, 32:48] = np.nan
    x = jnp.asarray(x, dtype)
  # 16-bit active strided calls pair their groups too (strided_pair16)
  strides = [1, (2, 1), 2] if mode == "active" and dtype != "float32" else [1]
  for padding, stride in itertools.product(("zeros", "periodic"), strides):
    kw = dict(mode=mode, padding=padding, channel_axis=-1, strides=stride)
    if dtype == "int16":
      got, want = (jax.jit(lambda x, s, impl=impl: jaxshift.shift(x, s, impl=impl, **kw))(
          x, jnp.asarray(s)) for impl in ("ffi", "xla"))
      np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=padding)
      continue
    kernel, reference = _both(x, jnp.asarray(s), tuple(sorted(kw.items())))
    if mode == "integer":
      for i, name in enumerate(("forward", "dx")):
        np.testing.assert_array_equal(
            np.asarray(kernel[i]).view(np.uint8), np.asarray(reference[i]).view(np.uint8),
            err_msg=f"{name}: {padding}")
    else:
      assert_matches(kernel, reference, x.dtype, f"{padding}, strides {stride}")


@pytest.mark.parametrize("case", [
    dict(shape=(2, 6, 45, 40)),  # forward 3 tiles of 15, backward 3 of 15
    # A column shift of 20.5 (channel 7): in the folding paddings the input
    # gradient's columns -21 .. -1 fold onto 0 .. 20 (a middle tile's too),
    # which a tile gathers with its own.
    dict(shape=(2, 6, 45, 40), column=20.5),
    # Rows too long for a block of 40 channels' rings in 96 KB: the forward
    # and the 2-D backward take every channel in a task, in strips of 8, 8
    # and 4 rows (lanes_plan's `tiled`); the rest blocks of 32 and 8.
    dict(shape=(2, 20, 90, 40)),
    dict(shape=(2, 7, 90, 40), strides=(2, 3)),  # 30 columns: 2 tiles of 15
    # 16-bit storage: the pairs of groups (Pair16) and their column terms
    # read tile by tile.
    dict(shape=(2, 6, 45, 40), dtype=jnp.bfloat16),
    dict(shape=(2, 7, 90, 40), strides=(2, 3), dtype=jnp.float16),
    dict(shape=(2, 3, 4, 37, 24)),  # 3-D, tasks spanning their planes
    dict(shape=(2, 3, 4, 90, 40)),  # 3-D spans of every channel (as above)
    dict(shape=(2, 24, 9, 70), channel_axis=1, strides=2),  # channels-first
])
def test_lanes_column_tiles(case):
  """Rows wide enough that the CPU lanes split a task's columns into tiles
  (so that the rows a line of x or g is read from stay in L1): 40 channels
  (a partial group), shifts within +-2.5 with a lane on each lattice, a NaN
  shift, a shift beyond the rows (which narrows the tiles to 16 columns);
  every mode and padding, and sparse mode without the NaN (its one-pass
  backward). On the CPU the tiles' forward and input gradient are the
  untiled kernel's bit for bit (the shift gradient, in one pass or two, is
  summed tile by tile: the same to rounding); a pair of each mode matches
  the jnp path (the untiled kernel is checked against it by the other
  tests)."""
  shape = case["shape"]
  kw = dict(channel_axis=case.get("channel_axis", -1),
            strides=case.get("strides", 1))
  c, nd = shape[kw["channel_axis"]], len(shape) - 2
  rng = np.random.default_rng(sum(shape))
  x = jnp.asarray(rng.normal(size=shape), case.get("dtype", jnp.float32))
  s = rng.uniform(-2.5, 2.5, (c, nd)).astype(np.float32)
  s[1, -2:], s[2, -1], s[3] = [1.0, 0.5], -2.0, 0.0
  s[5, -1] = np.nan
  s[6, -2] = 13.5
  if "column" in case:
    s[7, -1] = case["column"]
  sparse = s.copy()
  sparse[5, -1] = 0.5
  one_pass = (("sparse", "zeros"), ("sparse", "periodic"))
  checked = (("active", "zeros"), ("sparse", "periodic"),
             ("integer", "reflect"))
  for shifts, pairs in ((s, ALL_PAIRS), (sparse, one_pass)):
    # (tiles on, whatever this CPU's default: test_column_tiles_default_follows_l1)
    with cpu_tile_budget(TILE_BUDGET):
      for mode, padding in pairs:
        if (mode, padding) in checked:
          assert_kernel_matches(x, jnp.asarray(shifts), mode=mode,
                                padding=padding, **kw)
      if PLATFORM != "cpu" or EMULATED:
        continue
      run = functools.partial(kernel_sweep.evaluate, x, jnp.asarray(shifts),
                              impl="ffi", pairs=pairs, **kw)
      tiled = jax.block_until_ready(run())
    with cpu_tile_budget(0):
      untiled = jax.block_until_ready(run())
    for pair in pairs:
      for i, name in enumerate(("forward", "dx")):
        np.testing.assert_array_equal(tiled[pair][i], untiled[pair][i],
                                      f"{pair} {name}")
      assert_close(tiled[pair][2], untiled[pair][2], 1e-5, f"{pair} dshifts")


def cpu_windows(on: bool):
  """Runs the CPU lanes' 2-D float32 forward with window rows (where a
  group's offsets allow) or with gathers everywhere."""
  return cpu_set("jaxshift_cpu_windows", int(on))


def window_shifts(c, nd, rng):
  """Shifts for the window rows' test, a group of 8 channels at a time
  (groups past the list take the first ones' kinds): integer parts spanning
  4, 3, 1 (fractions alike) and 5 values (gathers) on rows and columns; far
  offsets that put the window inside x only on the first rows, or only on
  the last; a lane at each lattice and a NaN shift (gathers); a group of
  equal shifts (one load)."""
  s = rng.uniform(-1.99, 1.99, (c, nd)).astype(np.float32)
  kinds = [
      lambda g: np.clip(g, -1.99, 1.99),                    # -2 .. 1
      lambda g: np.stack([g[:, 0] * 0 + 0.75, g[:, 1] * 0.7 - 0.6], 1),  # 0; -2 .. 0
      lambda g: g * 1.3,                                   # -3 .. 2: gathers
      lambda g: g + [4.0, 0.0],                            # rows 2 .. 5
      lambda g: g - [4.0, 0.0],                            # rows -6 .. -3
      lambda g: np.where(np.arange(8)[:, None] == 3, [0.0, 0.5], g),  # row lattice
      lambda g: np.where(np.arange(8)[:, None] == 5, np.nan, g),      # NaN
      lambda g: g * 0 + [1.25, -0.5],                      # equal
  ]
  for k in range(c // 8):
    g = s[8 * k:8 * k + 8, -2:]
    s[8 * k:8 * k + 8, -2:] = kinds[k % len(kinds)](g)
  return s


@pytest.mark.skipif(PLATFORM != "cpu" or EMULATED, reason="the CPU library's setting")
@pytest.mark.parametrize("isa", instruction_sets())
@pytest.mark.parametrize("case", [
    dict(shape=(2, 13, 21, 64)),  # every kind of group; rows leave and enter
    dict(shape=(1, 9, 12, 20)),   # 8 window outputs a row (the least), a partial group
    dict(shape=(1, 10, 11, 16)),  # 7: gathers
    dict(shape=(1, 7, 100, 32), tiles=True),  # column tiles (rows 2 .. 5: 9 rows of x)
    # 3-D strided in depth (a plane a task, as 2-D): one depth offset a group
    # (window rows, but where it is beyond the volume) or two (gathers)
    dict(shape=(2, 5, 9, 14, 16), strides=(2, 1, 1)),
], ids=lambda c: "x".join(map(str, c["shape"])) + (" tiles" if c.get("tiles") else ""))
def test_window_rows_match_the_gathers(case, isa):
  """The CPU lanes' 2-D float32 channels-last forward takes window rows
  (plain vector loads and per-lane blends instead of gathers) for groups
  whose integer offsets span at most 4 values an axis, on the rows and
  columns where the window is inside x: the active stencils (window_row)
  and the sparse and integer moves (window_move). Its outputs are the
  gathers' bit for bit (the same operands, the same order), in every mode
  and padding and on both instruction sets, and so are the gradients
  (their kernels do not change); and they match the jnp path."""
  shape = case["shape"]
  nd = len(shape) - 2
  rng = np.random.default_rng(sum(shape))
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  s = window_shifts(shape[-1], nd, rng)
  if nd == 3:  # depth on its lattice: group 0 one offset, group 1 two
    s[:8, 0], s[8:, 0] = 1.0, np.arange(8) % 2 - 1.0
  pairs = ALL_PAIRS
  budget = TILE_BUDGET if case.get("tiles") else 0
  with cpu_isa(isa) if isa else contextlib.nullcontext(True) as has:
    if not has:
      pytest.skip(f"this CPU has no {isa}")
    with cpu_tile_budget(budget):
      strides = case.get("strides", 1)
      run = functools.partial(kernel_sweep.evaluate, x, jnp.asarray(s), impl="ffi",
                              pairs=pairs, strides=strides, channel_axis=-1)
      with cpu_windows(True):
        windows = jax.block_until_ready(run())
        for mode, padding in (("active", "zeros"), ("active", "reflect"),
                              ("sparse", "periodic"), ("integer", "symmetric")):
          assert_kernel_matches(x, jnp.asarray(s), mode=mode, padding=padding,
                                strides=strides)
      with cpu_windows(False):
        gathers = jax.block_until_ready(run())
  for pair in pairs:
    for i, name in enumerate(("forward", "dx", "dshifts")):
      np.testing.assert_array_equal(windows[pair][i], gathers[pair][i], f"{pair} {name}")


@pytest.mark.parametrize("hw,strides", [((9, 11), 2), ((12, 13), (2, 3)),
                                        ((10, 9), (4, 3)), ((3, 2), 2)])
def test_2d_channels_last_strided_one_pass_backward(hw, strides):
  """2-D channels-last, strides of 2 or more on both axes, zeros padding: of
  an axis' taps 0 and 1 at most one collects an output for an input, so the
  CPU backward reads one element of g a lane and input, and takes both the
  input gradient and the shift gradient (in its adjoint form, x read in
  place) from it; lanes at an axis' lattice also read its slope taps -1 and
  +1 (with a stride of 2 both may collect an output). Per lane: off both
  lattices, on the row lattice, on the column lattice, on both; a group of 8
  equal shifts (one vector load); a NaN shift; shifts beyond the axes; a
  partial group of 4; sparse mode rounding up or down on each axis."""
  rng = np.random.default_rng(sum(hw))
  c = 28
  x = jnp.asarray(rng.normal(size=(3, *hw, c)), jnp.float32)
  s = rng.uniform(-3.5, 3.5, (c, 2)).astype(np.float32)
  s[1, 0], s[2, 1], s[3], s[4] = 1.0, -2.0, [0.0, 0.0], [-3.0, 1.0]
  s[8:16] = [0.75, -1.25]
  s[5] = [np.nan, 0.5]
  s[6], s[20] = [13.5, -0.25], [-1.0, 12.0]
  for mode in jaxshift.MODES:
    assert_kernel_matches(x, jnp.asarray(s), mode=mode, strides=strides)
  # Sparse mode takes the one pass where no shift is NaN: its input gradient
  # is G where the picked taps are the move's (m or m + 1) on both axes.
  s[5], s[7], s[9] = [0.5, -1.5], [2.5, 1.5], [-0.5, 0.25]
  assert_kernel_matches(x, jnp.asarray(s), mode="sparse", strides=strides)
  s = np.round(s[:, ::-1])  # integers: every lane on both lattices
  for mode in ("active", "sparse"):
    assert_kernel_matches(x, jnp.asarray(s), mode=mode, strides=strides)


def _float16_extremes(shape, rng):
  """float16 values across the range, with the conversions' edge cases:
  subnormals, the largest finite, ties of neighbouring halves, infinities
  and NaNs (with payloads, signalling or not)."""
  special = np.array([0.0, -0.0, 2.0**-24, -(2.0**-24), 3 * 2.0**-24, 2.0**-14,
                      6.1e-5, 65504.0, -65504.0, 1.0, 1.0 + 2.0**-10, np.inf,
                      -np.inf, np.nan, -np.nan, 1e-3, 2.5e4], np.float16)
  payloads = np.array([0x7C01, 0xFD55, 0x7E3F], np.uint16).view(np.float16)  # NaNs
  special = np.concatenate([special, payloads])
  x = rng.normal(scale=rng.choice([1e-6, 1e-2, 1.0, 1e4], size=shape)).astype(np.float16)
  pick = rng.random(shape) < 0.3
  x[pick] = rng.choice(special, size=int(pick.sum()))
  return x


def _bfloat16_extremes(shape, rng):
  """bfloat16 values across the range: subnormals (float's), the largest
  finite, neighbours whose averages tie, infinities and NaNs (with
  payloads, signalling or not)."""
  bits = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x0003, 0x0080, 0x7F7F, 0xFF7F,
                   0x3F80, 0x3F81, 0x3F83, 0x7F80, 0xFF80, 0x7FC0, 0xFFC0,
                   0x7F81, 0xFFD5, 0x7FBF], np.uint16)
  special = bits.view(jnp.bfloat16)
  x = rng.normal(scale=rng.choice([1e-30, 1e-2, 1.0, 1e30], size=shape)).astype(jnp.bfloat16)
  grid = rng.random(shape) < 0.6  # on one binade's grid: sums of four that tie
  x[grid] = (1 + rng.integers(0, 128, int(grid.sum())) / 128).astype(jnp.bfloat16)
  pick = rng.random(shape) < 0.2
  x[pick] = rng.choice(special, size=int(pick.sum()))
  return x


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("channels_last,strides", [(True, 1), (False, 1), (True, (1, 2)),
                                                    (True, 2)])
def test_16_bit_conversions_agree_on_every_instruction_set(channels_last, strides, dtype):
  """16-bit storage is widened to float and rounded back: in software in
  the baseline versions; in the AVX2 ones by F16C's instructions (float16)
  and by vector integer code whose NaN rule runs only where a lane is NaN.
  With shifts of 0.5 and 0 (exact products, one rounding per sum, whether
  fused or not) both must give the same bits (a NaN's sign and payload
  aside) for the forward and the input gradient, on values across the
  range: subnormals, the largest finite, ties, infinities, NaNs. In
  channels-first 2-D unit strides run the direct rows' ring (the rows'
  stencil outside the columns'); channels-last and strided calls the lanes,
  whose channels 16-31 (shifts of +-0.5 only: no lane at a lattice) are a
  pair of plain groups (fused_pair's Pair16 in AVX2, and strided_pair16
  with a row stride of 2). Against the jnp path: to an ulp or two, plus
  where terms of these extremes cancel, float's rounding of the sum (a
  bound from the terms' magnitudes: the ring adds them in another order)."""
  if PLATFORM != "cpu" or EMULATED or platform.machine() != "x86_64":
    pytest.skip("the CPU kernel's x86-64 instruction sets")
  rng = np.random.default_rng(3)
  c = 32
  extremes = _float16_extremes if dtype == "float16" else _bfloat16_extremes
  shape = (2, 7, 12, c) if channels_last else (2, c, 7, 12)
  x = jnp.asarray(extremes(shape, rng))
  g = jnp.asarray(extremes(
      jax.eval_shape(lambda: jaxshift.shift(x, jnp.zeros((c, 2)), strides=strides,
                                            channel_axis=-1 if channels_last else 1)).shape,
      rng))
  s = rng.choice([0.0, 0.5, -0.5, 1.0], size=(c, 2))
  s[16:] = rng.choice([0.5, -0.5], size=(c - 16, 2))
  s = jnp.asarray(s, jnp.float32)

  @jax.jit
  def run(x, g):
    f = lambda x: jaxshift.shift(x, s, impl="ffi", strides=strides,
                                 channel_axis=-1 if channels_last else 1)
    y, vjp = jax.vjp(f, x)
    return y, vjp(g)[0]

  bits = {}
  for isa in ("avx2", "baseline"):
    with cpu_isa(isa) as have:
      if have:
        bits[isa] = [np.asarray(v).view(np.uint16) for v in run(x, g)]
  assert "baseline" in bits
  if "avx2" not in bits:
    pytest.skip("this CPU has no AVX2 + FMA + F16C")
  quiet = 0x0200 if dtype == "float16" else 0x0040
  for name, a, b in zip(("forward", "dx"), bits["avx2"], bits["baseline"]):
    # A NaN's sign (and bfloat16's payload) is whichever operand's NaN the
    # arithmetic passed on, which fused and unfused multiply-adds choose
    # differently; every NaN is stored quiet (float16's without payload).
    nan = np.isnan(a.view(dtype))
    np.testing.assert_array_equal(nan, np.isnan(b.view(dtype)), err_msg=name)
    np.testing.assert_array_equal(a[~nan], b[~nan], err_msg=name)
    assert ((a[nan] & quiet) != 0).all() and ((b[nan] & quiet) != 0).all(), name
    if dtype == "float16":
      assert ((a[nan] & 0x7FFF) == 0x7E00).all() and ((b[nan] & 0x7FFF) == 0x7E00).all(), name
  # ... and what they compute is the shift (the jnp path, to the dtype's
  # precision); at least one NaN and one infinity came through.
  y = bits["avx2"][0].view(dtype)
  assert np.isnan(y).any() and np.isinf(y).any()
  reference = jax.jit(lambda x: jaxshift.shift(
      x, s, impl="xla", strides=strides, channel_axis=-1 if channels_last else 1))(x)
  reference = np.asarray(reference)
  np.testing.assert_array_equal(np.isnan(y), np.isnan(reference))
  finite = np.isfinite(reference)
  np.testing.assert_array_equal(y[~finite & ~np.isnan(y)], reference[~finite & ~np.isnan(y)])
  # to an ulp or two, subnormals included (bfloat16's: float's, which XLA
  # may flush), plus float's rounding of a sum of four terms: 3 roundings
  # of at most 2^-24 of the sum of the terms' magnitudes (the shift of |x|)
  magnitude = jax.jit(lambda x: jaxshift.shift(
      jnp.abs(x.astype(jnp.float32)), s, impl="xla", strides=strides,
      channel_axis=-1 if channels_last else 1))(x)
  got, want = y[finite].astype(np.float32), reference[finite].astype(np.float32)
  rtol, atol = (2e-3, 2.0**-23) if dtype == "float16" else (1.6e-2, 2.0**-120)
  bound = rtol * np.abs(want) + atol + 2.0**-22 * np.asarray(magnitude)[finite]
  np.testing.assert_array_less(np.abs(got - want), bound + np.finfo(np.float32).tiny)


# Each group in one layout, alternating (the sanitizer sweep runs both).
ODD_CASES = [c for i, c in enumerate(kernel_sweep.cases(
    kernel_sweep.GROUPS + kernel_sweep.X64_GROUPS)) if i % 4 in (0, 3)]


@pytest.mark.parametrize("case", ODD_CASES, ids=lambda c: c["name"])
def test_odd_cases_match_jnp_path(case):
  """The sanitizer sweep's cases (tests/kernel_sweep.py), checked for values:
  tiny and length-1 axes, far and huge shifts, strides beyond the axis, NaN
  shifts, depth-one volumes, planes too large to stage; the column tiles'
  cases tiled on any CPU, as the sweep runs them."""
  tiles = (cpu_tile_budget(TILE_BUDGET) if PLATFORM == "cpu" and not EMULATED
           else contextlib.nullcontext())
  with jax.enable_x64(case["dtype"] == "float64"), tiles:
    x = jnp.asarray(case["x"], case["dtype"])
    kw = dict(strides=case["strides"], channel_axis=case["channel_axis"],
              pairs=case["pairs"])
    kernel = kernel_sweep.evaluate(x, case["shifts"], impl="ffi", **kw)
    reference = kernel_sweep.evaluate(x, case["shifts"], impl="xla", **kw)
    for pair in case["pairs"]:
      assert_matches(kernel[pair], reference[pair], x.dtype, str(pair))


@pytest.mark.parametrize("x_dtype", ["float16", "bfloat16", "float32",
                                     "float64"])
def test_every_dtype_pair_agrees(x64, x_dtype):
  """One dtype policy: for every dtype of x and of the shifts, both paths
  compute the same thing, and the forward is the float64 oracle's to x's
  precision. Far float64 shifts keep their fraction (1e9 + 0.5)."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 5, 6, 3)), x_dtype)
  base = np.array([[0.3, -1.5], [2.25, 0.0], [-0.75, 4.5]])
  for s_dtype in ["float16", "bfloat16", "float32", "float64", "int32"]:
    # periodic: the reduction modulo the period; border: the clip, which
    # matters for the far float64 shifts.
    for padding in ("periodic", "border") if s_dtype == "float64" else (
        "periodic",):
      s = base + (1e9 if s_dtype == "float64" and padding == "periodic"
                  else 0)
      if s_dtype == "int32":
        s, mode = np.round(base).astype(np.int32), "integer"
      else:
        s, mode = jnp.asarray(s, s_dtype), "active"
      kernel, reference = _both(x, s, (("mode", mode), ("padding", padding)))
      what = f"x {x_dtype}, shifts {s_dtype}, {padding}"
      if s_dtype == "int32":  # integer shifts have no tangent (float0)
        assert kernel[2].dtype == reference[2].dtype == jax.dtypes.float0
        for i in range(2):
          assert kernel[i].dtype == reference[i].dtype
          assert_close(kernel[i], reference[i], TOL[x_dtype], what)
      else:
        assert_matches(kernel, reference, x_dtype, what)
      want = scipy_shift(np.asarray(x, np.float64),
                         np.asarray(s, np.float64) % 30 if padding ==
                         "periodic" else np.asarray(s, np.float64),
                         mode=mode, padding=padding)
      assert_close(kernel[0], want, 2 * TOL[x_dtype], what + " vs scipy")


def test_stride_beyond_the_axis_and_a_shift_beyond_every_bound(x64):
  oracles.check_far_stride_case("ffi")


def test_worked_cases():
  oracles.worked_cases("ffi")


def _libraries():
  """Every kernel library this install built (cpu, cuda_emulated, cuda)."""
  root = importlib.resources.files("jaxshift")
  for name in ("cpu", "cuda_emulated", "cuda"):
    path = root / f"libjaxshift_{name}.so"
    if path.is_file():
      yield name, str(path)


def test_libraries_agree_with_python_on_paddings_and_the_axis_bound():
  """Each library reports the padding name of each code it decodes and its
  longest axis (ffi/common.h, JAXSHIFT_EXPORT_CONTRACT): they must be
  jaxshift.PADDINGS, in order, and shapes.MAX_AXIS_LENGTH."""
  seen = []
  for name, path in _libraries():
    try:
      lib = ctypes.CDLL(path)
    except OSError:  # the CUDA library needs a driver to load
      continue
    padding_name = getattr(lib, f"jaxshift_{name}_padding_name")
    padding_name.restype, padding_name.argtypes = ctypes.c_char_p, [ctypes.c_int]
    names = []
    while (got := padding_name(len(names))) is not None:
      names.append(got.decode())
    assert tuple(names) == jaxshift.PADDINGS, name
    assert padding_name(-1) is None
    bound = getattr(lib, f"jaxshift_{name}_max_axis_length")
    bound.restype = ctypes.c_int64
    assert bound() == shapes.MAX_AXIS_LENGTH == jaxshift.MAX_AXIS_LENGTH, name
    seen.append(name)
  assert {"cpu", "cuda_emulated"} <= set(seen), seen


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_subnormals_at_the_lattice_agree_on_every_instruction_set(dtype):
  """XLA runs the kernels under denormals-are-zero, where a multiply by a
  weight of 1 read from memory flushes a subnormal to zero and one the
  compiler folds away does not: an active shift at whole numbers must give
  the same bits in both instruction sets (a lambda GCC left out of line in
  the baseline build once made its lattice stencils run-time values there:
  subnormal moves flushed in the baseline alone). Subnormals, zeros of both
  signs and normals; every row length class of the direct rows (under 8
  cells, 8, the ring's, the general loop's) and the lanes, both layouts,
  3-D, every padding. Where it keeps a value, it is the move's (numpy's)."""
  if PLATFORM != "cpu" or EMULATED or platform.machine() != "x86_64":
    pytest.skip("the CPU kernel's x86-64 instruction sets")
  rng = np.random.default_rng(11)
  tiny = {"float32": 1e-39, "bfloat16": 1e-39, "float16": 3e-6}[dtype]
  cases = [((6, 5), 1), ((8, 8), 1), ((7, 12), 1), ((5, 40), 1), ((7, 12), -1), ((6, 5), -1),
           ((3, 4, 9), 1)]
  for k, (spatial, axis) in enumerate(cases):
    c = 16
    shape = (2, c, *spatial) if axis == 1 else (2, *spatial, c)
    x = rng.choice([1, -1], shape) * np.where(rng.random(shape) < 0.7, tiny, 1.0)
    x = (x * rng.uniform(1, 4, shape)).astype(jnp.dtype(dtype))
    x[rng.random(shape) < 0.1] = -0.0
    s = rng.integers(-3, 4, (c, len(spatial))).astype(np.float32)
    s[0] = 0.0
    padding = jaxshift.PADDINGS[k % len(jaxshift.PADDINGS)]
    bits = np.uint32 if dtype == "float32" else np.uint16
    want = oracles.numpy_move(x, s, padding=padding, channel_axis=axis).view(bits)
    got = {}
    for isa in ("avx2", "baseline"):
      with cpu_isa(isa) as have:
        if have:
          got[isa] = np.asarray(jaxshift.shift(jnp.asarray(x), jnp.asarray(s), impl="ffi",
                                               padding=padding, channel_axis=axis)).view(bits)
    where = f"{shape} {padding}"
    if "avx2" in got:
      np.testing.assert_array_equal(got["avx2"], got["baseline"], err_msg=where)
    y = got["baseline"]
    # normals and zeros (their signs too) as the move's; a subnormal as the
    # move's or flushed to the zero of its sign
    w = np.abs(want.view(x.dtype).astype(np.float32))
    subnormal = (w != 0) & (w < float(jnp.finfo(dtype).tiny))
    np.testing.assert_array_equal(y[~subnormal], want[~subnormal], err_msg=where)
    sign = want & bits(1 << (8 * np.dtype(bits).itemsize - 1))
    assert ((y == want) | (y == sign))[subnormal].all(), where


def test_tiny_shifts_are_off_the_lattice():
  oracles.check_tiny_shifts("ffi")


def test_integer_and_bool_tensors_move_bit_for_bit(x64):
  """Through the kernels as float bits of their width: no value may change,
  NaN and subnormal bit patterns included."""
  oracles.check_integer_moves("ffi")


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.uint32, np.int8, np.uint8,
                                   np.bool_])
def test_integer_moves_take_their_own_width_without_a_conversion(dtype):
  """Integers of 2 and 4 bytes go through the kernels as they are (moved as
  the float storage of their width), 1-byte ones and bool as int16: every bit
  pattern (float NaNs and subnormals among them) moves unchanged in the
  channel lanes and the direct rows (16 channels, both layouts, every
  padding, strides 1 and 2, a channel with a NaN shift), no conversion pass
  reads x before the kernel, and with zeros padding none writes y after it."""
  rng = np.random.default_rng(7)
  for i, padding in enumerate(jaxshift.PADDINGS):
    last = i % 2 == 0
    shape = (2, 9, 11, 16) if last else (2, 16, 9, 11)
    x = oracles.random_values(rng, shape, dtype)
    s = rng.integers(-4, 5, (16, 2)).astype(np.float32)
    s[3] = np.nan  # a NaN shift: that channel is zeros
    for strides in (1, 2):
      kw = dict(padding=padding, channel_axis=-1 if last else 1, strides=strides)
      y = jaxshift.shift(jnp.asarray(x), jnp.asarray(s), mode="integer", impl="ffi", **kw)
      assert y.dtype == x.dtype
      want = oracles.numpy_move(x, np.nan_to_num(s), **kw)
      (want[..., 3] if last else want[:, 3])[...] = 0
      np.testing.assert_array_equal(np.asarray(y), want, err_msg=f"{padding} strides={strides}")
  f = lambda x: jaxshift.shift(x, jnp.zeros((16, 2)), mode="integer", impl="ffi")
  text = _hlo(f, jnp.asarray(x))
  call = _custom_call(text, FORWARD)
  width = np.dtype(np.int16 if np.dtype(dtype).itemsize == 1 else dtype)
  hlo_type = ("u" if width.kind == "u" else "s") + str(8 * width.itemsize)  # s16, u32, ...
  assert f" {hlo_type}[" in call.split("custom-call(")[0], call
  if np.dtype(dtype).itemsize > 1:
    assert _operand_ops(text, FORWARD, 1) in (["parameter"], ["bitcast"])
    # Zeros padding: nothing after the kernel (a NaN channel reads padding).
    root = next(line for line in text[text.index("ENTRY"):].splitlines() if "ROOT" in line)
    assert " bitcast(" in root or "custom-call(" in root, root


def test_kernel_takes_integers_only_to_move():
  """An integer x is a move's alone: the C++ side rejects one without
  `move`, and a backward of one."""
  x = jnp.ones((2, 1, 1, 5, 3), jnp.int32)
  m, f = jnp.zeros((1, 3, 3), jnp.int32), jnp.zeros((1, 3, 3), jnp.float32)
  np.testing.assert_array_equal(_direct_forward(x, m, f, move=True), x)
  with pytest.raises(Exception, match="jaxshift: an integer x takes only moves"):
    _direct_forward(x, m, f)
  with pytest.raises(Exception, match="x must be float16, bfloat16, float32 or float64"):
    _direct_forward(x.astype(jnp.int8), m, f, move=True)
  backward = jax.ffi.ffi_call(BACKWARD, (jax.ShapeDtypeStruct(x.shape, x.dtype),
                                         jax.ShapeDtypeStruct((2, 3, 3), jnp.float32)))
  with pytest.raises(Exception, match="jaxshift: the backward takes a floating x"):
    jax.block_until_ready(backward(
        x, x, m, f, m, f, padding=np.int64(0), channels_last=True,
        strides=np.array([1, 1, 1], np.int64), present=np.array([0, 0, 1], np.int64),
        shift_grad=True))


def _hlo(f, *args):
  return jax.jit(f).lower(*args).compile().as_text()


def _custom_call(text, target):
  """The line of `target`'s one custom call in compiled HLO `text`."""
  (call,) = [line for line in text.splitlines()
             if f'custom_call_target="{target}"' in line]
  return call


def _operand_ops(text, target, count):
  """The opcodes that make the first `count` operands of `target`'s one
  custom call in compiled HLO `text`."""
  call = _custom_call(text, target)
  names = re.search(r"custom-call\(([^)]*)\)", call).group(1).split(", ")[:count]
  ops = []
  for name in names:
    (line,) = [line for line in text.splitlines()
               if line.strip().startswith(("ROOT " + name + " ", name + " "))]
    ops.append(re.search(r"\} (\w[\w-]*)\(", line).group(1))
  return ops


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("shape, channel_axis", [((2, 6, 5, 8), -1), ((2, 8, 6, 5), 1),
                                                 ((2, 7, 8), -1), ((2, 3, 4, 5, 8), -1)],
                         ids=["2d-nhwc", "2d-nchw", "1d", "3d"])
def test_kernels_take_their_inputs_without_a_copy(shape, channel_axis, dtype):
  """x (and g) reach the custom calls as bitcasts of the caller's arrays:
  the reshape to the canonical rank 5 adds axes of length 1, and XLA's CPU
  layout assignment, left to itself, put such an axis first for bfloat16 and
  then copied the whole input to row-major before each call."""
  c = shape[channel_axis]
  x = jnp.ones(shape, dtype)
  s = jnp.full((c, len(shape) - 2), 0.5)
  f = lambda x, s: jaxshift.shift(x, s, channel_axis=channel_axis, impl="ffi")
  assert _operand_ops(_hlo(f, x, s), FORWARD, 1) in (["parameter"], ["bitcast"])
  vjp = lambda x, s, g: jax.vjp(f, x, s)[1](g)
  ops = _operand_ops(_hlo(vjp, x, s, x), BACKWARD, 2)
  assert set(ops) <= {"parameter", "bitcast"}, ops


@pytest.mark.skipif(PLATFORM != "cpu" or EMULATED or platform.machine() != "x86_64",
                    reason="the CPU library's AVX2 versions")
@pytest.mark.skipif(not shutil.which("nm"), reason="binutils' nm lists the library's code")
def test_avx2_versions_inline_their_loops():
  """Each AVX2 version (cpu/isa.h: `name_avx2`, `flatten`) holds all the code
  it runs: no function of an AVX2 instantiation (`Isa)1`) is left out of
  line, where GCC compiles it for the baseline (slow; a vector returned
  across it breaks the ABI: with a loop body's lambdas out of line, the 3-D
  float16 channels-first backward crashed). Large loop bodies say
  JAXSHIFT_INLINE; without it on backward_direct's, this lists its 3-D
  bodies."""
  names = subprocess.run(["nm", "--demangle", "--defined-only",
                          str(ffi_module.library_path("cpu"))],
                         capture_output=True, text=True, check=True).stdout.splitlines()
  out_of_line = [n.split(" ", 2)[-1] for n in names
                 if "(jaxshift::Isa)1" in n and "_avx2<" not in n.split("(", 1)[0]]
  assert not out_of_line, "\n".join(n[:300] for n in out_of_line[:10])


@pytest.mark.skipif(PLATFORM != "cpu" or EMULATED, reason="the CPU kernel's own reads")
def test_gathers_stay_inside_their_buffers():
  """x and g end (and, in turn, start) at an unreadable page: guard_pages.py,
  in a subprocess (a read past them is a segmentation fault there). The
  lanes' 16-bit gathers read 32 bits a lane: lanes 1-7 the 32 bits that end
  at their element, lane 0 those that start at it, tested against the
  buffer's last element where C % 8 == 1 (cpu/lanes.h, read8). Every mode
  and padding; 9, 12 and 16 channels; one and two samples; strides 1 and 2.
  Lane 0 read as the others, or C % 8 == 1 untested, each fail it."""
  tests = pathlib.Path(__file__).parent
  run = subprocess.run([sys.executable, str(tests / "guard_pages.py")], cwd=tests,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True,
                       text=True, timeout=600)
  assert run.returncode == 0 and run.stdout.startswith("ok"), (
      f"exit {run.returncode}\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}")


def test_lowers_to_one_custom_call_and_vmap_does_not_loop():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(4, 2, 7, 6, 5)), jnp.float32)
  s = jnp.asarray(rng.normal(size=(4, 5, 2)), jnp.float32)
  f = lambda x, s: jaxshift.shift(x, s, impl="ffi")
  fwd, bwd = FORWARD, BACKWARD
  text = _hlo(f, x[0], s[0])
  assert len(re.findall(fwd, text)) == 1
  for in_axes in [(0, None), (0, 0), (None, 0)]:
    xs = x if in_axes[0] == 0 else x[0]
    ss = s if in_axes[1] == 0 else s[0]
    vf = jax.vmap(f, in_axes)
    text = _hlo(vf, xs, ss)
    assert len(re.findall(fwd + r"\b", text)) == 1, in_axes
    assert " while(" not in text and "while." not in text, in_axes
    jf = jax.jit(f)
    want = jnp.stack([jf(xs[i] if in_axes[0] == 0 else xs,
                         ss[i] if in_axes[1] == 0 else ss) for i in range(4)])
    np.testing.assert_allclose(vf(xs, ss), want, rtol=1e-6, atol=1e-6)
    # vmap of the gradient: one backward launch, per-example gradients.
    g = jax.vmap(jax.grad(lambda x, s: jnp.sum(f(x, s) ** 2), (0, 1)),
                 in_axes)
    text = _hlo(g, xs, ss)
    assert len(re.findall(bwd + r"\b", text)) == 1 and "while" not in text
    per = g(xs, ss)
    one = jax.jit(jax.grad(lambda x, s: jnp.sum(f(x, s) ** 2), (0, 1)))
    for i in range(4):
      xi = xs[i] if in_axes[0] == 0 else xs
      si = ss[i] if in_axes[1] == 0 else ss
      dx, ds = one(xi, si)
      np.testing.assert_allclose(per[1][i], ds, rtol=1e-5, atol=1e-4)
      if in_axes[0] == 0:
        np.testing.assert_allclose(per[0][i], dx, rtol=1e-5, atol=1e-5)


def test_nested_vmap():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(3, 2, 2, 6, 4)), jnp.float32)
  s = jnp.asarray(rng.normal(size=(3, 4, 1)), jnp.float32)
  f = lambda x, s: jaxshift.shift(x, s, impl="ffi")
  vv = jax.vmap(jax.vmap(f, (0, None)), (0, 0))
  ref = jax.vmap(jax.vmap(lambda x, s: jaxshift.shift(x, s, impl="xla"),
                          (0, None)), (0, 0))
  np.testing.assert_allclose(vv(x, s), ref(x, s), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("channel_axis", [-1, 1])
def test_gradients_are_bitwise_repeatable(channel_axis):
  rng = np.random.default_rng(4)
  shape = (8, 33, 31, 40) if channel_axis == -1 else (8, 40, 33, 31)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  s = jnp.asarray(rng.normal(size=(40, 2)) * 3, jnp.float32)
  for mode in ("active", "sparse"):
    f = jax.jit(jax.grad(lambda x, s: jnp.sum(jnp.sin(jaxshift.shift(
        x, s, mode=mode, channel_axis=channel_axis, impl="ffi"))), (0, 1)))
    first = [np.asarray(a) for a in f(x, s)]
    for _ in range(3):
      for a, b in zip(first, f(x, s)):
        np.testing.assert_array_equal(a, np.asarray(b))


def _direct_forward(x, m, f, **attrs):
  call = jax.ffi.ffi_call(FORWARD,
                          jax.ShapeDtypeStruct(x.shape, x.dtype))
  base = dict(padding=np.int64(0), channels_last=True,
              strides=np.array([1, 1, 1], np.int64),
              present=np.array([0, 0, 1], np.int64), move=False)
  return jax.block_until_ready(call(x, m, f, **{**base, **attrs}))


def test_kernel_rejects_inconsistent_buffers():
  """The C++ side checks what it is given, even though Python never errs."""
  x = jnp.ones((2, 1, 1, 5, 3), jnp.float32)
  m, f = jnp.zeros((1, 3, 3), jnp.int32), jnp.zeros((1, 3, 3), jnp.float32)
  np.testing.assert_array_equal(_direct_forward(x, m, f), x)  # consistent
  with pytest.raises(Exception, match="jaxshift: tables must be"):
    _direct_forward(x, m[:, :2], f[:, :2])  # 2 channels, x has 3
  with pytest.raises(Exception, match="jaxshift: an absent axis"):
    _direct_forward(jnp.ones((2, 1, 4, 5, 3)), m, f)  # axis 1 is not absent
  with pytest.raises(Exception, match="jaxshift: stride out of range"):
    _direct_forward(x, m, f, strides=np.array([1, 1, 2**40], np.int64))


def test_impl_ffi_without_kernels_raises(monkeypatch):
  monkeypatch.setattr(ffi_module, "_loaded", {"cpu": False, "cuda": False})
  with pytest.raises(RuntimeError, match="impl='ffi'.*The build recorded"):
    jaxshift.shift(jnp.ones((1, 4, 2)), jnp.zeros((2, 1)), impl="ffi")
  # impl="auto" falls back to the jnp path.
  y = jaxshift.shift(jnp.ones((1, 4, 2)), jnp.zeros((2, 1)))
  np.testing.assert_array_equal(y, 1)


def test_auto_uses_the_kernel():
  x, s = jnp.ones((1, 5, 4, 2)), jnp.zeros((2, 2))
  text = jax.jit(lambda x, s: jaxshift.shift(x, s)).lower(x, s).as_text()
  assert FORWARD in text


def test_build_info_says_what_is_loaded():
  info = jaxshift.build_info()
  assert f"{PLATFORM}=True" in info and "cpu: built" in info


def _available_bytes() -> int:
  try:
    with open("/proc/meminfo") as fh:
      for line in fh:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


@pytest.mark.skipif(PLATFORM != "cpu" or _available_bytes() < 16 * 2**30,
                    reason="the CPU kernel with 16 GiB of memory free")
def test_cpu_indexing_past_2_31_elements():
  """Two equal samples of 2**20 channels x 33 x 32 pixels in bf16, active
  (the staged planes) and sparse (a move: the direct rows, cpu/direct.h):
  the second sample ends past element 2**31, so its output, computed with
  large offsets, must equal the first's (small offsets)."""
  n, c, h, w = 2, 2**20, 33, 32
  shape = (n, c, h, w)

  def optimised(f, *args):
    """f(*args), XLA's code compiled as users get it (the ci profile's quick
    compile makes these 4 GiB passes 3x slower)."""
    return jax.jit(f).lower(*args).compile(compiler_options={
        "xla_backend_optimization_level": 3,
        "xla_cpu_use_fusion_emitters": True})(*args)

  def make():  # a pattern, not zeros: every element differs from its neighbours
    i = [jax.lax.broadcasted_iota(jnp.int32, shape, d) for d in range(1, 4)]
    v = (i[0] * 5 + i[1] * 7 + i[2] * 3) % 13 - 6
    return v.astype(jnp.bfloat16)

  x = optimised(make)
  assert x.size > 2**31
  s = jax.random.uniform(jax.random.key(1), (c, 2), jnp.float32, -2, 2)
  for mode in ("active", "sparse"):  # one 4 GiB output at a time
    y = jax.jit(lambda x: jaxshift.shift(x, s, mode=mode, channel_axis=1,
                                         impl="ffi"))(x)
    assert bool(optimised(lambda y: jnp.array_equal(y[0], y[1]) &
                          jnp.any(y[0] != 0), y)), mode
    del y
