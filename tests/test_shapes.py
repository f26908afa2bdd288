"""Argument validation: every bad input raises at trace time, naming it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxshift

X = jnp.zeros((2, 5, 6, 3))
S = jnp.zeros((3, 2))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(mode="bilinear"), ValueError, "`mode`"),
    (dict(padding="wrap"), ValueError, "`padding`"),
    (dict(impl="cuda"), ValueError, "`impl`"),
    (dict(channel_axis=2), ValueError, "`channel_axis`"),
    (dict(channel_axis=7), ValueError, "`channel_axis`"),
    (dict(channel_axis=1.0), TypeError, "`channel_axis`"),
    (dict(strides=0), ValueError, "`strides`"),
    (dict(strides=(1, -1)), ValueError, "`strides`"),
    (dict(strides=(1, 2, 3)), ValueError, "`strides`"),
    (dict(strides=True), TypeError, "`strides`"),
    (dict(strides=1.5), TypeError, "`strides`"),
])
def test_bad_options(kwargs, exc, match):
  with pytest.raises(exc, match=match):
    jaxshift.shift(X, S, **kwargs)


@pytest.mark.parametrize("x,s,exc,match", [
    (jnp.zeros((2, 5, 6, 3), jnp.int32), S, TypeError, "`x` must have a float"),
    (X, jnp.zeros((3,)), ValueError, r"`shifts` must have shape \(C, D\)"),
    (X, jnp.zeros((3, 4)), ValueError, r"`shifts` must have shape \(C, D\)"),
    (X, jnp.zeros((4, 2)), ValueError, "channels"),
    (jnp.zeros((5, 3)), S, ValueError, "at least 3 axes"),
    (X, jnp.zeros((3, 2), jnp.int32), TypeError, "mode='integer'"),
    (X, jnp.zeros((3, 2), bool), TypeError, "`shifts` must be floating"),
])
def test_bad_arrays(x, s, exc, match):
  with pytest.raises(exc, match=match):
    jaxshift.shift(x, s)


def test_errors_raise_at_trace_time():
  f = jax.jit(lambda x, s: jaxshift.shift(x, s, padding="nope"))
  with pytest.raises(ValueError, match="`padding`"):
    f.trace(X, S)


def test_channels_first_and_extra_batch_axes():
  x = jnp.ones((2, 3, 5, 6))
  assert jaxshift.shift(x, S, channel_axis=1).shape == (2, 3, 5, 6)
  assert jaxshift.shift(x, S, channel_axis=-3).shape == (2, 3, 5, 6)
  x = jnp.ones((4, 2, 5, 6, 3))
  assert jaxshift.shift(x, S, strides=(2, 3)).shape == (4, 2, 3, 2, 3)
  assert jaxshift.shift(jnp.ones((5, 6, 3)), S).shape == (5, 6, 3)


def test_integer_shifts_in_integer_mode_have_no_gradient():
  s = jnp.array(np.arange(6).reshape(3, 2) - 2)
  y = jaxshift.shift(X + 1, s, mode="integer")
  assert y.shape == X.shape
  gx = jax.grad(lambda x: jaxshift.shift(x, s, mode="integer").sum())(X)
  assert gx.shape == X.shape
