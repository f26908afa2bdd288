"""A 3-D segmentation net trained with its volumes split in space over 8 devices.

Each volume is split over a 2x2x2 mesh along depth, height and width
(``P(None, "d", "h", "w", None)``): every device holds one octant. The net
is pointwise layers (``nnx.Linear`` on the channels: 1x1x1 convolutions)
around 3-D active `jaxshift.nn.Shift` layers, whose halo exchange
(``max_shift``) moves only the few cells each shift reads across an
octant's faces, edges and corners; no layer gathers the volume. The same
model, from the same initial parameters, is then trained on one device,
and the two loss curves are compared: they agree to float rounding.

The task: find the spheres in a noisy volume (a voxel-wise mask, logistic
loss).

One machine, 8 simulated CPU devices (set here when the backend is the CPU
and no device count is given):

  python examples/segment_sharded.py --steps 30
"""

import argparse
import os
import time

import numpy as np


def volumes(rng, n, size, spheres=3):
  """``(x, mask)``: ``[n, size, size, size, 1]`` noisy volumes with
  `spheres` random balls each, and the balls' mask."""
  grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), -1)
  mask = np.zeros((n, size, size, size), bool)
  for i in range(n):
    for _ in range(spheres):
      centre = rng.uniform(0.2, 0.8, 3) * size
      radius = rng.uniform(0.1, 0.2) * size
      mask[i] |= np.sum((grid - centre) ** 2, -1) < radius ** 2
  x = mask + rng.normal(scale=0.8, size=mask.shape)
  return x[..., None].astype(np.float32), mask[..., None].astype(np.float32)


def make_model(width, depth, max_shift, seed):
  from flax import nnx

  import jaxshift.nn as jsnn

  class Block(nnx.Module):
    """Linear -> ReLU -> Shift (3-D, active) -> Linear, plus the input."""

    def __init__(self, rngs):
      self.expand = nnx.Linear(width, 2 * width, rngs=rngs)
      self.shift = jsnn.Shift(2 * width, ndim=3, mode="active",
                              max_shift=max_shift, rngs=rngs)
      self.project = nnx.Linear(2 * width, width, rngs=rngs)

    def __call__(self, x):
      return x + self.project(self.shift(nnx.relu(self.expand(x))))

  class Net(nnx.Module):
    def __init__(self, rngs):
      self.lift = nnx.Linear(1, width, rngs=rngs)
      self.blocks = nnx.List([Block(rngs) for _ in range(depth)])
      self.head = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, x):
      h = self.lift(x)
      for block in self.blocks:
        h = nnx.relu(block(h))
      return self.head(h)

  return Net(nnx.Rngs(seed))


def train(mesh, x, mask, *, steps, width, depth, max_shift, lr, seed):
  """Trains a fresh model on `x`, split over `mesh` (or on one device when
  `mesh` is None); returns the loss of every step and the step's HLO."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from jax.sharding import NamedSharding, PartitionSpec as P

  model = make_model(width, depth, max_shift, seed)
  optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)
  if mesh is not None:
    replicated = NamedSharding(mesh, P())
    for m in (model, optimizer):
      nnx.update(m, jax.device_put(nnx.state(m), replicated))
    space = NamedSharding(mesh, P(None, "d", "h", "w", None))
    x, mask = jax.device_put(x, space), jax.device_put(mask, space)

  @nnx.jit
  def step(model, optimizer, x, mask):
    def loss_fn(model):
      return jnp.mean(optax.sigmoid_binary_cross_entropy(model(x), mask))
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  text = step.lower(model, optimizer, x, mask).compile().as_text()
  losses = [float(step(model, optimizer, x, mask)) for _ in range(steps)]
  return losses, text


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--steps", type=int, default=30)
  p.add_argument("--size", type=int, default=32, help="volume edge (voxels)")
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--width", type=int, default=8)
  p.add_argument("--depth", type=int, default=2)
  p.add_argument("--max-shift", type=float, default=2.0,
                 help="the halo bound of the shift layers")
  p.add_argument("--lr", type=float, default=1e-2)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)

  import jax
  if jax.device_count() < 8:
    raise SystemExit(
        f"needs 8 devices; there are {jax.device_count()}. On the CPU run it "
        "as a script (it asks for 8), or set "
        "XLA_FLAGS=--xla_force_host_platform_device_count=8.")
  mesh = jax.make_mesh((2, 2, 2), ("d", "h", "w"), devices=jax.devices()[:8])
  x, mask = volumes(np.random.default_rng(args.seed), args.batch, args.size)
  kw = dict(steps=args.steps, width=args.width, depth=args.depth,
            max_shift=args.max_shift, lr=args.lr, seed=args.seed)

  t0 = time.perf_counter()
  split, text = train(mesh, x, mask, **kw)
  t1 = time.perf_counter()
  whole, _ = train(None, x, mask, **kw)
  t2 = time.perf_counter()
  counts = {c: text.count(f" {c}(") + text.count(f" {c}-start(")
            for c in ("collective-permute", "all-gather", "all-reduce")}
  print(f"x {x.shape} split {dict(mesh.shape)} (one octant per device); "
        f"collectives in the training step: {counts}")
  for i in range(0, args.steps, max(1, args.steps // 6)):
    print(f"step {i:3d}  loss split {split[i]:.6f}  one device {whole[i]:.6f}")
  gap = max(abs(a - b) for a, b in zip(split, whole))
  print(f"{args.steps} steps: split {t1 - t0:.1f} s, one device "
        f"{t2 - t1:.1f} s; largest loss difference {gap:.2e}; final loss "
        f"{split[-1]:.4f} (from {split[0]:.4f})")
  return split, whole, counts


if __name__ == "__main__":
  if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    import jax
    jax.config.update("jax_num_cpu_devices", 8)
  main()
