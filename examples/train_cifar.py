"""Train ShiftResNet and its depthwise twin on CIFAR-10 with the papers' recipe.

Reads the standard python-pickle batches (``data_batch_1`` ... ``data_batch_5``,
``test_batch``; from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)
from ``--data-dir`` (the ``cifar-10-batches-py`` folder or its parent).
Recipe of Wu et al. / Jeon & Kim: SGD with Nesterov momentum 0.9, lr 0.1,
weight decay 5e-4 (not on shifts), batch 128, lr x0.1 at 50 % and 75 % of
training, random 4-pixel-padded crops and horizontal flips. Prints a table
next to the published CIFAR-10 numbers. Use a GPU: on a CPU an epoch of
ShiftResNet-20 takes minutes.

  python examples/train_cifar.py --data-dir ~/data/cifar-10-batches-py
  python examples/train_cifar.py --data-dir D --depth 20 --expansion 3 \\
      --models integer depthwise --epochs 160
"""

import argparse
import pathlib
import pickle
import sys
import time

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # noqa: E402

import jaxshift.nn as jsnn  # noqa: E402

MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], np.float32)

# CIFAR-10 test accuracy reported by the papers (../shared/notes/prior-art.md).
PUBLISHED = [
    ("Wu et al. 2017: ShiftResNet-20, expansion 3c", "95,642", "89.56%"),
    ("Wu et al. 2017: ResNet-20", "272,474", "91.35%"),
    ("Jeon & Kim 2018: ASNet (0.1 M params)", "~100,000", "91.62%"),
    ("Jeon & Kim 2018: ShiftNet (0.1 M params)", "~100,000", "90.08%"),
]


def _batch_dir(data_dir: pathlib.Path) -> pathlib.Path:
  for d in (data_dir, data_dir / "cifar-10-batches-py"):
    if (d / "data_batch_1").is_file() and (d / "test_batch").is_file():
      return d
  raise FileNotFoundError(
      f"No CIFAR-10 python batches in {str(data_dir)!r}: expected "
      "data_batch_1 ... data_batch_5 and test_batch there or in its "
      "cifar-10-batches-py/ folder. Download and unpack "
      "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and pass that "
      "folder as --data-dir.")


def _read(path: pathlib.Path):
  with open(path, "rb") as f:
    batch = pickle.load(f, encoding="bytes")
  data = np.asarray(batch[b"data"], np.uint8)
  labels = np.asarray(batch[b"labels"], np.int32)
  if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
    raise ValueError(f"{path}: expected data [N, 3072] and N labels; got "
                     f"{data.shape} and {labels.shape}.")
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # NCHW -> NHWC
  return images, labels


def load_cifar10(data_dir):
  """``(x_train, y_train, x_test, y_test)``: NHWC uint8 images, int32 labels.

  Reads whichever of ``data_batch_1`` ... ``data_batch_5`` exist (at least
  the first) and ``test_batch``.
  """
  d = _batch_dir(pathlib.Path(data_dir).expanduser())
  train = [_read(d / f"data_batch_{i}") for i in range(1, 6)
           if (d / f"data_batch_{i}").is_file()]
  x_test, y_test = _read(d / "test_batch")
  return (np.concatenate([x for x, _ in train]),
          np.concatenate([y for _, y in train]), x_test, y_test)


def normalize(images: np.ndarray) -> np.ndarray:
  return ((images.astype(np.float32) / 255.0) - MEAN) / STD


def augment(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
  """Random 32x32 crops of the 4-pixel zero-padded images, random h-flips."""
  n, h, w, _ = x.shape
  padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
  dy, dx = rng.integers(0, 9, n), rng.integers(0, 9, n)
  rows = dy[:, None] + np.arange(h)[None]
  cols = dx[:, None] + np.arange(w)[None]
  out = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
  flip = rng.random(n) < 0.5
  out[flip] = out[flip, :, ::-1]
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data-dir", type=pathlib.Path, required=True)
  p.add_argument("--models", nargs="+", default=["integer", "depthwise"],
                 choices=["depthwise", "active", "sparse", "integer"])
  p.add_argument("--depth", type=int, default=20)
  p.add_argument("--expansion", type=float, default=3)
  p.add_argument("--epochs", type=int, default=160)
  p.add_argument("--batch-size", type=int, default=128)
  p.add_argument("--lr", type=float, default=0.1)
  p.add_argument("--shift-lr-scale", type=float, default=0.01,
                 help="shift lr relative to --lr (Jeon & Kim: 0.01)")
  p.add_argument("--l1", type=float, default=5e-4)
  p.add_argument("--limit", type=int, default=None,
                 help="use only this many training and test images")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("cifar_out"))
  args = p.parse_args(argv)
  args.out.mkdir(parents=True, exist_ok=True)

  x_train, y_train, x_test, y_test = load_cifar10(args.data_dir)
  if args.limit:
    x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    x_test, y_test = x_test[:args.limit], y_test[:args.limit]
  x_train, x_test = normalize(x_train), normalize(x_test)
  steps = args.epochs * common.steps_per_epoch(len(x_train), args.batch_size)
  boundaries = {int(steps * f): 0.1 for f in (0.5, 0.75)}

  rows = []
  for kind in args.models:
    model = common.build_model(kind, args.depth, expansion=args.expansion,
                               rngs=nnx.Rngs(args.seed))
    lr = optax.piecewise_constant_schedule(args.lr, boundaries)
    weights = optax.chain(optax.add_decayed_weights(5e-4),
                          optax.sgd(lr, momentum=0.9, nesterov=True))
    shifts = optax.chain(jsnn.normalize_shift_gradients(),
                         optax.sgd(lambda step: lr(step) * args.shift_lr_scale,
                                   momentum=0.9, nesterov=True))
    opt = common.make_optimizer(model, weights, shifts)
    t0 = time.perf_counter()
    common.fit(model, opt, x_train, y_train, epochs=args.epochs,
               batch_size=args.batch_size, seed=args.seed, augment=augment,
               l1=args.l1 if kind == "sparse" else 0.0, desc=kind)
    seconds = time.perf_counter() - t0
    acc = common.accuracy(model, x_test, y_test)
    common.save_checkpoint(args.out / f"checkpoint_{kind}", model)
    name = ("DepthwiseResNet" if kind == "depthwise" else
            f"ShiftResNet ({kind})")
    rows.append([f"jaxshift: {name}-{args.depth}, expansion {args.expansion:g}",
                 f"{jsnn.num_params(model):,}", f"{acc:.2%}",
                 f"{jsnn.mult_adds(model, jnp.zeros((1, 32, 32, 3))):,}",
                 f"{seconds:.0f}"])

  table = common.markdown_table(
      ["model", "params", "CIFAR-10 test accuracy", "mult-adds / image",
       "train s"],
      rows + [[name, params, acc, "-", "-"] for name, params, acc in PUBLISHED])
  print(f"\nCIFAR-10, {args.epochs} epochs, {len(x_train)} training images "
        "(published rows: the papers' own numbers):\n")
  print(table)
  (args.out / "results.md").write_text(table + "\n")


if __name__ == "__main__":
  main()
