"""Argument validation: every bad input raises at trace time, naming it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxshift
from jaxshift._src import shapes

X = jnp.zeros((2, 5, 6, 3))
S = jnp.zeros((3, 2))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(mode="bilinear"), ValueError, "`mode`"),
    (dict(padding="wrap"), ValueError, "`padding`"),
    (dict(impl="cuda"), ValueError, "`impl`"),
    (dict(channel_axis=2), ValueError, "`channel_axis`"),
    (dict(channel_axis=7), ValueError, "`channel_axis`"),
    (dict(channel_axis=1.0), TypeError, "`channel_axis`"),
    (dict(channel_axis=True), TypeError, "`channel_axis`"),
    (dict(strides=0), ValueError, "`strides`"),
    (dict(strides=(1, -1)), ValueError, "`strides`"),
    (dict(strides=(1, 2, 3)), ValueError, "`strides`"),
    (dict(strides=True), TypeError, "`strides`"),
    (dict(strides=1.5), TypeError, "`strides`"),
    (dict(strides=(1, 2.0)), ValueError, "`strides`"),
])
def test_bad_options(kwargs, exc, match):
  with pytest.raises(exc, match=match):
    jaxshift.shift(X, S, **kwargs)


@pytest.mark.parametrize("x,s,exc,match", [
    (jnp.zeros((2, 5, 6, 3), jnp.int32), S, TypeError,
     r"mode='active' interpolates.*cast it first \(`x\.astype\(jnp\.float32\)`\)"),
    (jnp.zeros((2, 5, 6, 3), jnp.complex64), S, TypeError, "`x` must have a floating"),
    (jnp.zeros((2, 3, 5, 6)), S, ValueError, r"looks channels-first.*pass channel_axis=1"),
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


def test_any_positive_stride_is_accepted():
  """A stride beyond the axis keeps position 0 only, however large it is."""
  y = jaxshift.shift(X, S, strides=(2**40, 2**70))
  assert y.shape == (2, 1, 1, 3)


def test_channels_first_and_extra_batch_axes():
  x = jnp.ones((2, 3, 5, 6))
  assert jaxshift.shift(x, S, channel_axis=1).shape == (2, 3, 5, 6)
  assert jaxshift.shift(x, S, channel_axis=-3).shape == (2, 3, 5, 6)
  x = jnp.ones((4, 2, 5, 6, 3))
  assert jaxshift.shift(x, S, strides=(2, 3)).shape == (4, 2, 3, 2, 3)
  assert jaxshift.shift(jnp.ones((5, 6, 3)), S).shape == (5, 6, 3)


def test_integer_mode_gives_shifts_no_gradient():
  """Integer mode: shifts are constants. Integer shifts are accepted (and
  differentiating through them is a float0 no-op); floating shifts get an
  exact zero gradient while x still gets the adjoint of the move."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 6, 3)),
                  jnp.float32)
  s_int = jnp.array([[1, -2], [0, 3], [-1, 0]], jnp.int32)
  loss = lambda x, s: jnp.sum(jaxshift.shift(x, s, mode="integer") ** 2)
  dx_int, ds_int = jax.grad(loss, (0, 1), allow_int=True)(x, s_int)
  assert ds_int.dtype == jax.dtypes.float0
  s_float = s_int.astype(jnp.float32)
  dx, ds = jax.grad(loss, (0, 1))(x, s_float)
  np.testing.assert_array_equal(ds, np.zeros((3, 2)))
  np.testing.assert_array_equal(dx, dx_int)
  # The same shifts in active mode do have a gradient: the zero above is the
  # mode's, not the data's.
  assert np.abs(jax.grad(lambda s: jnp.sum(jaxshift.shift(x, s) ** 2))(
      s_float + 0.3)).max() > 0


@pytest.mark.parametrize("value,n,want", [(3, 2, (3, 3)), ((1, 4), 2, (1, 4)),
                                          (np.int64(2), 1, (2,))])
def test_positive_ints(value, n, want):
  assert shapes.positive_ints("k", value, n) == want


@pytest.mark.parametrize("value,odd,match", [
    (0, False, "positive ints"), ((2, 3), True, "positive odd ints"),
    ("3", False, "int or a sequence"), ((1, 2, 3), False, "sequence of 2")])
def test_positive_ints_errors_name_the_argument(value, odd, match):
  with pytest.raises((TypeError, ValueError), match=f"`k`.*{match}"):
    shapes.positive_ints("k", value, 2, odd=odd)


@pytest.mark.parametrize("channel_axis,ndim,ok", [
    (-1, 2, True), (-3, 2, True), (-4, 3, True), (1, 2, True), (0, 1, True),
    (-2, 2, False), (-3, 1, False), (1.0, 2, False), (True, 2, False)])
def test_channel_axis_checked_before_the_input_is_seen(channel_axis, ndim, ok):
  if ok:
    assert shapes.check_channel_axis(channel_axis, ndim) == channel_axis
  else:
    with pytest.raises((TypeError, ValueError), match="`channel_axis`"):
      shapes.check_channel_axis(channel_axis, ndim)
