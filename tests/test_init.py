"""Shift assignments and initialisers."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxshift
from jaxshift import initializers


@pytest.mark.parametrize("channels,k,dilation,ndim", [
    (9, 3, 1, 2), (20, 3, 2, 2), (64, 3, 1, 2), (50, 5, 1, 2), (7, 3, 1, 1),
    (30, 3, 1, 3)])
def test_grouped_shifts_cover_the_neighbourhood(channels, k, dilation, ndim):
  s = jaxshift.grouped_shifts(channels, k, dilation, ndim=ndim)
  assert s.shape == (channels, ndim) and s.dtype == np.float32
  groups = k**ndim
  size = channels // groups
  want = {tuple(dilation * (np.array(o) - k // 2))
          for o in itertools.product(range(k), repeat=ndim)}
  assert {tuple(r) for r in s[:size * groups]} == want
  # Contiguous groups of equal size, in raster order; leftovers at the centre.
  for g in range(groups):
    block = s[g * size:(g + 1) * size]
    assert (block == block[0]).all()
  np.testing.assert_array_equal(s[size * groups:], 0)
  assert np.all(np.diff([tuple(r) for r in s[:size * groups:size]], axis=0)
                .any(axis=1))


def test_grouped_shift_moves_each_group_like_a_3x3_tap():
  """Grouped integer shift == picking one tap of a 3x3 neighbourhood."""
  x = jax.random.normal(jax.random.key(0), (2, 6, 7, 9))
  s = jaxshift.grouped_shifts(9, 3)
  y = jaxshift.shift(x, s, mode="integer")
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  for c in range(9):
    dy, dx = s[c].astype(int)
    want = xp[:, 1 - dy:7 - dy, 1 - dx:8 - dx, c]
    np.testing.assert_array_equal(y[..., c], want)


@pytest.mark.parametrize("kwargs,match", [
    (dict(channels=4), "`channels`"), (dict(channels=0), "`channels`"),
    (dict(channels=9, kernel_size=2), "`kernel_size`"),
    (dict(channels=9, dilation=0), "`dilation`"),
    (dict(channels=9, ndim=4), "`ndim`")])
def test_grouped_shifts_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    jaxshift.grouped_shifts(**kwargs)


def test_initializers():
  key = jax.random.key(3)
  u = initializers.uniform(0.5)(key, (4000, 2))
  assert u.shape == (4000, 2) and u.dtype == jnp.float32
  assert float(jnp.abs(u).max()) <= 0.5 and float(jnp.abs(u).max()) > 0.49
  assert abs(float(u.mean())) < 0.02
  v = initializers.sign_split(2.0)(key, (4000, 2), jnp.bfloat16)
  assert v.dtype == jnp.bfloat16 and float(jnp.abs(v).max()) <= 2.0
  frac_pos = float((v > 0).mean())
  assert 0.45 < frac_pos < 0.55
  np.testing.assert_array_equal(initializers.zeros(key, (3, 2)), 0)
  g = initializers.grouped(3)(key, (18, 2))
  np.testing.assert_array_equal(g, jaxshift.grouped_shifts(18, 3))
  with pytest.raises(ValueError, match="`shape`"):
    initializers.grouped(3)(key, (18,))
