"""Test configuration: 8 CPU devices, strict promotion, hypothesis profiles.

Hypothesis profiles (choose with JAXSHIFT_TEST_PROFILE):
  ci        (default) derandomised: the same examples every run, a size that
            keeps the suite within CI's time budget, no example database;
  thorough  10x the examples, random: run it before a release or after
            touching a kernel (JAXSHIFT_TEST_PROFILE=thorough python -m pytest).
Tests ask for their example count through `examples(n)`: n in ci, 10 n in
thorough, scaled by JAXSHIFT_TEST_EXAMPLE_SCALE (default 1; the emulated
suite runs its second CUDA family at 0.5, tests/test_cuda_emulated.py).

The ci profile also has XLA compile its own code quickly (jaxlib < 0.11): at
``--xla_backend_optimization_level=0`` with the classic CPU fusion emitters
(``--xla_cpu_use_fusion_emitters=false``; the newer ones ignore the level).
The suite is mostly compiling small graphs; on 2 cores this halves XLA's
compile time (the odd-case sweep: 16.6 s -> 9.1 s): the suite went from
519 s to about 380 s with the level alone, and to 242 s with both (the
jitted test helpers included). jaxshift's kernels are built separately and unaffected, and the
jnp path's results agree to the tests' tolerances either way. Flags already
in XLA_FLAGS win. The thorough profile compiles as users get it.
"""

import os
import tempfile

PROFILE = os.environ.get("JAXSHIFT_TEST_PROFILE", "ci")
if PROFILE not in ("ci", "thorough"):
  raise ValueError(f"JAXSHIFT_TEST_PROFILE must be 'ci' or 'thorough'; got "
                   f"{PROFILE!r}.")


def _jaxlib_before(version: tuple[int, int]) -> bool:
  """Whether the installed jaxlib is older than `version` (its metadata)."""
  from importlib import metadata  # pylint: disable=import-outside-toplevel
  try:
    installed = metadata.version("jaxlib")
  except metadata.PackageNotFoundError:
    return False
  return tuple(int(p) for p in installed.split(".")[:2]) < version


# Before jax starts its backend; subprocesses the tests start inherit them.
# Only on jaxlib < 0.11: jaxlib 0.11 no longer knows the emitter flag, and an
# unknown flag in XLA_FLAGS ends the process with exit code 1 when the first
# backend starts; under pytest's capture it ends silently (seen on the GPU
# machine, jaxlib 0.11.2, 2026-12-04). There the suite compiles as users get it.
QUICK_XLA_FLAGS = {"xla_backend_optimization_level": "0",
                   "xla_cpu_use_fusion_emitters": "false"}
if PROFILE == "ci" and _jaxlib_before((0, 11)):
  _flags = os.environ.get("XLA_FLAGS", "")
  os.environ["XLA_FLAGS"] = " ".join(
      [_flags] + [f"--{k}={v}" for k, v in QUICK_XLA_FLAGS.items()
                  if k not in _flags]).strip()
if PROFILE == "ci":
  # A persistent compilation cache for the session's processes (a worker
  # and the subprocesses that rerun tests/test_ffi.py on an emulated CUDA
  # family): each of those compiles the same jnp references, which the
  # second process onward loads instead (the 64-bit odd cases on the second
  # family: 16 -> 10 s; the whole suite on 2 cores, cold cache: 299 -> 282
  # s, one folder for both workers then). Every compile is cached, however
  # quick. Kept between runs (a rerun compiles less; ~60 MB for the suite,
  # more as code changes: delete the folders at will). CI's clean machine
  # starts with them empty: to time the suite as CI runs it, point TMPDIR
  # at an empty folder (2 cores, 2026-12-06: 487 s cold against 340-390 s
  # with the folder kept). The kernels are custom calls found by
  # name when an executable loads, so a rebuilt library is what the cached
  # executables call. One folder a pytest-xdist worker (its subprocesses
  # inherit it): jax writes an entry in place, unlocked (jax/_src/
  # lru_cache.py without eviction), so a worker could read one the other
  # was still writing ("truncated stream" collecting tests/test_shapes.py
  # once, 2026-12-07); a worker runs one test at a time.
  # (A worker inherits the controller's environment, this default in it.)
  _cache = os.path.join(tempfile.gettempdir(), f"jaxshift-tests-xla-cache-{os.getuid()}")
  if os.environ.get("JAX_COMPILATION_CACHE_DIR", _cache).startswith(_cache):
    _worker = os.environ.get("PYTEST_XDIST_WORKER")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache + (f"-{_worker}" if _worker else "")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")

import hypothesis  # noqa: E402
import pytest  # noqa: E402

hypothesis.settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.register_profile(
    "thorough", deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile(PROFILE)


EXAMPLE_SCALE = float(os.environ.get("JAXSHIFT_TEST_EXAMPLE_SCALE", "1"))


def examples(n: int) -> int:
  """`n` hypothesis examples in the ci profile, 10 n in thorough (times
  JAXSHIFT_TEST_EXAMPLE_SCALE, at least 1)."""
  return max(1, round((n if PROFILE == "ci" else 10 * n) * EXAMPLE_SCALE))


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


# The longest tests (tens of seconds each on 2 cores) start first, so that
# pytest-xdist's workers do not finish the suite waiting on one of them. The
# second emulated family's runs come after the first's, whose jnp references
# (the same compiles) they then load from the compilation cache.
LONG_FIRST = ("test_equivalence_suite_on_the_emulated_cuda_kernels[walk]",
              "test_64bit_offsets_on_the_emulated_cuda_kernels[walk]",
              "test_cpu_indexing_past_2_31_elements",
              "test_cpu_kernels_have_no_sanitizer_findings",
              "test_wheel_installs_into_a_fresh_venv",
              "test_equivalence_suite_on_the_emulated_cuda_kernels",
              "test_64bit_offsets_on_the_emulated_cuda_kernels",
              "test_docs_build_without_warnings", "test_train_digits_two_epochs",
              "test_deploy_litert_converts_an_active_model_exactly",
              "test_train_sharded_two_steps")


def pytest_collection_modifyitems(config, items):
  del config
  def rank(item):
    return next((i for i, name in enumerate(LONG_FIRST) if item.name.startswith(name)),
                len(LONG_FIRST))
  items.sort(key=rank)  # stable: the rest keep their order
