"""Shift tables against NumPy re-implementations of the cited code.

Each reference below restates, in NumPy, what the public code of a paper
computes (../shared/notes/modern-shifts.md names the file), not our formula:
the table from jaxshift, applied by `jaxshift.shift(mode="integer")`, must
give the same array.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from oracles import tsm_shift

import jaxshift


def shiftvit_shift_feat(x, n_div):
  """ShiftViT, models/shiftvit.py `shift_feat`: x is (B, C, H, W)."""
  g = x.shape[1] // n_div
  out = np.zeros_like(x)
  out[:, g * 0:g * 1, :, :-1] = x[:, g * 0:g * 1, :, 1:]  # shift left
  out[:, g * 1:g * 2, :, 1:] = x[:, g * 1:g * 2, :, :-1]  # shift right
  out[:, g * 2:g * 3, :-1, :] = x[:, g * 2:g * 3, 1:, :]  # shift up
  out[:, g * 3:g * 4, 1:, :] = x[:, g * 3:g * 4, :-1, :]  # shift down
  out[:, g * 4:, :, :] = x[:, g * 4:, :, :]  # no shift
  return out


def s2mlp_spatial_shift(x):
  """S²-MLP, S2Attention.py `spatial_shift1`: x is (B, W, H, C), shifted in
  place by slice assignment (each right-hand side is read before writing)."""
  x = x.copy()
  _, w, h, c = x.shape
  x[:, 1:, :, :c // 4] = x[:, :w - 1, :, :c // 4].copy()
  x[:, :w - 1, :, c // 4:c // 2] = x[:, 1:, :, c // 4:c // 2].copy()
  x[:, :, 1:, c // 2:c * 3 // 4] = x[:, :, :h - 1, c // 2:c * 3 // 4].copy()
  x[:, :, :h - 1, 3 * c // 4:] = x[:, :, 1:, 3 * c // 4:].copy()
  return x


def asmlp_shift(x, shift_size, dim, dilation=1):
  """AS-MLP, models/as_mlp.py: zero-pad, torch.chunk the channels, roll
  chunk g by (g - pad) * dilation along `dim` (2: H, 3: W), crop."""
  _, c, h, w = x.shape
  pad = shift_size // 2 * dilation
  xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  size = -(-c // shift_size)  # torch.chunk: chunks of ceil(C / n)
  chunks = [xp[:, i:i + size] for i in range(0, c, size)]
  rolled = [np.roll(xc, (g - shift_size // 2) * dilation, axis=dim)
            for g, xc in enumerate(chunks)]
  return np.concatenate(rolled, 1)[:, :, pad:pad + h, pad:pad + w]


def shiftnet_modulo(x):
  """ShiftNet (shiftnet_cuda_v2): channel c < 9 floor(C/9) moves along
  direction c % 9 of the 3x3 neighbourhood in raster order, (c % 9) // 3 - 1
  rows and (c % 9) % 3 - 1 columns; zeros fill; the other channels stay."""
  out = x.copy()
  c = x.shape[1]
  for ch in range(9 * (c // 9)):
    dy, dx = (ch % 9) // 3 - 1, (ch % 9) % 3 - 1
    moved = np.zeros_like(x[:, ch])
    h, w = x.shape[2:]
    moved[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[:, ch, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    out[:, ch] = moved
  return out


def shift_nchw(x, table, padding="zeros"):
  return np.asarray(jaxshift.shift(jnp.asarray(x), table, mode="integer",
                                   padding=padding, channel_axis=1))


@pytest.fixture
def rng():
  return np.random.default_rng(0)


@pytest.mark.parametrize("c,fold_div", [(16, 8), (12, 4), (10, 3)])
def test_partial_shifts_along_time_is_tsm(rng, c, fold_div):
  n, t, h, w = 2, 4, 3, 2
  x = rng.normal(size=(n * t, c, h, w)).astype(np.float32)
  table = jaxshift.partial_shifts(c, [(-1,), (1,)], group_size=c // fold_div)
  # Time as the one spatial axis: (N, H, W, T, C) folded to (N*H*W, T, C).
  xt = x.reshape(n, t, c, h, w).transpose(0, 3, 4, 1, 2).reshape(-1, t, c)
  y = np.asarray(jaxshift.shift(jnp.asarray(xt), table, mode="integer"))
  y = y.reshape(n, h, w, t, c).transpose(0, 3, 4, 1, 2).reshape(x.shape)
  np.testing.assert_array_equal(y, tsm_shift(x, t, fold_div))


@pytest.mark.parametrize("c", [12, 24, 30])
def test_partial_shifts_is_shiftvit(rng, c):
  x = rng.normal(size=(2, c, 5, 6)).astype(np.float32)
  table = jaxshift.partial_shifts(c, [(0, -1), (0, 1), (-1, 0), (1, 0)],
                                  group_size=c // 12)
  np.testing.assert_array_equal(shift_nchw(x, table),
                                shiftvit_shift_feat(x, 12))


@pytest.mark.parametrize("c", [8, 12])
def test_partial_shifts_with_border_padding_is_s2mlp(rng, c):
  x = rng.normal(size=(2, 5, 4, c)).astype(np.float32)  # (B, W, H, C)
  table = jaxshift.partial_shifts(c, [(1, 0), (-1, 0), (0, 1), (0, -1)],
                                  fraction=0.25)
  y = jaxshift.shift(jnp.asarray(x), table, mode="integer", padding="border")
  np.testing.assert_array_equal(y, s2mlp_spatial_shift(x))


@pytest.mark.parametrize("c,shift_size,axis,dilation",
                         [(6, 3, 1, 1), (13, 5, 0, 1), (10, 3, 1, 2),
                          (9, 5, 1, 1)])
def test_axial_shifts_is_asmlp(rng, c, shift_size, axis, dilation):
  x = rng.normal(size=(2, c, 6, 7)).astype(np.float32)
  table = jaxshift.axial_shifts(c, shift_size, axis=axis, dilation=dilation)
  np.testing.assert_array_equal(
      shift_nchw(x, table), asmlp_shift(x, shift_size, 2 + axis, dilation))


@pytest.mark.parametrize("c", [9, 13, 20])
def test_grouped_shifts_modulo_is_shiftnet(rng, c):
  x = rng.normal(size=(2, c, 4, 5)).astype(np.float32)
  table = jaxshift.grouped_shifts(c, 3, assignment="modulo")
  np.testing.assert_array_equal(shift_nchw(x, table), shiftnet_modulo(x))


def test_partial_shifts_modulo_interleaves_the_offsets():
  t = jaxshift.partial_shifts(7, [(1,), (-1,)], group_size=3,
                              assignment="modulo")
  assert t[:, 0].tolist() == [1, -1, 1, -1, 1, -1, 0]


def test_tables_are_float32_integers():
  for t in (jaxshift.grouped_shifts(20, 3, assignment="modulo"),
            jaxshift.partial_shifts(8, [(0, 2)], fraction=0.5),
            jaxshift.axial_shifts(9, 3, axis=-1, ndim=3, dilation=2)):
    assert t.dtype == np.float32 and np.array_equal(t, np.round(t))
  assert jaxshift.axial_shifts(9, 3, axis=-1, ndim=3).shape == (9, 3)


@pytest.mark.parametrize("fn,kwargs,match", [
    (jaxshift.partial_shifts, dict(channels=8, offsets=[(1,), (-1,)],
                                   group_size=5), "more than `channels`"),
    (jaxshift.partial_shifts, dict(channels=8, offsets=[(1, 0), (1,)],
                                   group_size=1), "`offsets`"),
    (jaxshift.partial_shifts, dict(channels=8, offsets=[(0.5,)],
                                   group_size=1), "`offsets`"),
    (jaxshift.partial_shifts, dict(channels=8, offsets=[],
                                   group_size=1), "`offsets`"),
    (jaxshift.partial_shifts, dict(channels=8, offsets=[(1, 0, 0, 0)],
                                   group_size=1), "len\\(offsets\\[0\\]\\)"),
    (jaxshift.partial_shifts, dict(channels=8, offsets=[(1,)]),
     "exactly one of `fraction` and `group_size`"),
    (jaxshift.partial_shifts, dict(channels=8, offsets=[(1,)], fraction=0.5,
                                   group_size=2), "exactly one"),
    (jaxshift.partial_shifts, dict(channels=8, offsets=[(1,)],
                                   fraction=0.01), "rounds to no channel"),
    (jaxshift.partial_shifts, dict(channels=8, offsets=[(1,)],
                                   fraction=1.5), "`fraction`"),
    (jaxshift.partial_shifts, dict(channels=8, offsets=[(1,)], group_size=1,
                                   assignment="strided"), "`assignment`"),
    (jaxshift.axial_shifts, dict(channels=8, shift_size=4, axis=0),
     "`shift_size` must be a positive odd int"),
    (jaxshift.axial_shifts, dict(channels=4, shift_size=3, axis=0),
     "empty"),
    (jaxshift.axial_shifts, dict(channels=8, shift_size=3, axis=2),
     "`axis`"),
    (jaxshift.grouped_shifts, dict(channels=8, kernel_size=3),
     "at least kernel_size"),
    (jaxshift.grouped_shifts, dict(channels=9, assignment="x"),
     "`assignment`"),
])
def test_impossible_requests_name_the_argument(fn, kwargs, match):
  with pytest.raises(ValueError, match=match):
    fn(**kwargs)


def test_tables_are_concrete_numpy():
  """Plain NumPy, usable at trace time (as constants) inside jit."""
  t = jaxshift.partial_shifts(4, [(1, 0)], group_size=2)
  assert isinstance(t, np.ndarray)
  y = jax.jit(lambda x: jaxshift.shift(x, t, mode="integer"))(
      jnp.ones((1, 3, 3, 4)))
  assert y.shape == (1, 3, 3, 4)
