"""Data- and channel-parallel training of a ShiftResNet on a device mesh.

A ``data x model`` mesh: the batch is split over ``data`` (data parallel),
and every layer's channels over ``model`` (channel parallel: shifts
``P("model", None)``, conv kernels split along their output channels,
BatchNorm along its features). ``jax.jit`` partitions the step; the shift
layers, fed activations sharded ``P("data", None, None, "model")``, run on
each device's own shard with no gather (only the all-reduce that sums the
shift gradient over ``data``).

One machine, 8 simulated CPU devices (or 8 GPUs):

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
      python examples/train_sharded.py --data 4 --model 2

Several hosts: run the same command on every host with ``--distributed``
(``jax.distributed.initialize()`` reads the cluster from SLURM, Open MPI or
the ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``
environment variables); ``--data x --model`` must equal the global device
count, and each host feeds its own slice of the batch.
"""

import argparse
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # noqa: E402
import train_digits  # noqa: E402

import jaxshift.nn as jsnn  # noqa: E402


def param_spec(param: nnx.Variable, model_size: int) -> P:
  """Channel-parallel layout of one parameter (replicated if it won't split)."""
  shape = param.shape
  if isinstance(param, jsnn.ShiftParam):
    spec = P("model", None)  # (C, D): each device shifts its own channels
  elif len(shape) == 4:
    spec = P(None, None, None, "model")  # conv (kh, kw, in, out)
  elif len(shape) == 1:
    spec = P("model")  # BatchNorm scale/bias, conv bias
  elif len(shape) == 2:
    spec = P("model", None)  # the classifier head, along its input features
  else:
    spec = P()
  axis = next((i for i, s in enumerate(spec) if s == "model"), None)
  return P() if axis is not None and shape[axis] % model_size else spec


def shard_model(model: nnx.Module, mesh) -> None:
  """Places every parameter and BatchNorm statistic on `mesh`, in place."""
  state = nnx.state(model)
  specs = jax.tree.map(lambda v: param_spec(v, mesh.shape["model"]), state,
                       is_leaf=lambda v: isinstance(v, nnx.Variable))
  shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                           is_leaf=lambda s: isinstance(s, P))
  nnx.update(model, jax.device_put(state, shardings))


def global_batch(mesh, x: np.ndarray, spec: P) -> jax.Array:
  """This process's rows of a global batch, assembled into one sharded array."""
  sharding = NamedSharding(mesh, spec)
  per_process = len(x) // jax.process_count()
  local = x[jax.process_index() * per_process:][:per_process]
  return jax.make_array_from_process_local_data(sharding, local, x.shape)


def collectives(compiled_text: str) -> dict[str, int]:
  return {c: compiled_text.count(f" {c}(") for c in
          ("all-gather", "all-reduce", "all-to-all", "collective-permute")}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data", type=int, default=4, help="devices along the batch")
  p.add_argument("--model", type=int, default=2, help="devices along channels")
  p.add_argument("--steps", type=int, default=100)
  p.add_argument("--batch-size", type=int, default=64, help="global batch")
  p.add_argument("--mode", default="sparse",
                 choices=["active", "sparse", "integer"])
  p.add_argument("--depth", type=int, default=8)
  p.add_argument("--width", type=int, default=16, help="channels of stage 1")
  p.add_argument("--l1", type=float, default=1e-3)
  p.add_argument("--distributed", action="store_true",
                 help="call jax.distributed.initialize() first (multi-host)")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  if args.distributed:
    jax.distributed.initialize()
  n_dev = args.data * args.model
  if n_dev > jax.device_count():
    raise SystemExit(
        f"--data {args.data} x --model {args.model} needs {n_dev} devices; "
        f"there are {jax.device_count()}. On one CPU machine set "
        "XLA_FLAGS=--xla_force_host_platform_device_count=8 before starting.")
  if args.batch_size % (args.data * jax.process_count()):
    raise SystemExit("--batch-size must divide evenly over --data and hosts.")

  mesh = jax.make_mesh((args.data, args.model), ("data", "model"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2,
                       devices=jax.devices()[:n_dev])
  x_train, y_train, x_test, y_test = train_digits.load(args.seed)
  model = jsnn.ShiftResNet(args.depth, expansion=4, mode=args.mode,
                           in_features=1, width=args.width,
                           rngs=nnx.Rngs(args.seed))
  shard_model(model, mesh)
  lr = optax.cosine_decay_schedule(3e-3, args.steps)
  opt = common.make_optimizer(model, optax.adamw(lr, weight_decay=1e-4),
                              optax.adam(lambda step: 10 * lr(step)))
  rng = np.random.default_rng(args.seed)
  l1 = jnp.float32(args.l1 if args.mode == "sparse" else 0.0)

  idx = rng.permutation(len(x_train))[:args.batch_size]
  xb = global_batch(mesh, x_train[idx], P("data"))
  yb = global_batch(mesh, y_train[idx], P("data"))
  # Compiled once, ahead of time: the same executable reports its
  # collectives and runs every step.
  step_fn = common.train_step.lower(model, opt, xb, yb, l1).compile()
  text = step_fn.as_text()
  shifts = model.blocks[0].shift.shifts[...]
  print(f"mesh {dict(mesh.shape)} on {jax.device_count()} "
        f"{jax.devices()[0].platform} device(s), {jax.process_count()} "
        f"process(es); shifts of block 0 sharded {shifts.sharding.spec}; "
        f"collectives per step: {collectives(text)}")

  losses = []
  t0 = time.perf_counter()
  for step in range(args.steps):
    idx = rng.permutation(len(x_train))[:args.batch_size]
    loss = step_fn(model, opt, global_batch(mesh, x_train[idx], P("data")),
                   global_batch(mesh, y_train[idx], P("data")), l1)
    losses.append(float(loss))
    if step % 20 == 0 or step == args.steps - 1:
      print(f"step {step:4d}  loss {losses[-1]:.4f}")
  seconds = time.perf_counter() - t0
  n_test = len(x_test) // args.data * args.data
  acc = common.accuracy(model, global_batch(mesh, x_test[:n_test], P("data")),
                        jnp.asarray(y_test[:n_test]), batch_size=n_test)
  print(f"{args.steps} steps in {seconds:.1f} s; test accuracy {acc:.1%}; "
        f"zero shifts {common.zero_fraction(model):.0%}")
  return losses


if __name__ == "__main__":
  main()
