"""A small TSM network on synthetic videos, offline and online (frame by frame).

Each clip shows one of scikit-learn's digits (8x8, shipped with the library:
no download) moving one pixel a frame across a 16x16 canvas, to the left,
right, up or down; the direction is the label. Every single frame is just a
digit somewhere, and the positions a clip visits are alike in every
direction, so a network that sees frames one at a time and averages over time
is near chance; a temporal shift lets each frame's features see the previous
frame's, and the same network solves it.

The network: a 3x3 convolution, residual blocks with `jaxshift.nn.TemporalShift`
(online TSM: ``direction="right"``, channels ``[0, C/8)`` read frame ``t - 1``)
at the start of the residual branch, then averages over space and time. It
is trained with and without the shift (same data order, same optimiser), then
the TSM network is run online, one frame at a time with
`jaxshift.temporal_shift_step` caches, and must give the offline logits.

  python examples/video_tsm.py                  # about a minute on 2 cores
  python examples/video_tsm.py --epochs 1 --clips 256   # smoke run
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
from sklearn.datasets import load_digits

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # noqa: E402

import jaxshift.nn as jsnn  # noqa: E402

DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (dy, dx): right, left, down, up
CANVAS, FRAMES = 16, 8


def make_clips(n, seed=0):
  """``(clips [n, T, 16, 16, 1], labels [n])``: a digit moving one pixel a
  frame in direction ``DIRECTIONS[label]``, from a start that keeps it on the
  canvas."""
  rng = np.random.default_rng(seed)
  digits = load_digits().images / 16.0
  clips = np.zeros((n, FRAMES, CANVAS, CANVAS, 1), np.float32)
  labels = rng.integers(0, len(DIRECTIONS), n)
  room = CANVAS - 8 - (FRAMES - 1)  # start positions along the motion
  for i, label in enumerate(labels):
    dy, dx = DIRECTIONS[label]
    image = digits[rng.integers(len(digits))]
    # Along the motion: the start that keeps all frames on the canvas;
    # across it: anywhere.
    start = [rng.integers(0, CANVAS - 8 + 1) for _ in range(2)]
    for axis, d in enumerate((dy, dx)):
      if d:
        start[axis] = rng.integers(0, room + 1) + (FRAMES - 1 if d < 0 else 0)
    for t in range(FRAMES):
      y, x = start[0] + dy * t, start[1] + dx * t
      clips[i, t, y:y + 8, x:x + 8, 0] = image
  return clips, labels.astype(np.int32)


class Block(nnx.Module):
  """x + conv(relu(conv(shift(x)))): the temporal shift opens the branch."""

  def __init__(self, width, *, shift: bool, rngs):
    self.tsm = jsnn.TemporalShift(num_segments=FRAMES, direction="right") \
        if shift else None
    self.conv1 = nnx.Conv(width, width, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(width, width, (3, 3), rngs=rngs)

  def branch(self, h):
    return self.conv2(jax.nn.relu(self.conv1(h)))

  def __call__(self, x):  # x: (N*T, H, W, C)
    h = self.tsm(x) if self.tsm is not None else x
    return jax.nn.relu(x + self.branch(h))

  def step(self, x_t, cache):  # one frame: (N, H, W, C)
    h, cache = self.tsm.step(x_t, cache)
    return jax.nn.relu(x_t + self.branch(h)), cache


class VideoNet(nnx.Module):
  def __init__(self, *, width=16, blocks=3, shift=True, rngs):
    self.stem = nnx.Conv(1, width, (3, 3), rngs=rngs)
    self.blocks = nnx.List([Block(width, shift=shift, rngs=rngs)
                            for _ in range(blocks)])
    self.head = nnx.Linear(width, len(DIRECTIONS), rngs=rngs)

  def features(self, h):  # per-frame features, pooled over space
    return jnp.mean(h, axis=(1, 2))

  def __call__(self, clips):  # (N, T, H, W, 1) -> logits (N, classes)
    n = clips.shape[0]
    h = jax.nn.relu(self.stem(clips.reshape((n * FRAMES,) + clips.shape[2:])))
    for block in self.blocks:
      h = block(h)
    return self.head(self.features(h).reshape(n, FRAMES, -1).mean(1))

  def step(self, frame, caches):
    """One frame ``(N, H, W, 1)``: its pooled features and the new caches."""
    h = jax.nn.relu(self.stem(frame))
    new = []
    for block, cache in zip(self.blocks, caches):
      h, cache = block.step(h, cache)
      new.append(cache)
    return self.features(h), new


def online_logits(model, clips):
  """The TSM network run frame by frame (streaming), averaged at the end."""
  step = nnx.jit(lambda m, f, c: m.step(f, c))
  caches = [jnp.zeros(clips.shape[:1] + clips.shape[2:4] + (
      model.stem.out_features // 8,), clips.dtype)] * len(model.blocks)
  total = 0.0
  for t in range(FRAMES):
    features, caches = step(model, clips[:, t], caches)
    total = total + features
  return model.head(total / FRAMES)


def train(model, x, y, *, epochs, batch_size, lr, seed):
  steps = epochs * (len(x) // batch_size)
  opt = nnx.Optimizer(model, optax.adam(optax.cosine_decay_schedule(lr, steps)),
                      wrt=nnx.Param)

  @nnx.jit
  def train_step(model, opt, xb, yb):
    def loss_fn(model):
      return optax.softmax_cross_entropy_with_integer_labels(
          model(xb), yb).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    opt.update(model, grads)
    return loss

  rng = np.random.default_rng(seed)
  for _ in range(epochs):
    order = rng.permutation(len(x))
    for i in range(len(x) // batch_size):
      idx = order[i * batch_size:(i + 1) * batch_size]
      train_step(model, opt, jnp.asarray(x[idx]), jnp.asarray(y[idx]))


def accuracy(model, x, y):
  logits = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x))
  return float(np.mean(np.argmax(np.asarray(logits), -1) == y))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--clips", type=int, default=1024)
  p.add_argument("--epochs", type=int, default=4)
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--width", type=int, default=16)
  p.add_argument("--lr", type=float, default=3e-3)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  x, y = make_clips(args.clips, args.seed)
  n_test = len(x) // 5
  x_test, y_test, x_train, y_train = x[:n_test], y[:n_test], x[n_test:], y[n_test:]
  rows, acc = [], {}
  for name, shift in (("TSM (online, right)", True), ("no shift", False)):
    model = VideoNet(width=args.width, shift=shift,
                     rngs=nnx.Rngs(args.seed))
    t0 = time.perf_counter()
    train(model, x_train, y_train, epochs=args.epochs,
          batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    seconds = time.perf_counter() - t0
    acc[name] = accuracy(model, x_test, y_test)
    rows.append([name, f"{acc[name]:.1%}", f"{seconds:.0f}"])
    if shift:
      tsm_model = model
  # Online: frame by frame with caches, the offline logits.
  offline = nnx.jit(lambda m, x: m(x))(tsm_model, jnp.asarray(x_test[:64]))
  online = online_logits(tsm_model, jnp.asarray(x_test[:64]))
  gap = float(jnp.max(jnp.abs(online - offline)))
  print(f"\nMoving digits ({FRAMES} frames of {CANVAS}x{CANVAS}, 4 directions, "
        f"{len(x_train)} train / {len(x_test)} test clips, {args.epochs} "
        "epochs; chance is 25%):\n")
  print(common.markdown_table(["model", "test accuracy", "train s"], rows))
  print(f"\nonline (frame by frame) vs offline logits: largest difference "
        f"{gap:.2e}")
  if gap > 1e-4:
    raise SystemExit(f"online TSM differs from offline by {gap}")
  return acc, gap


if __name__ == "__main__":
  main()
