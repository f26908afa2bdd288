"""The CUDA kernels' own code on the CPU, through the host emulator.

With ``JAXSHIFT_CPU_KERNEL=cuda-emulated`` set before import, ``impl="ffi"``
on the CPU runs the tiled CUDA kernels (xla_ffi/tiled.h) on the emulator
(xla_ffi/emulator.h): the same plans, launches and phases the GPU gets, with
every memory access checked (bounds, alignment, shared-memory races and
uninitialised reads). The variable must be set before import, so each check
here runs in a fresh process: the whole kernel equivalence suite
(tests/test_ffi.py), its odd cases again with 64-bit offsets forced, and the
memory-access model (benchmarks/access_model.py) at small shapes.
"""

import ctypes
import importlib.resources
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _library():
  path = importlib.resources.files("jaxshift") / "libjaxshift_cuda_emulated.so"
  return pathlib.Path(str(path)) if path.is_file() else None


def _require_library():
  lib = _library()
  if lib is None:
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail("libjaxshift_cuda_emulated.so is missing: every build makes it")
    pytest.skip("jaxshift was installed without its kernels")
  return lib


def _run(args, timeout=600, **env):
  full = dict(os.environ)
  for name in ("JAXSHIFT_CPU_LIBRARY", "JAXSHIFT_DISABLE_KERNELS"):
    full.pop(name, None)
  full.update(JAXSHIFT_CPU_KERNEL="cuda-emulated", JAX_PLATFORMS="cpu")
  full.update(env)
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=full, capture_output=True,
                        text=True, timeout=timeout, check=False)


def _pytest(*args, **env):
  run = _run(["-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *args], **env)
  out = run.stdout[-6000:] + run.stderr[-3000:]
  assert run.returncode == 0, out
  m = re.search(r"(\d+) passed", run.stdout)
  assert m and "failed" not in run.stdout.splitlines()[-1], out
  return int(m.group(1)), out


def test_equivalence_suite_on_the_emulated_cuda_kernels():
  """tests/test_ffi.py on the CUDA kernels' code: every mode, padding, 1/2/3-D,
  both layouts, strides, dtypes, vmap, bitwise-repeatable gradients, far and
  NaN shifts. Not here: the 2**31-element test (6 minutes on the emulator),
  and the odd cases and worked examples, which the next test runs with
  64-bit offsets."""
  _require_library()
  passed, out = _pytest("tests/test_ffi.py", "-k",
                        "not past_2_31 and not odd_cases and not worked_cases")
  assert passed >= 15, out


def test_64bit_offsets_on_the_emulated_cuda_kernels():
  """The odd cases (tiny and length-1 axes, far and huge shifts, strides
  beyond the axis, NaN shifts, every dtype) and the worked examples with the
  kernels' 64-bit offset path forced (JAXSHIFT_EMULATED_INDEX64=1): the code
  the GPU runs for samples past 2**31 elements."""
  _require_library()
  passed, out = _pytest("tests/test_ffi.py", "-k", "odd_cases or worked_cases",
                        JAXSHIFT_EMULATED_INDEX64="1")
  assert passed >= 10, out


def test_emulated_choice_routes_impl_ffi_and_forces_64_bits():
  _require_library()
  code = """
import ctypes, json
import jax, jax.numpy as jnp
import jaxshift
from jaxshift._src import ffi
f = jax.jit(lambda x, s: jaxshift.shift(x, s, impl="ffi"))
x, s = jnp.ones((2, 6, 5, 3)), jnp.full((3, 2), 0.5)
print(f.lower(x, s).as_text().count("jaxshift_forward_cuda_emulated"))
lib = ctypes.CDLL(str(ffi.library_path("cpu")))
lib.jaxshift_cuda_emulated_configure(1, 1, 0)
f(x, s).block_until_ready()
buf = ctypes.create_string_buffer(1 << 16)
lib.jaxshift_cuda_emulated_stats(buf, 1 << 16)
print(json.dumps(sorted(json.loads(buf.value.decode()))))
print(jaxshift.build_info())
"""
  run = _run(["-c", code], timeout=120)
  assert run.returncode == 0, run.stderr[-3000:]
  lines = run.stdout.splitlines()
  assert lines[0] == "1", run.stdout
  assert json.loads(lines[1]) == ["tiled_forward_nhwc (64-bit)"], run.stdout
  assert "cpu=True (jaxshift_forward_cuda_emulated)" in run.stdout
  assert "cuda_emulated: built" in run.stdout


@pytest.mark.parametrize("var", ["JAXSHIFT_CPU_KERNEL", "JAXSHIFT_CUDA_KERNEL"])
def test_unknown_kernel_choice_is_a_clear_error(var):
  run = _run(["-c", "import jaxshift"], timeout=120, **{var: "fastest"})
  assert run.returncode != 0
  assert f"{var}='fastest' is not a jaxshift kernel choice" in run.stderr, run.stderr[-2000:]
  assert "expected one of" in run.stderr


def test_emulator_checks_catch_each_kind_of_bug():
  """A kernel with one deliberate bug per run (cuda_emulated.cc, SelfTest)."""
  lib = ctypes.CDLL(str(_require_library()))
  buf = ctypes.create_string_buffer(512)
  want = {0: "", 1: "load of 4 bytes outside every buffer of the call",
          2: "shared write-read race", 3: "read of shared memory not written for this item",
          4: "misaligned 16-byte global access", 5: "store into input buffer in"}
  for bug, message in want.items():
    rc = lib.jaxshift_cuda_emulated_selftest(bug, buf, 512)
    got = buf.value.decode()
    assert rc == (1 if message else 0) and message in got, (bug, got)
    if message:
      assert re.search(r"\(thread \d+, cuda_emulated\.cc:\d+\)$", got), got


def test_access_model_shows_the_v1_inflation_and_tiled_coalescing(tmp_path):
  """The model at small shapes: the tiled kernels' global requests within 10 %
  of the ideal sectors (channels-last; channels-first rows carry halos) with
  no bank conflicts on the channels-last main loops and no misaligned
  vectors; the v1 walk forward's channels-last loads several times the ideal
  (32 lanes reading 32 pixels)."""
  _require_library()
  out = tmp_path / "model.json"
  run = _run(["benchmarks/access_model.py", "--quick", "--json", str(out)], timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  rows = json.loads(out.read_text())
  by = {}
  for r in rows:
    by.setdefault((r["layout"], r["kernel"].split(" ")[0]), []).append(r)
  for kernel in ("tiled_forward_nhwc", "tiled_backward_nhwc"):
    for r in by[("NHWC", kernel)]:
      assert r["ld"] <= 1.10 and r["st"] <= 1.10, r
      assert r["sh"] <= 1.01 and r["misaligned"] == 0, r
      assert r["dram"] <= 1.10, r
  for r in by[("NCHW", "tiled_forward_nchw")] + by[("NCHW", "tiled_backward_nchw")]:
    assert r["ld"] <= 1.30 and r["st"] <= 1.10 and r["misaligned"] == 0, r
  for r in by[("NHWC", "v1_walk_forward_nhwc")]:
    assert r["ld"] >= 3.0, r


def test_kernel_choice_switches_the_target_inside_one_process():
  """`ffi.kernel_choice` (benchmarks: v1 and tiled CUDA kernels in one run)."""
  _require_library()
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  import jaxshift  # pylint: disable=import-outside-toplevel
  from jaxshift._src import ffi  # pylint: disable=import-outside-toplevel
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 7, 9, 5)), jnp.float32)
  s = jnp.asarray([[0.5, -1.25], [2.0, 0.0], [-3.5, 1.0], [0.25, 0.75], [1e3, -2.0]])
  f = lambda x, s: jaxshift.shift(x, s, impl="ffi")
  native = ffi.target("cpu", "forward")
  with ffi.kernel_choice("cpu", "cuda-emulated"):
    lowered = jax.jit(f).lower(x, s)
    emulated = lowered.compile()
  assert "jaxshift_forward_cuda_emulated" in lowered.as_text()
  assert ffi.target("cpu", "forward") == native
  np.testing.assert_allclose(emulated(x, s), jax.jit(f)(x, s), rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="`value` must be one of 'native', 'cuda-emulated'"):
    with ffi.kernel_choice("cpu", "tiled"):
      pass
