"""TSM's temporal shift: against TSM's own `shift` (re-implemented in NumPy in
test_tables.py), online == offline, gradients, the graph, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from oracles import tsm_shift

import jaxshift
import jaxshift.nn as jsnn


def _one_direction(x, fold, frames_moved):
  """Channels [0, fold) of (N, T, ..., C) read frame t - frames_moved (+1:
  t - 1), zeros beyond the clip; the rest copied. Plain NumPy slicing."""
  out = x.copy()
  moved = np.zeros_like(x[..., :fold])
  if frames_moved > 0:
    moved[:, 1:] = x[:, :-1, ..., :fold]
  else:
    moved[:, :-1] = x[:, 1:, ..., :fold]
  out[..., :fold] = moved
  return out


@pytest.mark.parametrize("c,fold_div,dtype", [(16, 8, np.float32), (12, 4, np.uint8),
                                              (9, 3, np.int16)])
def test_folded_channels_first_is_tsm(c, fold_div, dtype):
  """Raw frames (uint8) and quantized activations move exactly too."""
  n, t = 2, 5
  rng = np.random.default_rng(c)
  x = (rng.normal(size=(n * t, c, 3, 4)) * 100).astype(dtype)
  y = jaxshift.temporal_shift(x, fold_div=fold_div, num_segments=t,
                              channel_axis=1)
  assert y.dtype == dtype
  np.testing.assert_array_equal(y, tsm_shift(x, t, fold_div))


def test_channels_last_with_a_time_axis_is_tsm():
  n, t, c = 2, 4, 16
  x = np.random.default_rng(0).normal(size=(n, t, 3, 2, c)).astype(np.float32)
  y = jaxshift.temporal_shift(x)  # (N, T, H, W, C), time_axis=1
  # TSM's layout: (N*T, C, H, W).
  folded = x.transpose(0, 1, 4, 2, 3).reshape(n * t, c, 3, 2)
  want = tsm_shift(folded, t, 8).reshape(n, t, c, 3, 2).transpose(0, 1, 3, 4, 2)
  np.testing.assert_array_equal(y, want)
  # Channels-first with time after the channels: (N, C, T, H, W).
  xf = x.transpose(0, 4, 1, 2, 3)
  yf = jaxshift.temporal_shift(xf, time_axis=2, channel_axis=1)
  np.testing.assert_array_equal(yf, want.transpose(0, 4, 1, 2, 3))


@pytest.mark.parametrize("direction,frames_moved", [("right", 1),
                                                    ("left", -1)])
def test_one_direction(direction, frames_moved):
  x = np.random.default_rng(1).normal(size=(2, 6, 5, 8)).astype(np.float32)
  y = jaxshift.temporal_shift(x, fold_div=4, direction=direction)
  np.testing.assert_array_equal(y, _one_direction(x, 2, frames_moved))


@pytest.mark.parametrize("padding", jaxshift.PADDINGS)
def test_every_padding_is_the_shift_of_the_tsm_table(padding):
  """The same move as `jaxshift.shift` with TSM's table along time."""
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 5, 16)),
                  jnp.float32)  # (N, T, C)
  table = jaxshift.partial_shifts(16, [(-1,), (1,)], group_size=2)
  want = jaxshift.shift(x, jnp.asarray(table), mode="integer",
                        padding=padding, impl="xla")
  np.testing.assert_array_equal(
      jaxshift.temporal_shift(x, padding=padding), want)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.uint8])
def test_streaming_equals_offline_right(dtype):
  rng = np.random.default_rng(3)
  clip = jnp.asarray(rng.normal(size=(2, 7, 4, 4, 16)) * 50, dtype)
  offline = jaxshift.temporal_shift(clip, direction="right")
  step = jax.jit(jaxshift.temporal_shift_step)
  cache, frames = None, []
  for t in range(clip.shape[1]):
    y, cache = step(clip[:, t], cache) if cache is not None else \
        jaxshift.temporal_shift_step(clip[:, t])
    frames.append(y)
  np.testing.assert_array_equal(jnp.stack(frames, 1), offline)
  # The layer's step and call are the same functions.
  layer = jsnn.TemporalShift(direction="right")
  np.testing.assert_array_equal(layer(clip), offline)
  y0, c0 = layer.step(clip[:, 0])
  np.testing.assert_array_equal(y0, offline[:, 0])
  np.testing.assert_array_equal(c0, clip[:, 0, ..., :2])


def test_input_gradient_is_the_adjoint_and_the_graph_is_plain_xla():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(3 * 4, 8, 2, 2))
  g = rng.normal(size=x.shape)
  f = lambda x: jaxshift.temporal_shift(x, fold_div=4, num_segments=4,
                                        channel_axis=1)
  with jax.enable_x64(True):
    dx = jax.jit(lambda x, g: jax.vjp(f, x)[1](g)[0])(x, g)
    # <A x, g> == <x, A^T g> with A from TSM's own function, two x.
    for v in (x, rng.normal(size=x.shape)):
      np.testing.assert_allclose(np.vdot(tsm_shift(v, 4, 4), g),
                                 np.vdot(v, dx), rtol=1e-12)
  text = jax.jit(jax.grad(lambda x: jnp.sum(f(x) ** 2))).lower(
      jnp.ones(x.shape, jnp.float32)).as_text()
  assert "custom_call" not in text


@pytest.mark.parametrize("kwargs,match", [
    (dict(fold_div=32), "leaves no channel"),
    (dict(fold_div=0), "`fold_div`"),
    (dict(num_segments=4), "multiple"),
    (dict(num_segments=3, channel_axis=0), "`channel_axis` cannot be 0"),
    (dict(time_axis=-1), "same axis"),
    (dict(time_axis=5), "`time_axis`"),
    (dict(direction="up"), "`direction`"),
    (dict(padding="wrap"), "`padding`"),
])
def test_errors_name_the_argument(kwargs, match):
  with pytest.raises(ValueError, match=match):
    jaxshift.temporal_shift(jnp.ones((6, 3, 16)), **kwargs)


def test_step_errors():
  with pytest.raises(ValueError, match="`cache` must have the shape"):
    jaxshift.temporal_shift_step(jnp.ones((2, 16)), jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match="`cache` must have the shape"):
    jaxshift.temporal_shift_step(jnp.ones((2, 16)),
                                 jnp.zeros((2, 2), jnp.bfloat16))
  with pytest.raises(TypeError, match="`x_t` must have a floating"):
    jaxshift.temporal_shift_step(jnp.ones((2, 16), jnp.complex64))
