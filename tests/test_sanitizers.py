"""The CPU kernels under AddressSanitizer and UndefinedBehaviorSanitizer.

An install with ``JAXSHIFT_SANITIZE=ON`` (CI's) builds
``libjaxshift_cpu_sanitized.so`` (ASan + UBSan, -O0) beside the normal
library. This test runs the odd-case sweep (tests/kernel_sweep.py) on it in a
fresh process and requires a clean exit with no report. ASan must be loaded
before anything else (LD_PRELOAD); the libraries are the ones the sanitized
build links, as ``ldd`` resolves them. Without that library the test skips,
except in CI (``CI=true``), where it fails.
"""

import importlib.resources
import os
import pathlib
import re
import subprocess
import sys

import pytest

SWEEP = pathlib.Path(__file__).with_name("kernel_sweep.py")


def _sanitized_library():
  path = importlib.resources.files("jaxshift") / "libjaxshift_cpu_sanitized.so"
  return pathlib.Path(str(path)) if path.is_file() else None


def _runtime_libraries(lib: pathlib.Path) -> list[str]:
  """The ASan and C++ runtimes `lib` links, to preload in that order."""
  out = subprocess.run(["ldd", str(lib)], capture_output=True, text=True,
                       check=True).stdout
  found = {}
  for name in ("libasan", "libstdc++"):
    m = re.search(rf"{re.escape(name)}\S*\s+=>\s+(\S+)", out)
    if not m:
      raise AssertionError(f"{lib} does not link {name}:\n{out}")
    found[name] = m.group(1)
  return [found["libasan"], found["libstdc++"]]


def test_cpu_kernels_have_no_sanitizer_findings():
  lib = _sanitized_library()
  if lib is None:
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail("CI must install with JAXSHIFT_SANITIZE=ON (see .ci/run): "
                  "libjaxshift_cpu_sanitized.so is missing")
    pytest.skip("no sanitizer build (install with JAXSHIFT_SANITIZE=ON)")
  env = dict(os.environ,
             LD_PRELOAD=" ".join(_runtime_libraries(lib)),
             JAXSHIFT_CPU_LIBRARY=str(lib),
             # Two frames of each allocation's stack in a report: recording
             # the default 30 on every malloc of XLA's compiler costs a
             # quarter of the run; detection is unchanged.
             ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:"
                          "malloc_context_size=2",
             UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
             # XLA's own code for the glue around the kernel calls is not
             # under test here: compile it unoptimised (a sixth less time).
             XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") +
                        " --xla_backend_optimization_level=0").strip())
  env.pop("JAXSHIFT_DISABLE_KERNELS", None)
  run = subprocess.run([sys.executable, str(SWEEP), "--kernel-only"], env=env,
                       capture_output=True, text=True, check=False,
                       timeout=900)
  report = run.stdout[-4000:] + run.stderr[-8000:]
  assert run.returncode == 0, report
  assert "runtime error" not in run.stderr, report  # UBSan
  assert "AddressSanitizer" not in run.stderr, report
  assert re.search(r"kernel_sweep: \d+ calls on the cpu kernel \(" +
                   re.escape(str(lib)) + r"\)", run.stdout), report
