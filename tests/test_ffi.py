"""The compiled kernels (`impl="ffi"`) against the jnp reference (`impl="xla"`).

Runs on the default backend: the CPU kernel in CI, the CUDA kernel on a GPU.
"""

import os
import platform
import re
import subprocess
import sys

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxshift
from jaxshift._src import ffi as ffi_module
import test_shift

PLATFORM = "cuda" if jax.default_backend() == "gpu" else "cpu"
pytestmark = pytest.mark.skipif(
    not jaxshift.kernels_available(PLATFORM),
    reason=f"jaxshift's {PLATFORM} kernels are not built")

TOL = {jnp.float32: 2e-5, jnp.bfloat16: 2e-2, jnp.float16: 4e-3,
       jnp.float64: 1e-12}


def both(x, s, **kw):
  """Forward, dx and dshifts of a non-linear loss, for ffi and xla."""
  out = {}
  for impl in ("ffi", "xla"):
    f = lambda x, s: jaxshift.shift(x, s, impl=impl, **kw)
    loss = lambda x, s: jnp.sum(jnp.sin(f(x, s).astype(jnp.float32)) * 3)
    out[impl] = (f(x, s),) + jax.grad(loss, (0, 1))(x, s)
  return out


def assert_close(a, b, tol, what):
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  scale = max(1.0, float(np.abs(b).max(initial=0)))
  np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale, err_msg=what)


def assert_kernel_matches(x, s, dtype, **kw):
  """Forward, dx and dshifts of ffi equal xla's (dtype and values)."""
  r = both(x, s, **kw)
  for i, what in enumerate(("forward", "dx", "dshifts")):
    assert r["ffi"][i].dtype == r["xla"][i].dtype
    tol = TOL[dtype] if i < 2 else max(TOL[dtype], 1e-4) * 4
    assert_close(r["ffi"][i], r["xla"][i], tol, what)


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    ndim=st.integers(1, 3), mode=st.sampled_from(jaxshift.MODES),
    padding=st.sampled_from(jaxshift.PADDINGS), channels_last=st.booleans(),
    dtype=st.sampled_from([jnp.float32, jnp.bfloat16, jnp.float16]),
    data=st.data())
def test_matches_jnp_path(ndim, mode, padding, channels_last, dtype, data):
  lengths = data.draw(st.lists(st.integers(1, 9), min_size=ndim,
                               max_size=ndim))
  n, c = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 5))
  strides = tuple(data.draw(st.lists(st.integers(1, 3), min_size=ndim,
                                     max_size=ndim)))
  value = st.one_of(st.floats(-12, 12, allow_nan=False, width=32),
                    st.integers(-11, 11).map(float),
                    st.integers(-11, 11).map(lambda i: i + 0.5))
  s = np.array(data.draw(st.lists(value, min_size=c * ndim,
                                  max_size=c * ndim)), np.float32)
  s = s.reshape(c, ndim)
  rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
  shape = (n, *lengths, c) if channels_last else (n, c, *lengths)
  x = jnp.asarray(rng.normal(size=shape), dtype)
  cax = -1 if channels_last else 1
  assert_kernel_matches(x, jnp.asarray(s), dtype, mode=mode, padding=padding,
                        channel_axis=cax, strides=strides)


@hypothesis.settings(max_examples=12, deadline=None)
@hypothesis.given(
    mode=st.sampled_from(jaxshift.MODES),
    padding=st.sampled_from(jaxshift.PADDINGS), channels_last=st.booleans(),
    dtype=st.sampled_from([jnp.float32, jnp.bfloat16]), data=st.data())
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
  assert_kernel_matches(x, jnp.asarray(s), dtype, mode=mode, padding=padding,
                        channel_axis=-1 if channels_last else 1)


@hypothesis.settings(max_examples=12, deadline=None)
@hypothesis.given(
    mode=st.sampled_from(jaxshift.MODES),
    padding=st.sampled_from(jaxshift.PADDINGS), channels_last=st.booleans(),
    dtype=st.sampled_from([jnp.float32, jnp.bfloat16, jnp.float16]),
    data=st.data())
def test_matches_jnp_path_in_channel_blocks(mode, padding, channels_last,
                                            dtype, data):
  """Many channels (the CPU kernel stages blocks of 16 float32 channels, with
  a transpose for channels-last) and a mix of near shifts (within the staged
  halo) and far ones (blocks that fall back to in-place walks)."""
  h, w = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 24))
  c = data.draw(st.integers(6, 40))
  near = st.one_of(st.floats(-3, 3, allow_nan=False, width=32),
                   st.integers(-3, 3).map(float))
  far = st.floats(-40, 40, allow_nan=False, width=32)
  s = np.array(data.draw(st.lists(st.one_of(near, near, near, far),
                                  min_size=2 * c, max_size=2 * c)),
               np.float32).reshape(c, 2)
  rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
  shape = (2, h, w, c) if channels_last else (2, c, h, w)
  x = jnp.asarray(rng.normal(size=shape), dtype)
  assert_kernel_matches(x, jnp.asarray(s), dtype, mode=mode, padding=padding,
                        channel_axis=-1 if channels_last else 1)


@pytest.mark.parametrize("padding", jaxshift.PADDINGS)
@pytest.mark.parametrize("mode", jaxshift.MODES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_staged_blocks_match(padding, mode, channels_last):
  """20 channels, 13 columns: a staged block of 16 channels (8x8, 4x4 and
  one-by-one transposes in channels-last) next to a block of 4 with a shift
  beyond the halo (walks in place)."""
  rng = np.random.default_rng(1)
  c = 20
  shape = (2, 7, 13, c) if channels_last else (2, c, 7, 13)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  s = rng.uniform(-2.5, 2.5, (c, 2)).astype(np.float32)
  s[3] = [0.0, 1.0]
  s[17] = [-19.5, 3.25]
  assert_kernel_matches(x, jnp.asarray(s), jnp.float32, mode=mode,
                        padding=padding,
                        channel_axis=-1 if channels_last else 1)


@pytest.mark.skipif(PLATFORM != "cpu" or platform.machine() != "x86_64",
                    reason="the CPU kernel's x86-64 instruction-set versions")
def test_staged_blocks_match_on_baseline_x86_64():
  """The staged CPU tasks are compiled twice, for baseline x86-64 and for
  AVX2 + FMA, and chosen at run time; JAXSHIFT_CPU_ISA=baseline runs the
  first on a machine that has the second."""
  env = dict(os.environ, JAXSHIFT_CPU_ISA="baseline")
  run = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
       f"{__file__}::test_staged_blocks_match"],
      env=env, capture_output=True, text=True, check=False)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  assert "30 passed" in run.stdout


@pytest.mark.parametrize("padding", jaxshift.PADDINGS)
@pytest.mark.parametrize("mode", jaxshift.MODES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_depth_one_volume_still_shifts_along_depth(padding, mode,
                                                   channels_last):
  """A 3-D call whose first axis has length 1 is not a 2-D call: its shift
  along that axis still scales or empties the output (zeros padding) and has
  a gradient. (The kernels' 2-D paths once skipped that axis.)"""
  rng = np.random.default_rng(0)
  shape = (2, 1, 5, 6, 3) if channels_last else (2, 3, 1, 5, 6)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  s = jnp.array([[0.3, 1.2, -0.5], [1.0, 0.0, 2.0], [-0.75, 0.4, 0.0]])
  assert_kernel_matches(x, s, jnp.float32, mode=mode, padding=padding,
                        channel_axis=-1 if channels_last else 1)


def test_float64(x64):
  rng = np.random.default_rng(0)
  for padding in jaxshift.PADDINGS:
    x = jnp.asarray(rng.normal(size=(2, 4, 5, 6, 3)))
    s = jnp.asarray(rng.normal(size=(3, 3)) * 3)
    r = both(x, s, padding=padding)
    for i in range(3):
      assert r["ffi"][i].dtype == jnp.float64
      assert_close(r["ffi"][i], r["xla"][i], 1e-12, padding)


def test_worked_cases():
  test_shift.worked_cases("ffi")


def test_odd_inputs_match():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 6, 5, 3)),
                  jnp.float32)
  s = jnp.array([[1e9, -2.5], [np.nan, 0.0], [-1e9, 5 * 2.0**20 + 1]],
                jnp.float32)
  for padding in jaxshift.PADDINGS:
    for mode in jaxshift.MODES:
      r = both(x, s, padding=padding, mode=mode)
      for i in range(3):
        a, b = np.asarray(r["ffi"][i]), np.asarray(r["xla"][i])
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        ok = ~np.isnan(b)
        np.testing.assert_allclose(a[ok], b[ok], rtol=1e-5, atol=1e-4)
  empty = jnp.zeros((0, 4, 4, 3))
  assert jaxshift.shift(empty, s, impl="ffi").shape == empty.shape
  dx, ds = jax.grad(lambda x, s: jaxshift.shift(x, s, impl="ffi").sum(),
                    (0, 1))(empty, jnp.ones((3, 2)))
  assert dx.shape == empty.shape
  np.testing.assert_array_equal(ds, 0)


def _hlo(f, *args):
  return jax.jit(f).lower(*args).compile().as_text()


def test_lowers_to_one_custom_call_and_vmap_does_not_loop():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(4, 2, 7, 6, 5)), jnp.float32)
  s = jnp.asarray(rng.normal(size=(4, 5, 2)), jnp.float32)
  f = lambda x, s: jaxshift.shift(x, s, impl="ffi")
  fwd = f"jaxshift_forward_{PLATFORM}"
  bwd = f"jaxshift_backward_{PLATFORM}"
  text = _hlo(f, x[0], s[0])
  assert len(re.findall(fwd, text)) == 1
  for in_axes in [(0, None), (0, 0), (None, 0)]:
    xs = x if in_axes[0] == 0 else x[0]
    ss = s if in_axes[1] == 0 else s[0]
    vf = jax.vmap(f, in_axes)
    text = _hlo(vf, xs, ss)
    assert len(re.findall(fwd + r"\b", text)) == 1, in_axes
    assert " while(" not in text and "while." not in text, in_axes
    want = jnp.stack([f(xs[i] if in_axes[0] == 0 else xs,
                        ss[i] if in_axes[1] == 0 else ss) for i in range(4)])
    np.testing.assert_allclose(vf(xs, ss), want, rtol=1e-6, atol=1e-6)
    # vmap of the gradient: one backward launch, per-example gradients.
    g = jax.vmap(jax.grad(lambda x, s: jnp.sum(f(x, s) ** 2), (0, 1)),
                 in_axes)
    text = _hlo(g, xs, ss)
    assert len(re.findall(bwd + r"\b", text)) == 1 and "while" not in text
    per = g(xs, ss)
    for i in range(4):
      xi = xs[i] if in_axes[0] == 0 else xs
      si = ss[i] if in_axes[1] == 0 else ss
      dx, ds = jax.grad(lambda x, s: jnp.sum(f(x, s) ** 2), (0, 1))(xi, si)
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


def test_gradients_are_bitwise_repeatable():
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(8, 33, 31, 40)), jnp.float32)
  s = jnp.asarray(rng.normal(size=(40, 2)) * 3, jnp.float32)
  for mode in ("active", "sparse"):
    f = jax.jit(jax.grad(lambda x, s: jnp.sum(jnp.sin(jaxshift.shift(
        x, s, mode=mode, impl="ffi"))), (0, 1)))
    first = [np.asarray(a) for a in f(x, s)]
    for _ in range(3):
      for a, b in zip(first, f(x, s)):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_kernel_rejects_inconsistent_buffers():
  """The C++ side checks what it is given, even though Python never errs."""
  x = jnp.ones((2, 1, 1, 5, 3), jnp.float32)
  m = jnp.zeros((1, 4, 3), jnp.int32)  # 4 channels, x has 3
  f = jnp.zeros((1, 4, 3), jnp.float32)
  call = jax.ffi.ffi_call(f"jaxshift_forward_{PLATFORM}",
                          jax.ShapeDtypeStruct(x.shape, x.dtype))
  with pytest.raises(Exception, match="jaxshift: tables must be"):
    jax.block_until_ready(call(x, m, f, padding=np.int64(0),
                               channels_last=True,
                               strides=np.array([1, 1, 1], np.int64),
                               move=False))


def test_impl_ffi_without_kernels_raises(monkeypatch):
  monkeypatch.setattr(ffi_module, "_loaded", {"cpu": False, "cuda": False})
  with pytest.raises(RuntimeError, match="impl='ffi'"):
    jaxshift.shift(jnp.ones((1, 4, 2)), jnp.zeros((2, 1)), impl="ffi")
  # impl="auto" falls back to the jnp path.
  y = jaxshift.shift(jnp.ones((1, 4, 2)), jnp.zeros((2, 1)))
  np.testing.assert_array_equal(y, 1)


def test_auto_uses_the_kernel():
  x, s = jnp.ones((1, 5, 4, 2)), jnp.zeros((2, 2))
  text = jax.jit(lambda x, s: jaxshift.shift(x, s)).lower(x, s).as_text()
  assert f"jaxshift_forward_{PLATFORM}" in text


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
  """Two samples of 33 x 32 pixels x 2**20 channels in bf16 (the staged
  path): the second sample ends past element 2**31 and must come out as when
  that sample runs alone (small indices)."""
  n, c, h, w = 2, 2**20, 33, 32
  shape, cax = (n, h, w, c), -1

  @jax.jit
  def make():  # a pattern, not zeros: every element differs from its neighbours
    i = [jax.lax.broadcasted_iota(jnp.int32, shape, d) for d in range(4)]
    v = (i[0] * 5 + i[1] * 7 + i[2] * 3 + i[3]) % 13 - 6
    return v.astype(jnp.bfloat16)

  x = make()
  assert x.size > 2**31
  s = jax.random.uniform(jax.random.key(1), (c, 2), jnp.float32, -2, 2)
  f = lambda x: jaxshift.shift(x, s, channel_axis=cax, impl="ffi")
  assert bool(jax.jit(lambda x: jnp.array_equal(f(x)[1], f(x[1:])[0]))(x))
