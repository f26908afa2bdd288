"""The reference mathematics (`jaxshift._src.spec`): padding and shift tables.

Oracles: `numpy.pad` (every padding rule) and exact rational arithmetic
(`fractions.Fraction`) for the shift tables, whatever the shifts' dtype.
"""

import fractions
import math

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from conftest import examples

import jaxshift
from jaxshift._src import layout
from jaxshift._src import spec

NUMPY_PAD = {"zeros": "constant", "border": "edge", "periodic": "wrap",
             "reflect": "reflect", "symmetric": "symmetric"}


@pytest.mark.parametrize("padding", jaxshift.PADDINGS)
@pytest.mark.parametrize("length", [1, 2, 3, 7])
def test_pad_index_reads_as_numpy_pad(padding, length):
  reach = 3 * length + 2
  j = np.arange(-reach, length + reach)
  values = np.arange(1, length + 1)  # 0 marks "answered by zero"
  want = np.pad(values, reach, mode=NUMPY_PAD[padding])
  if padding == "reflect" and length == 1:
    want = np.full_like(want, 1)  # numpy refuses; docs/semantics.md: index 0
  idx = np.asarray(spec.pad_index(jnp.asarray(j), length, padding))
  got = np.where(idx >= 0, values[np.clip(idx, 0, length - 1)], 0)
  np.testing.assert_array_equal(got, want)


def _exact_tables(s, length, padding, rounded):
  """(m, f) of one shift by exact rational arithmetic: the oracle."""
  q = fractions.Fraction(s)
  if rounded:
    q = fractions.Fraction(round(q))  # Python rounds half to even
  period = {"periodic": length, "reflect": 2 * length - 2 if length > 1 else 0,
            "symmetric": 2 * length}.get(padding, 0)
  if period:
    q = q - period * math.trunc(q / period)  # the sign of the dividend
  else:
    q = max(min(q, length + 2), -(length + 2))
  m = math.floor(-q)
  return m, -q - m


SHIFT_DTYPES = ["float16", "bfloat16", "float32", "float64", "int32", "int64"]


@hypothesis.settings(max_examples=examples(80))
@hypothesis.given(
    s_dtype=st.sampled_from(SHIFT_DTYPES),
    x_dtype=st.sampled_from(["float32", "float64"]),
    padding=st.sampled_from(jaxshift.PADDINGS), length=st.integers(1, 40),
    rounded=st.booleans(),
    value=st.one_of(st.floats(-2e4, 2e4), st.floats(-1e12, 1e12),
                    st.integers(-2**40, 2**40).map(float),
                    st.integers(-100, 100).map(lambda i: i + 0.5)))
def test_shift_tables_are_exact_in_the_shifts_own_precision(
    s_dtype, x_dtype, padding, length, rounded, value):
  """The reduction happens before any cast: the fraction is that of the
  shift as given (in its own dtype), rounded once to the compute dtype."""
  with jax.enable_x64(True):
    np_dtype = (ml_dtypes.bfloat16 if s_dtype == "bfloat16"
                else np.dtype(s_dtype))
    with np.errstate(over="ignore", invalid="ignore"):
      given = np.asarray(value).astype(np_dtype)  # the shift the user passes
    hypothesis.assume(np.isfinite(given.astype(np.float64)))
    s = jnp.asarray(given)[None, None]
    call = layout.make_call(
        jax.ShapeDtypeStruct((1, length, 1), x_dtype), s, mode="integer"
        if s_dtype.startswith("int") else "active", padding=padding,
        channel_axis=-1, strides=1, impl="xla")
    m, f = spec.shift_tables(call, s, rounded=rounded)
    want_m, want_f = _exact_tables(float(given.astype(np.float64)), length,
                                   padding, rounded)
    got_m, got_f = int(m[0, 2]), float(f[0, 2])
    # The fraction is rounded once to the compute dtype; off the lattice
    # (a fraction that is not 0 exactly) it stays inside (0, 1) and normal:
    # a rounding to 1 or below the smallest normal is clamped (SPEC: the
    # lattice is decided from the shift in its own precision).
    want_f_c = float(np.asarray(float(want_f), x_dtype))
    if want_f != 0:
      info = np.finfo(x_dtype)
      want_f_c = min(max(want_f_c, float(info.tiny)),
                     float(np.nextafter(np.asarray(1, x_dtype), 0)))
    assert (got_m, got_f) == (want_m, want_f_c)
    assert f.dtype == jnp.dtype(x_dtype) and m.dtype == jnp.int32
    # The absent axes have zero tables.
    np.testing.assert_array_equal(m[0, :2], 0)
    np.testing.assert_array_equal(f[0, :2], 0)


def test_far_float64_shift_keeps_its_half_for_float32_x(x64):
  """The issue's case: 1e9 + 0.5 under periodic padding, x float32."""
  x = jnp.arange(1.0, 6.0, dtype=jnp.float32)[None, :, None]
  s = jnp.array([[1e9 + 0.5]], jnp.float64)  # 1e9 is 2e8 periods of 5
  y = jaxshift.shift(x, s, padding="periodic", impl="xla")
  np.testing.assert_allclose(y[0, :, 0], [3.0, 1.5, 2.5, 3.5, 4.5])
  assert y.dtype == jnp.float32


def test_large_integer_shifts_are_exact(x64):
  """2**40 + 2 is not a float32: integer shifts are reduced as integers."""
  x = jnp.arange(1.0, 6.0)[None, :, None]
  s = jnp.array([[2**40 + 2]], jnp.int64)  # 2**40 = 16**10 = 1 (mod 5): a move of 3
  y = jaxshift.shift(x, s, mode="integer", padding="periodic", impl="xla")
  np.testing.assert_array_equal(y[0, :, 0], np.roll(np.arange(1.0, 6.0), 3))
