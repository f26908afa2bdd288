"""Training pieces the examples share: optimiser, steps, loop, checkpoint, report.

Not part of the library: a plain, readable training loop for the examples
(`train_digits.py`, `train_cifar.py`, `train_sharded.py`) to import.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm.auto import tqdm

import jaxshift.nn as jsnn


def make_optimizer(model: nnx.Module, weights: optax.GradientTransformation,
                   shifts: optax.GradientTransformation) -> nnx.Optimizer:
  """One optimiser, with its own transformation for the shift parameters.

  The papers train shifts apart from weights: no weight decay (it would pull
  every shift to zero) and, in Jeon & Kim, normalised gradients and a
  smaller learning rate.
  """
  labels = jax.tree.map(
      lambda v: "shifts" if isinstance(v, jsnn.ShiftParam) else "weights",
      nnx.state(model, nnx.Param), is_leaf=lambda v: isinstance(v, nnx.Variable))
  used = set(jax.tree.leaves(labels))
  tx = optax.partition({k: v for k, v in (("weights", weights),
                                          ("shifts", shifts)) if k in used},
                       labels)
  return nnx.Optimizer(model, tx, wrt=nnx.Param)


def _loss(model, x, y, l1):
  logits = model(x)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return ce + jsnn.model_sparsity_loss(model, l1), logits


@nnx.jit
def train_step(model, optimizer, x, y, l1):
  """One SGD step on ``(x, y)`` with the L1 shift penalty ``l1``."""
  (loss, _), grads = nnx.value_and_grad(_loss, has_aux=True)(model, x, y, l1)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def predict(model, x):
  return jnp.argmax(model(x), axis=-1)


def accuracy(model, x, y, batch_size=500) -> float:
  """Top-1 accuracy in eval mode (BatchNorm running statistics)."""
  model.eval()
  hits = sum(int(jnp.sum(predict(model, x[i:i + batch_size]) ==
                         y[i:i + batch_size]))
             for i in range(0, len(x), batch_size))
  model.train()
  return hits / len(x)


def batches(rng, n, batch_size):
  """Shuffled full batches of indices into ``range(n)``.

  The ``n % batch_size`` left over are dropped (different ones each epoch):
  every step then has the same shape, and the step compiles once.
  """
  order = rng.permutation(n)
  return [order[i:i + batch_size]
          for i in range(0, n - batch_size + 1, batch_size)]


def steps_per_epoch(n, batch_size):
  """Steps in one epoch of `batches` (at least one batch must fit)."""
  if n < batch_size:
    raise ValueError(f"batch_size={batch_size} is larger than the {n} "
                     "training examples; pass a smaller --batch-size.")
  return n // batch_size


def fit(model, optimizer, x, y, *, epochs, batch_size, l1=0.0, seed=0,
        augment=None, on_epoch=None, desc="train"):
  """Trains for `epochs` with a tqdm bar; `on_epoch(epoch, model)` after each."""
  rng = np.random.default_rng(seed)
  model.train()
  steps = epochs * steps_per_epoch(len(x), batch_size)
  with tqdm(total=steps, desc=desc, leave=False, mininterval=1.0) as bar:
    for epoch in range(epochs):
      for idx in batches(rng, len(x), batch_size):
        xb = x[idx] if augment is None else augment(rng, x[idx])
        loss = train_step(model, optimizer, jnp.asarray(xb), jnp.asarray(y[idx]),
                          jnp.float32(l1))
        bar.update()
      bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss):.3f}")
      if on_epoch is not None:
        on_epoch(epoch, model)


def save_checkpoint(path: pathlib.Path, model: nnx.Module) -> None:
  """Saves `model`'s state (parameters, BatchNorm statistics) with orbax."""
  path = pathlib.Path(path).absolute()
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(path, nnx.state(model), force=True)


def restore_checkpoint(path: pathlib.Path, model: nnx.Module) -> nnx.Module:
  """Loads a `save_checkpoint` state into (a copy of) `model`'s structure."""
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: nnx.clone(model)))
  with ocp.StandardCheckpointer() as ckpt:
    state = ckpt.restore(pathlib.Path(path).absolute(), abstract)
  return nnx.merge(graphdef, state)


def same_state(a: nnx.Module, b: nnx.Module) -> bool:
  """Whether two models hold bitwise-equal parameters and statistics."""
  sa, sb = nnx.state(a), nnx.state(b)
  if jax.tree.structure(sa) != jax.tree.structure(sb):
    return False
  return all(np.array_equal(np.asarray(u), np.asarray(v))
             for u, v in zip(jax.tree.leaves(sa), jax.tree.leaves(sb)))


def build_model(kind: str, depth: int, **kwargs) -> nnx.Module:
  """``DepthwiseResNet`` for ``kind="depthwise"``, else a ``ShiftResNet`` in mode `kind`."""
  if kind == "depthwise":
    return jsnn.DepthwiseResNet(depth, **kwargs)
  return jsnn.ShiftResNet(depth, mode=kind, **kwargs)


def zero_fraction(model: nnx.Module) -> float:
  """Mean over shift layers of the fraction of offsets that move nothing."""
  return float(np.mean([s.zero_fraction
                        for s in jsnn.shift_statistics(model).values()]))


def shift_snapshot(model) -> dict[str, np.ndarray]:
  """``{layer path: [C, D] shifts}`` of every shift layer, as numpy."""
  return {"/".join(str(p) for p in path): np.asarray(layer.shifts[...])
          for path, layer in nnx.iter_modules(model)
          if isinstance(layer, jsnn.Shift)}


def plot_shift_trajectories(history: list[dict[str, np.ndarray]], path,
                            title: str) -> None:
  """One scatter per layer of every channel's (dx, dy) shift, per epoch."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  layers = list(history[0])
  cols = min(4, len(layers))
  rows = -(-len(layers) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows),
                           squeeze=False)
  colors = plt.cm.viridis(np.linspace(0, 1, len(history)))
  for ax, name in zip(axes.flat, layers):
    for epoch, snap in enumerate(history):
      s = snap[name]
      ax.scatter(s[:, 1], s[:, 0], s=4 if epoch < len(history) - 1 else 10,
                 color=colors[epoch], alpha=0.6)
    ax.set_title(name.replace("blocks/", "block ").replace("/spatial", ""),
                 fontsize=8)
    ax.axhline(0, lw=0.5, color="gray")
    ax.axvline(0, lw=0.5, color="gray")
    ax.set_aspect("equal")
    ax.invert_yaxis()  # image rows grow downward
  for ax in axes.flat[len(layers):]:
    ax.axis("off")
  fig.suptitle(f"{title}: shifts (x right, y down) from epoch 0 (purple) to "
               f"{len(history) - 1} (yellow)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def markdown_table(headers, rows) -> str:
  """A GitHub-markdown table of `rows` (sequences of cells)."""
  rows = [[str(c) for c in r] for r in rows]
  widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
  line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
  return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                   + [line(r) for r in rows])
