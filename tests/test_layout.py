"""The canonical call (`jaxshift._src.layout`), with no compiled code.

Oracles: numpy's own reshape and slicing (what the canonical layout and the
strides must agree with). What Python and the compiled kernels must agree
on (padding codes, the axis-length bound) is asked of the libraries
themselves in tests/test_ffi.py.
"""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import examples

import jaxshift
from jaxshift._src import ffi
from jaxshift._src import layout
from jaxshift._src import shapes

def _call(shape, ndim, *, channels_last=True, strides=1, mode="active",
          x_dtype="float32", s_dtype="float32"):
  c = shape[-1] if channels_last else shape[-1 - ndim]
  return layout.make_call(
      jax.ShapeDtypeStruct(shape, x_dtype), jax.ShapeDtypeStruct((c, ndim),
                                                                 s_dtype),
      mode=mode, padding="zeros", channel_axis=-1 if channels_last else
      len(shape) - 1 - ndim, strides=strides, impl="auto")


@hypothesis.settings(max_examples=examples(60))
@hypothesis.given(ndim=st.integers(1, 3), channels_last=st.booleans(),
                  data=st.data())
def test_canonical_layout_is_a_reshape_of_x(ndim, channels_last, data):
  """x reshaped to `shape5` puts element (batch..., p, c) at (n, a, b, w, c)."""
  batch = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
  spatial = tuple(data.draw(st.lists(st.integers(1, 5), min_size=ndim,
                                     max_size=ndim)))
  c = data.draw(st.integers(1, 4))
  shape = batch + (spatial + (c,) if channels_last else (c,) + spatial)
  call = _call(shape, ndim, channels_last=channels_last)
  x = np.arange(np.prod(shape)).reshape(shape)
  x5 = x.reshape(call.shape5())
  # The oracle: move the channel axis last, flatten the batch, left-pad the
  # spatial axes with unit axes.
  xc = x if channels_last else np.moveaxis(x, len(batch), -1)
  want = xc.reshape((-1,) + (1,) * (3 - ndim) + spatial + (c,))
  got = x5 if channels_last else np.moveaxis(x5, 1, -1)
  np.testing.assert_array_equal(got, want)
  assert call.present == (False,) * (3 - ndim) + (True,) * ndim
  assert call.lengths == (1,) * (3 - ndim) + spatial
  assert call.batch == int(np.prod(batch)) and call.channels == c
  assert call.spatial_axes5 == ((1, 2, 3) if channels_last else (2, 3, 4))
  assert x5.shape[call.channel_axis5] == c


@hypothesis.settings(max_examples=examples(60))
@hypothesis.given(data=st.data())
def test_output_shape_and_kernel_strides_sample_as_slicing_does(data):
  ndim = data.draw(st.integers(1, 3))
  spatial = tuple(data.draw(st.lists(st.integers(1, 9), min_size=ndim,
                                     max_size=ndim)))
  strides = tuple(data.draw(st.lists(
      st.one_of(st.integers(1, 12), st.integers(2**20, 2**62)), min_size=ndim,
      max_size=ndim)))
  call = _call((2,) + spatial + (3,), ndim, strides=strides)
  # The oracle: the positions a strided slice keeps.
  want = tuple(len(range(0, length, t)) for length, t in zip(spatial, strides))
  assert call.out_shape == (2,) + want + (3,)
  assert call.out_shape5() == (2,) + (1,) * (3 - ndim) + want + (3,)
  for a, (length, t) in enumerate(zip(spatial, strides)):
    kt = call.kernel_strides[3 - ndim + a]
    assert kt <= max(1, length)  # small, whatever the stride
    assert list(range(0, length, kt)) == list(range(0, length, t))
  assert call.kernel_strides[:3 - ndim] == (1,) * (3 - ndim)


def test_out_shape5_keeps_the_batch_and_channels_it_is_given():
  """Under vmap and partitioning a kernel sees more samples, fewer channels."""
  call = _call((2, 4, 6, 8), 2, strides=2)
  assert call.out_shape5((10, 1, 4, 6, 3)) == (10, 1, 2, 3, 3)
  call = _call((2, 8, 4, 6), 2, channels_last=False, strides=(1, 3))
  assert call.out_shape5((5, 2, 1, 4, 6)) == (5, 2, 1, 4, 2)


@pytest.mark.parametrize("x_dtype,s_dtype,compute,grad", [
    ("float32", "float32", "float32", "float32"),
    ("bfloat16", "float32", "float32", "float32"),
    ("float16", "bfloat16", "float32", "bfloat16"),
    ("float32", "float64", "float32", "float64"),
    ("float64", "float32", "float64", "float32"),
    ("float64", "float64", "float64", "float64"),
    ("float32", "int32", "float32", "float32"),
])
def test_one_dtype_policy(x64, x_dtype, s_dtype, compute, grad):
  """Every implementation computes in x's accumulation dtype (float64 only
  for float64 x); the shift gradient comes back in the shifts' dtype."""
  call = _call((1, 5, 2), 1, x_dtype=x_dtype, s_dtype=s_dtype,
               mode="integer" if s_dtype == "int32" else "active")
  assert call.compute_dtype == compute
  assert call.grad_dtype == np.dtype(grad)
  assert layout.compute_dtype(x_dtype) == np.dtype(compute)


def test_calls_are_hashable_static_arguments():
  a, b = _call((2, 5, 3), 1), _call((2, 5, 3), 1)
  assert a == b and hash(a) == hash(b)
  assert a != _call((2, 5, 3), 1, strides=2)


def test_making_a_call_needs_no_kernel(monkeypatch):
  def fail(platform):
    raise AssertionError(f"the layout asked for the {platform} kernels")
  monkeypatch.setattr(ffi, "kernels_available", fail)
  call = _call((2, 3, 4, 5, 6), 3, channels_last=False, strides=(1, 2, 3))
  assert call.shape5() == (2, 3, 4, 5, 6)


def test_an_axis_longer_than_the_bound_is_refused_naming_x():
  long = shapes.MAX_AXIS_LENGTH + 1
  with pytest.raises(ValueError, match=r"`x` has \d+ positions along spatial"):
    _call((1, long, 1), 1)
  # At the bound it is accepted (shapes only: nothing is allocated).
  assert _call((1, shapes.MAX_AXIS_LENGTH, 1), 1).lengths[-1] == long - 1
  with pytest.raises(ValueError, match="`x` has"):
    jax.eval_shape(lambda x: jaxshift.shift(x, jnp.zeros((1, 1))),
                   jax.ShapeDtypeStruct((1, long, 1), jnp.float32))
