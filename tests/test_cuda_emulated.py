"""Both CUDA kernel families' own code on the CPU, through the host emulator.

With ``JAXSHIFT_CPU_KERNEL=cuda-emulated`` set before import, ``impl="ffi"``
on the CPU runs the CUDA family that ``JAXSHIFT_CUDA_KERNEL`` names (``walk``,
the GPU default, or ``tiled``) on the emulator (xla_ffi/emulator/): the same
plans, launches and phases the GPU gets, every kernel of the family (walks,
element-wise kernels, shift-gradient chunks, tiles, the finish), with every
memory access checked (bounds, alignment, shared-memory races and
uninitialised reads). The variables must be set before import, so each check
here runs in a fresh process: the whole kernel equivalence suite
(tests/test_ffi.py) on each family, its odd cases again with 64-bit offsets
forced, and the memory-access model (benchmarks/access_model.py) at small
shapes. Results come back as pytest's JUnit XML report, not its console text.
"""

import ctypes
import importlib.resources
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FAMILIES = ("walk", "tiled")  # JAXSHIFT_CUDA_KERNEL; the first is the GPU default


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
  for name in ("JAXSHIFT_CPU_LIBRARY", "JAXSHIFT_DISABLE_KERNELS", "JAXSHIFT_CUDA_KERNEL"):
    full.pop(name, None)
  full.update(JAXSHIFT_CPU_KERNEL="cuda-emulated", JAX_PLATFORMS="cpu")
  full.update(env)
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=full, capture_output=True,
                        text=True, timeout=timeout, check=False)


def _pytest(tmp_path, *args, **env):
  """Runs pytest in a fresh process; returns {test id: outcome} from its
  JUnit XML report (outcome: passed, failed, error or skipped)."""
  report = tmp_path / "report.xml"
  run = _run(["-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
              f"--junitxml={report}", *args], **env)
  out = run.stdout[-6000:] + run.stderr[-3000:]
  assert report.is_file(), out
  outcomes = {}
  for case in ET.parse(report).getroot().iter("testcase"):
    kinds = {child.tag for child in case}
    outcome = next((k for k in ("failure", "error", "skipped") if k in kinds), "passed")
    outcomes[case.get("name")] = {"failure": "failed"}.get(outcome, outcome)
  bad = {name: o for name, o in outcomes.items() if o != "passed"}
  assert run.returncode == 0 and not bad, (bad, out)
  return outcomes


def _ran(outcomes, *functions):
  """Every test function named ran (some parametrisation of it passed)."""
  names = {name.split("[")[0] for name in outcomes}
  missing = set(functions) - names
  assert not missing, f"did not run: {sorted(missing)}"


# tests/test_ffi.py's tests of which path a call takes in the CPU kernel (task
# spans, column tiles, one-pass backwards, direct rows, the channel lanes'
# groups) and of which threads run its tasks (long tasks): on the emulator
# they would rerun common cases at the CPU's shapes, about two thirds of its
# time (the CPU kernel runs them all), or skip.
CPU_PLANS = ("task_spans", "column_tiles", "one_pass_backward", "forward_ring",
             "short_rows_on_lanes", "moves_by_plane", "share_a_line_run_together",
             "rows_of_one_vector", "long_tasks", "window_rows")


@pytest.mark.parametrize("family", FAMILIES)
def test_equivalence_suite_on_the_emulated_cuda_kernels(family, tmp_path):
  """tests/test_ffi.py on one family's code: every mode, padding, 1/2/3-D,
  both layouts, strides, dtypes, vmap, bitwise-repeatable gradients, far,
  tiny and NaN shifts. Not here: the 2**31-element test (6 minutes on the
  emulator), the odd cases and worked examples, which the next test runs
  with 64-bit offsets, the checks of Python's lowering and of the CPU
  instruction sets (target-independent; the many-channel near/far class runs
  in test_matches_jnp_path_in_channel_blocks), and the tests of the CPU's
  own plans (CPU_PLANS: which path a call takes there; their shapes are
  common cases here, and the odd cases keep lattice, NaN and far shifts in
  both layouts). The default family runs half
  the hypothesis examples, the second a quarter (every case class still
  runs, and the CPU kernel's run of the same suite has them all)."""
  _require_library()
  scale = "0.5" if family == FAMILIES[0] else "0.25"
  # Not the tests that check Python's lowering (one custom call, vmap): the
  # same for every target; nor the CPU kernel's instruction sets (its AVX2
  # versions' code) or its own reads (guard pages).
  skip = ("past_2_31", "odd_cases", "worked_cases", "lowers_to_one_custom_call",
          "every_instruction_set", "avx2_versions", "stay_inside_their_buffers", *CPU_PLANS)
  outcomes = _pytest(tmp_path, "tests/test_ffi.py", "-k",
                     " and ".join(f"not {name}" for name in skip),
                     JAXSHIFT_CUDA_KERNEL=family, JAXSHIFT_TEST_EXAMPLE_SCALE=scale)
  _ran(outcomes, "test_matches_jnp_path", "test_matches_jnp_path_on_wide_rows",
       "test_matches_jnp_path_in_channel_blocks", "test_tiny_shifts_are_off_the_lattice",
       "test_stride_beyond_the_axis_and_a_shift_beyond_every_bound")


@pytest.mark.parametrize("family", FAMILIES)
def test_64bit_offsets_on_the_emulated_cuda_kernels(family, tmp_path):
  """The odd cases (tiny and length-1 axes, far and huge shifts, strides
  beyond the axis, NaN shifts, every dtype) and the worked examples with the
  kernels' 64-bit offset paths forced (JAXSHIFT_EMULATED_INDEX64=1): the code
  the GPU runs for samples past 2**31 elements."""
  _require_library()
  outcomes = _pytest(tmp_path, "tests/test_ffi.py", "-k", "odd_cases or worked_cases",
                     JAXSHIFT_CUDA_KERNEL=family, JAXSHIFT_EMULATED_INDEX64="1")
  _ran(outcomes, "test_worked_cases", "test_odd_cases_match_jnp_path")


# Per family: the target, and the kernel a small channels-last forward runs
# with 64-bit offsets forced (the walks have one index width).
ROUTES = {"walk": ("jaxshift_forward_cuda_emulated_walk", "walk_forward_nhwc"),
          "tiled": ("jaxshift_forward_cuda_emulated_tiled", "tiled_forward_nhwc (64-bit)")}


@pytest.mark.parametrize("family", FAMILIES)
def test_emulated_choice_routes_impl_ffi_and_forces_64_bits(family):
  _require_library()
  code = """
import ctypes, json
import jax, jax.numpy as jnp
import jaxshift
from jaxshift._src import ffi
f = jax.jit(lambda x, s: jaxshift.shift(x, s, impl="ffi"))
x, s = jnp.ones((2, 6, 5, 3)), jnp.full((3, 2), 0.5)
print(ffi.target("cpu", "forward"), f.lower(x, s).as_text().count(ffi.target("cpu", "forward")))
lib = ctypes.CDLL(str(ffi.library_path("cpu")))
lib.jaxshift_cuda_emulated_configure(1, 1)
f(x, s).block_until_ready()
buf = ctypes.create_string_buffer(1 << 16)
lib.jaxshift_cuda_emulated_stats(buf, 1 << 16)
print(json.dumps(sorted(json.loads(buf.value.decode()))))
print(jaxshift.build_info())
"""
  run = _run(["-c", code], timeout=120, JAXSHIFT_CUDA_KERNEL=family)
  assert run.returncode == 0, run.stderr[-3000:]
  lines = run.stdout.splitlines()
  want_target, want_kernel = ROUTES[family]
  assert lines[0] == f"{want_target} 1", run.stdout
  assert json.loads(lines[1]) == [want_kernel], run.stdout
  assert f"cpu=True ({want_target})" in run.stdout
  assert "cuda_emulated: built" in run.stdout


@pytest.mark.parametrize("var", ["JAXSHIFT_CPU_KERNEL", "JAXSHIFT_CUDA_KERNEL"])
def test_unknown_kernel_choice_is_a_clear_error(var):
  run = _run(["-c", "import jaxshift"], timeout=120, **{var: "fastest"})
  assert run.returncode != 0
  assert f"{var}='fastest' is not a jaxshift kernel choice" in run.stderr, run.stderr[-2000:]
  assert "expected one of" in run.stderr


def test_emulator_checks_catch_each_kind_of_bug():
  """A kernel with one deliberate bug per run (emulator/handlers.cc, SelfTest)."""
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
      assert re.search(r"\(thread \d+, handlers\.cc:\d+\)$", got), got


# Every kernel each family launches for the model's 2-D calls (forward, and
# the backward with its finish).
MODEL_KERNELS = {
    "walk": {"walk_forward_nhwc", "walk_forward_nchw", "walk_backward_nhwc",
             "walk_backward_nchw", "shift_grad_finish"},
    "tiled": {"tiled_forward_nhwc", "tiled_forward_nchw", "tiled_backward_nhwc",
              "tiled_backward_nchw", "shift_grad_finish"},
}


def test_access_model_covers_both_families(tmp_path):
  """The model at small shapes, both families: every kernel modelled, its
  numbers finite, no misaligned vector access, DRAM traffic at the floor
  (each byte once) for the main kernels; the tiled kernels' global requests
  within 10 % of the ideal sectors (channels-last; channels-first rows carry
  halos) with no bank conflicts on the channels-last main loops."""
  _require_library()
  out = tmp_path / "model.json"
  run = _run(["benchmarks/access_model.py", "--quick", "--json", str(out)], timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  rows = json.loads(out.read_text())
  kernels = {r["kernel"] for r in rows}
  for family, names in MODEL_KERNELS.items():
    assert names <= kernels, (family, sorted(kernels))
  for r in rows:
    assert r["misaligned"] == 0, r
    assert math.isfinite(r["ld"]) and math.isfinite(r["st"]) and r["st"] >= 1.0, r
    if r["kernel"] != "shift_grad_finish":
      assert 0.95 <= r["dram"] <= 1.10, r
  by = {}
  for r in rows:
    by.setdefault((r["layout"], r["kernel"]), []).append(r)
  for kernel in ("tiled_forward_nhwc", "tiled_backward_nhwc"):
    for r in by[("NHWC", kernel)]:
      assert r["ld"] <= 1.10 and r["st"] <= 1.10 and r["sh"] <= 1.01, r
  for r in by[("NCHW", "tiled_forward_nchw")] + by[("NCHW", "tiled_backward_nchw")]:
    assert r["ld"] <= 1.30 and r["st"] <= 1.10, r


def test_kernel_choice_switches_the_target_inside_one_process():
  """`ffi.kernel_choice` (benchmarks: both CUDA families in one run): the
  CPU choice, and inside it the CUDA choice picks the emulated family."""
  _require_library()
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  import jaxshift  # pylint: disable=import-outside-toplevel
  from jaxshift._src import ffi  # pylint: disable=import-outside-toplevel
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 7, 9, 5)), jnp.float32)
  s = jnp.asarray([[0.5, -1.25], [2.0, 0.0], [-3.5, 1.0], [0.25, 0.75], [1e3, -2.0]])
  g = jnp.asarray(np.random.default_rng(1).normal(size=x.shape), jnp.float32)

  def fb(x, s, g):  # the forward and its VJP, as the benchmarks time them
    y, vjp = jax.vjp(lambda x, s: jaxshift.shift(x, s, impl="ffi"), x, s)
    return y, vjp(g)

  native = ffi.target("cpu", "forward")
  reference = jax.jit(fb)(x, s, g)
  # Each family after the other on the same shapes, and the first again: a
  # trace cached from an earlier choice must not leak into a later one.
  for family in FAMILIES + FAMILIES[:1]:
    with ffi.kernel_choice("cpu", "cuda-emulated"), ffi.kernel_choice("cuda", family):
      lowered = jax.jit(lambda *a: fb(*a)).lower(x, s, g)  # a new trace per family
      emulated = lowered.compile()
    text = lowered.as_text()
    for which in ("forward", "backward"):
      assert f"jaxshift_{which}_cuda_emulated_{family}" in text
      others = [f for f in FAMILIES if f != family]
      assert not any(f"jaxshift_{which}_cuda_emulated_{f}" in text for f in others)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                 emulated(x, s, g), reference)
  assert ffi.target("cpu", "forward") == native
  with pytest.raises(ValueError, match="`value` must be one of 'native', 'cuda-emulated'"):
    with ffi.kernel_choice("cpu", "tiled"):
      pass
