"""Test configuration: 8 CPU devices, strict promotion, hypothesis profiles.

Hypothesis profiles (choose with JAXSHIFT_TEST_PROFILE):
  ci        (default) derandomised: the same examples every run, a size that
            keeps the suite within CI's time budget, no example database;
  thorough  10x the examples, random: run it before a release or after
            touching a kernel (JAXSHIFT_TEST_PROFILE=thorough python -m pytest).
Tests ask for their example count through `examples(n)`: n in ci, 10 n in
thorough.
"""

import os

import jax

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")

import hypothesis  # noqa: E402
import pytest  # noqa: E402

PROFILE = os.environ.get("JAXSHIFT_TEST_PROFILE", "ci")
hypothesis.settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.register_profile(
    "thorough", deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
if PROFILE not in ("ci", "thorough"):
  raise ValueError(f"JAXSHIFT_TEST_PROFILE must be 'ci' or 'thorough'; got "
                   f"{PROFILE!r}.")
hypothesis.settings.load_profile(PROFILE)


def examples(n: int) -> int:
  """`n` hypothesis examples in the ci profile, 10 n in thorough."""
  return n if PROFILE == "ci" else 10 * n


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield
