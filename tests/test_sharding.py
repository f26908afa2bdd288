"""The jnp path partitions over batch and channel with no gather."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxshift

pytestmark = pytest.mark.skipif(jax.device_count() < 8,
                                reason="needs 8 (CPU) devices")


@pytest.mark.parametrize("mode", jaxshift.MODES)
def test_no_gather_when_sharded_over_batch_and_channel(mode):
  mesh = jax.make_mesh((4, 2), ("data", "model"))
  rng = np.random.default_rng(0)
  x = jax.device_put(jnp.asarray(rng.normal(size=(8, 6, 5, 4)), jnp.float32),
                     NamedSharding(mesh, P("data", None, None, "model")))
  s = jax.device_put(jnp.asarray(rng.normal(size=(4, 2)), jnp.float32),
                     NamedSharding(mesh, P("model", None)))
  f = lambda x, s: jaxshift.shift(x, s, mode=mode, impl="xla")
  loss = lambda x, s: jnp.sum(f(x, s) ** 2)
  fwd = jax.jit(f).lower(x, s).compile()
  bwd = jax.jit(jax.grad(loss, (0, 1))).lower(x, s).compile()
  for text in (fwd.as_text(), bwd.as_text()):
    assert "all-gather" not in text and "all-to-all" not in text
  assert "all-reduce" not in fwd.as_text()
  y = jax.jit(f)(x, s)
  assert y.sharding.is_equivalent_to(x.sharding, x.ndim)
  want = f(np.asarray(x), np.asarray(s))
  np.testing.assert_allclose(y, want, atol=1e-6)
  dx, ds = jax.jit(jax.grad(loss, (0, 1)))(x, s)
  wdx, wds = jax.grad(loss, (0, 1))(np.asarray(x), np.asarray(s))
  np.testing.assert_allclose(dx, wdx, atol=1e-5)
  np.testing.assert_allclose(ds, wds, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["xla", "auto"])
def test_inside_shard_map_gradients_are_summed(impl):
  """Replicated shifts inside shard_map: the shift gradient is psum'ed."""
  mesh = jax.make_mesh((4, 2), ("data", "model"))
  rng = np.random.default_rng(1)
  x_np = rng.normal(size=(8, 6, 5, 4)).astype(np.float32)
  s_np = rng.normal(size=(4, 2)).astype(np.float32)
  with jax.set_mesh(mesh):
    x = jax.device_put(x_np, NamedSharding(mesh, P("data", None, None, "model")))
    s = jax.device_put(s_np, NamedSharding(mesh, P("model", None)))
    f = jax.shard_map(lambda x, s: jaxshift.shift(x, s, impl=impl), mesh=mesh,
                      in_specs=(P("data", None, None, "model"), P("model", None)),
                      out_specs=P("data", None, None, "model"))
    loss = lambda x, s: jnp.sum(f(x, s) ** 2)
    y = jax.jit(f)(x, s)
    dx, ds = jax.jit(jax.grad(loss, (0, 1)))(x, s)
    text = jax.jit(jax.grad(loss, (0, 1))).lower(x, s).compile().as_text()
  assert "all-gather" not in text
  ref = lambda x, s: jaxshift.shift(x, s, impl="xla")
  np.testing.assert_allclose(y, ref(x_np, s_np), atol=1e-6)
  wdx, wds = jax.grad(lambda x, s: jnp.sum(ref(x, s) ** 2), (0, 1))(x_np, s_np)
  np.testing.assert_allclose(dx, wdx, atol=1e-5)
  np.testing.assert_allclose(ds, wds, rtol=1e-5, atol=1e-4)
