"""Concrete shifts in a rounding mode: plain XLA (jaxshift/_src/static.py).

The static path against scipy (forward), the adjoint identity (input
gradient), the jnp path with the same shifts traced, and the kernel; its
graph has no custom call, XLA fuses it with its neighbours, and it
differentiates, vmaps and jits like any jnp function.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import oracles
from oracles import scipy_shift

import jaxshift

PADDINGS = jaxshift.PADDINGS
# Lattice, half-way (rounds to even), fractions, beyond the axis, huge, NaN.
VALUES = [-7.5, -2.0, -1.25, -0.5, 0.0, 0.5, 1.0, 1.5, 2.7, 6.0, 1e9, -3e7]


def _case(rng, ndim, channels_last, c=5):
  lengths = [6, 5, 3][:ndim]
  shape = (2, *lengths, c) if channels_last else (2, c, *lengths)
  s = rng.choice(VALUES, size=(c, ndim)).astype(np.float32)
  return rng.normal(size=shape), s


def _grid():
  """(ndim, padding, channels_last, strides): every padding with each rank
  and layout, the strides cycling so that each pair meets all three."""
  for ndim, padding, channels_last in itertools.product(
      (1, 2, 3), PADDINGS, (True, False)):
    k = ndim + PADDINGS.index(padding) + channels_last
    yield ndim, padding, channels_last, [1, 2, (3, 1, 2)[:ndim]][k % 3]


@pytest.mark.parametrize("ndim,padding,channels_last,strides", list(_grid()))
def test_static_path_matches_scipy_the_adjoint_and_the_jnp_path(
    x64, ndim, padding, channels_last, strides):
  rng = np.random.default_rng(ndim * 10 + PADDINGS.index(padding))
  x, s = _case(rng, ndim, channels_last)
  cax = -1 if channels_last else 1
  kw = dict(padding=padding, channel_axis=cax, strides=strides, impl="xla")

  # integer and sparse take the same static code with concrete shifts, and
  # active its weighted form: one mode a case, cycling.
  mode = ("integer", "sparse", "active")[(ndim + PADDINGS.index(padding)) % 3]

  @jax.jit
  def forward_and_vjp(x, g):
    y, vjp = jax.vjp(lambda x: jaxshift.shift(x, s, mode=mode, **kw), x)
    return y, vjp(g)[0]

  want = scipy_shift(x, s, mode=mode, padding=padding, channel_axis=cax,
                     strides=strides)
  g = rng.normal(size=want.shape)
  x2 = rng.normal(size=x.shape)
  want2 = scipy_shift(x2, s, mode=mode, padding=padding,
                      channel_axis=cax, strides=strides)
  y, dx = forward_and_vjp(jnp.asarray(x), jnp.asarray(g))
  np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12, err_msg=mode)
  # <A x, g> == <x, A^T g> with A from scipy, for x and a second random x2
  # (dx = A^T g does not depend on x).
  np.testing.assert_allclose(np.vdot(want, g), np.vdot(x, dx), rtol=1e-10)
  np.testing.assert_allclose(np.vdot(want2, g), np.vdot(x2, dx), rtol=1e-10)


@pytest.mark.parametrize("padding", PADDINGS)
def test_static_path_equals_the_traced_jnp_path(padding):
  """The same shifts concrete (static) and traced (jnp path): equal outputs
  and input gradients."""
  rng = np.random.default_rng(PADDINGS.index(padding))
  # 3-D, channels-first, strided: the grid test covers the rest against
  # scipy; this one checks the two paths agree (a compile of the jnp path).
  for ndim, channels_last in ((3, False),):
    x, s = _case(rng, ndim, channels_last)
    kw = dict(mode="sparse", padding=padding, strides=2,
              channel_axis=-1 if channels_last else 1, impl="xla")
    x = jnp.asarray(x, jnp.float32)
    y, vjp = jax.vjp(lambda x: jaxshift.shift(x, s, **kw), x)
    y_t, vjp_t = jax.vjp(lambda x: jaxshift.shift(x, jnp.asarray(s), **kw), x)
    np.testing.assert_array_equal(y, y_t)
    g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    np.testing.assert_allclose(vjp(g)[0], vjp_t(g)[0], rtol=1e-6, atol=1e-6)


def test_nan_shift_makes_its_channel_and_its_gradient_nan_as_traced():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 4, 3)))
  s = np.array([[0.0, 1.0], [np.nan, 0.0], [2.0, -1.0]], np.float32)
  for padding in PADDINGS:
    f = lambda s: jax.vjp(lambda x: jaxshift.shift(
        x, s, mode="integer", padding=padding, strides=2), x)
    (y, vjp), (y_t, vjp_t) = f(s), f(jnp.asarray(s))
    g = jnp.ones(y.shape)
    np.testing.assert_array_equal(y, y_t)
    np.testing.assert_array_equal(vjp(g)[0], vjp_t(g)[0])
    assert np.all(np.isnan(y[..., 1])) and np.all(np.isnan(vjp(g)[0][..., 1]))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_static_path_is_a_copy_in_every_dtype(dtype):
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 7, 6, 12)), dtype)
  table = jaxshift.grouped_shifts(12, 3, dilation=2)
  y = jaxshift.shift(x, table, mode="integer", padding="reflect")
  assert y.dtype == x.dtype
  want = jaxshift.shift(x, jnp.asarray(table), mode="integer",
                        padding="reflect", impl="xla")
  np.testing.assert_array_equal(np.asarray(y, np.float32),
                                np.asarray(want, np.float32))


@pytest.mark.skipif(not jaxshift.kernels_available("cpu"),
                    reason="needs the CPU kernel")
def test_integer_and_bool_tensors_move_bit_for_bit(x64):
  oracles.check_integer_moves("xla", static=True)


def test_nan_static_shift_zeroes_an_integer_channel():
  x = jnp.arange(1, 11, dtype=jnp.int8).reshape(1, 5, 2)
  y = jaxshift.shift(x, np.array([[np.nan], [1.0]]), mode="integer")
  np.testing.assert_array_equal(y[0, :, 0], 0)
  np.testing.assert_array_equal(y[0, :, 1], [0, 2, 4, 6, 8])


def test_static_path_matches_the_kernel_and_impl_ffi_keeps_the_kernel():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(2, 9, 8, 20)), jnp.float32)
  table = jaxshift.grouped_shifts(20, 3, assignment="modulo")
  for padding in PADDINGS:
    static = jax.jit(lambda x: jaxshift.shift(x, table, mode="sparse",
                                              padding=padding))
    kernel = jax.jit(lambda x: jaxshift.shift(x, table, mode="sparse",
                                              padding=padding, impl="ffi"))
    assert "custom_call" not in static.lower(x).as_text()
    assert "jaxshift_forward" in kernel.lower(x).as_text()
    np.testing.assert_array_equal(static(x), kernel(x))


def test_static_active_is_one_fusion_with_no_gather_and_equals_the_kernel():
  """A frozen active shift (issue 25): zeros padding, shift -> scale ->
  ReLU is one loop fusion of slices, pads, multiplies and adds."""
  s = np.random.default_rng(5).uniform(-2.5, 2.5, (24, 2)).astype(np.float32)
  s[0] = [1.0, 0.0]  # a lattice channel: one tap
  x = jnp.asarray(np.random.default_rng(6).normal(size=(2, 9, 8, 24)), jnp.float32)
  block = jax.jit(lambda x: jax.nn.relu(jaxshift.shift(x, s) * 2.0 + 1.0))
  text = block.lower(x).as_text()
  assert "custom_call" not in text and "gather" not in text
  hlo = block.lower(x).compile().as_text()
  entry = hlo[hlo.index("ENTRY"):]
  body = [line for line in entry.splitlines()[1:]
          if "=" in line and "parameter(" not in line and "constant(" not in line]
  assert len(body) == 1 and "fusion(" in body[0], entry
  for padding in PADDINGS:
    static = jaxshift.shift(x, s, padding=padding)
    if jaxshift.kernels_available("cpu"):
      kernel = jaxshift.shift(x, jnp.asarray(s), padding=padding, impl="ffi")
      np.testing.assert_allclose(static, kernel, rtol=1e-6, atol=1e-6, err_msg=padding)


@pytest.mark.parametrize("impl", ["auto", "xla"])
def test_static_graph_has_no_custom_call_and_fuses(impl):
  table = jaxshift.partial_shifts(96, [(0, -1), (0, 1), (-1, 0), (1, 0)],
                                  group_size=8)

  def block(x):
    return jax.nn.relu(jaxshift.shift(x, table, mode="integer",
                                      impl=impl) * 2.0 + 1.0)

  x = jnp.ones((2, 8, 8, 96))
  grad = jax.grad(lambda x: jnp.sum(block(x)))
  for f in (block, grad):
    assert "custom_call" not in jax.jit(f).lower(x).as_text()
  # The move, the scale, the bias and the ReLU: one loop fusion, nothing
  # materialised in between.
  hlo = jax.jit(block).lower(x).compile().as_text()
  entry = hlo[hlo.index("ENTRY"):]
  body = [line for line in entry.splitlines()[1:]
          if "=" in line and "parameter(" not in line]
  assert len(body) == 1 and "fusion(" in body[0], entry


def test_modulo_tables_over_many_channels_take_the_grouped_form(x64):
  """More channel runs than slices are worth (ShiftNet over 64 channels):
  grouped by offset, still exact against scipy and the adjoint identity."""
  rng = np.random.default_rng(3)
  x = rng.normal(size=(1, 6, 5, 64))
  table = jaxshift.grouped_shifts(64, 3, assignment="modulo")
  f = lambda x: jaxshift.shift(x, table, mode="integer", padding="periodic")
  y, vjp = jax.vjp(f, jnp.asarray(x))
  want = scipy_shift(x, table, mode="integer", padding="periodic")
  np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
  g = rng.normal(size=y.shape)
  np.testing.assert_allclose(np.vdot(want, g),
                             np.vdot(x, vjp(jnp.asarray(g))[0]), rtol=1e-10)
  assert "gather" in jax.jit(f).lower(jnp.asarray(x)).as_text()  # grouped


def test_static_path_vmaps_and_jits():
  table = np.array([[1.0, 0.0], [0.0, -2.0]], np.float32)
  x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 2, 5, 4, 2)))
  f = lambda x: jaxshift.shift(x, table, mode="integer", padding="border")
  np.testing.assert_array_equal(jax.vmap(f)(x), jnp.stack([f(v) for v in x]))
  np.testing.assert_array_equal(jax.jit(jax.vmap(f))(x), jax.vmap(f)(x))


def test_python_sequences_are_static_and_traced_values_are_not():
  x = jnp.arange(5.0)[None, :, None]
  y = jaxshift.shift(x, [[2]], mode="integer")  # a Python sequence
  np.testing.assert_array_equal(y[0, :, 0], [0, 0, 0, 1, 2])
  text = jax.jit(lambda x: jaxshift.shift(x, [[2.0]], mode="integer",
                                          impl="ffi")).lower(x).as_text()
  if jaxshift.kernels_available("cpu"):
    assert "jaxshift_forward" in text
  # A sequence holding a traced value is not static: it stays differentiable.
  ds = jax.grad(lambda s: jnp.sum(jaxshift.shift(
      x, [[s]], mode="sparse", impl="xla") * jnp.arange(5.0)[None, :, None]))(
          jnp.float32(0.5))
  assert float(ds) != 0
  # active mode with concrete shifts: the static weighted form, no gather
  f = lambda x: jaxshift.shift(x, np.array([[0.5]]), impl="xla")
  np.testing.assert_allclose(f(x)[0, :, 0], [0, 0.5, 1.5, 2.5, 3.5])
  assert "gather" not in jax.jit(f).lower(x).as_text()


def test_bad_static_shifts_are_named():
  x = jnp.ones((1, 5, 2))
  with pytest.raises(ValueError, match="shifts"):
    jaxshift.shift(x, np.zeros((3, 1)), mode="integer")
  with pytest.raises(TypeError, match="`shifts` must be a .C, D. array of"):
    jaxshift.shift(x, np.array([["a"], ["b"]]), mode="integer")
  with pytest.raises(ValueError, match="`shifts` must be a .C, D. array of"):
    jaxshift.shift(x, [[1.0], [2.0, 3.0]], mode="integer")
