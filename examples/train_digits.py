"""Train a small ShiftResNet and its depthwise-conv twin on scikit-learn's digits.

The digits (1,797 8x8 grey images, shipped inside scikit-learn: no download)
train in a few minutes on a laptop CPU. For each model the script trains with
the same data order and optimiser, checkpoints it with orbax (and reloads the
checkpoint to check it), and prints one table: parameters, multiply-adds per
image, test accuracy, and for shift models the fraction of shifts that move
nothing. It also saves a PNG of how the learned shifts move during training.

  python examples/train_digits.py                       # ~1 min on 2 cores
  python examples/train_digits.py --epochs 2 --out /tmp/digits   # smoke run
"""

import argparse
import pathlib
import sys
import time

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # noqa: E402

import jaxshift  # noqa: E402
import jaxshift.nn as jsnn  # noqa: E402


def load(seed=0, test_fraction=0.2):
  """``(x_train, y_train, x_test, y_test)``, images ``[N, 8, 8, 1]`` in [0, 1]."""
  digits = load_digits()
  x = (digits.images / 16.0).astype(np.float32)[..., None]
  y = digits.target.astype(np.int32)
  order = np.random.default_rng(seed).permutation(len(x))
  n_test = int(len(x) * test_fraction)
  test, train = order[:n_test], order[n_test:]
  return x[train], y[train], x[test], y[test]


def optimizer(model, args, steps):
  lr = optax.cosine_decay_schedule(args.lr, steps)
  weights = optax.adamw(lr, weight_decay=1e-4)
  # Shifts: no weight decay; Adam already normalises the step per channel.
  shifts = optax.adam(optax.cosine_decay_schedule(args.shift_lr, steps))
  return common.make_optimizer(model, weights, shifts)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", nargs="+", default=["depthwise", "active", "sparse"],
                 choices=["depthwise", "active", "sparse", "integer"])
  p.add_argument("--epochs", type=int, default=10)
  p.add_argument("--batch-size", type=int, default=64)
  p.add_argument("--depth", type=int, default=8, help="6n + 2")
  p.add_argument("--width", type=int, default=16)
  p.add_argument("--expansion", type=float, default=3)
  p.add_argument("--lr", type=float, default=3e-3)
  p.add_argument("--shift-lr", type=float, default=3e-2)
  p.add_argument("--l1", type=float, default=1e-3,
                 help="L1 weight on the shifts of sparse models")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("digits_out"))
  args = p.parse_args(argv)
  args.out.mkdir(parents=True, exist_ok=True)
  # What the install built, and why (the README's first command ends here).
  print("jaxshift kernels: " + jaxshift.build_info().replace("\n", "; "))

  x_train, y_train, x_test, y_test = load(args.seed)
  steps = args.epochs * common.steps_per_epoch(len(x_train), args.batch_size)
  rows, results = [], {}
  for kind in args.models:
    model = common.build_model(kind, args.depth, expansion=args.expansion,
                               num_classes=10, in_features=1, width=args.width,
                               rngs=nnx.Rngs(args.seed))
    opt = optimizer(model, args, steps)
    history = [common.shift_snapshot(model)]
    t0 = time.perf_counter()
    common.fit(model, opt, x_train, y_train, epochs=args.epochs,
               batch_size=args.batch_size, seed=args.seed,
               l1=args.l1 if kind == "sparse" else 0.0, desc=kind,
               on_epoch=lambda e, m: history.append(common.shift_snapshot(m)))
    seconds = time.perf_counter() - t0
    acc = common.accuracy(model, x_test, y_test)

    ckpt = args.out / f"checkpoint_{kind}"
    common.save_checkpoint(ckpt, model)
    restored = common.restore_checkpoint(ckpt, model)
    if not common.same_state(restored, model):
      raise RuntimeError(f"checkpoint {ckpt} did not round-trip")

    zero = "-"
    if kind != "depthwise":
      zero = f"{common.zero_fraction(model):.0%}"
      common.plot_shift_trajectories(
          history, args.out / f"shifts_{kind}.png",
          f"ShiftResNet-{args.depth} ({kind}) on digits")
    rows.append([kind if kind == "depthwise" else f"shift ({kind})",
                 f"{jsnn.num_params(model):,}",
                 f"{jsnn.mult_adds(model, jnp.zeros((1, 8, 8, 1))):,}",
                 f"{acc:.1%}", zero, f"{seconds:.0f}"])
    results[kind] = acc

  table = common.markdown_table(
      ["model", "params", "mult-adds / image", "test accuracy", "zero shifts",
       "train s"], rows)
  print(f"\nResNet-{args.depth} (width {args.width}, expansion "
        f"{args.expansion:g}) on sklearn digits, {args.epochs} epochs, "
        f"{len(x_train)} train / {len(x_test)} test images:\n")
  print(table)
  (args.out / "results.md").write_text(table + "\n")
  print(f"\nplots and checkpoints in {args.out}/")
  return results


if __name__ == "__main__":
  main()
