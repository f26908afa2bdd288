"""Sparse training helpers over whole models: penalty, statistics, freezing."""

import dataclasses

import numpy as np
from flax import nnx

from jaxshift._src import sparsity
from jaxshift.nn import _layers


def _shift_layers(model: nnx.Module):
  """``(path string, Shift)`` for every `Shift` layer of `model`, in order."""
  if isinstance(model, _layers.Shift):
    return [("", model)]
  return [("/".join(str(p) for p in path), m)
          for path, m in nnx.iter_modules(model)
          if isinstance(m, _layers.Shift)]


def model_sparsity_loss(model: nnx.Module, weight: float = 1.0):
  """The L1 penalty on the shifts of every `Shift` layer of `model`.

  ``weight * sum_layers sum |shifts|``, with gradient ``weight * sign(s)``
  (zero at zero, so a shift that reached zero stays): `jaxshift.sparsity_loss`
  of the model's shifts. Add it to the task loss inside the function you
  differentiate.

  Args:
    model: any NNX module (or a `Shift` layer).
    weight: the penalty ``lambda`` (Chen et al. use about ``5e-4``).

  Returns:
    A float32 scalar (0 if `model` has no shift layer).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxshift.nn import Shift, model_sparsity_loss
    >>> layer = Shift(4, shift_init=lambda k, s, d: jnp.full(s, -0.5, d),
    ...               rngs=nnx.Rngs(0))
    >>> float(model_sparsity_loss(layer, weight=0.25))  # 0.25 * 8 * 0.5
    1.0
  """
  shifts = [layer.shifts[...] for _, layer in _shift_layers(model)]
  return sparsity.sparsity_loss(shifts, weight)


@dataclasses.dataclass(frozen=True)
class ShiftStatistics:
  """What one `Shift` layer's shifts look like.

  Attributes:
    mode: the layer's mode.
    num_channels: ``C``.
    zero_fraction: fraction of the ``C x D`` offsets that move nothing as the
      layer applies them (``round(s) == 0`` for sparse and integer layers,
      ``s == 0`` for active ones).
    moving_channels: channels with at least one non-zero applied offset.
    mean_abs: mean ``|s|`` of the raw shifts.
    histogram: counts of ``|s|`` per bin of `bin_edges`.
    bin_edges: the histogram's bin edges (``0, 0.5, 1, ...``).
  """

  mode: str
  num_channels: int
  zero_fraction: float
  moving_channels: int
  mean_abs: float
  histogram: np.ndarray
  bin_edges: np.ndarray


def _applied(layer) -> np.ndarray:
  s = np.asarray(layer.shifts[...], np.float64)
  return s if layer.mode == "active" else np.round(s)  # numpy: half to even


def shift_statistics(model: nnx.Module, *, bin_width: float = 0.5,
                     max_abs: float | None = None) -> dict[str, ShiftStatistics]:
  """Per-layer statistics of the shifts of every `Shift` layer in `model`.

  Args:
    model: any NNX module.
    bin_width: width of the ``|s|`` histogram bins.
    max_abs: upper end of the histogram (default: the largest ``|s|``,
      rounded up to a bin).

  Returns:
    ``{layer path: ShiftStatistics}`` in model order.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxshift.nn import Shift, shift_statistics
    >>> init = lambda k, s, d: jnp.array([[0., 0.2], [1.6, 0.], [0., 0.]], d)
    >>> stats = shift_statistics(Shift(3, mode="sparse", shift_init=init,
    ...                                rngs=nnx.Rngs(0)))
    >>> stats[""].zero_fraction, stats[""].moving_channels
    (0.8333333333333334, 1)
  """
  out = {}
  for path, layer in _shift_layers(model):
    raw = np.abs(np.asarray(layer.shifts[...], np.float64))
    applied = _applied(layer)
    top = max_abs if max_abs is not None else float(raw.max(initial=0.0))
    n_bins = max(1, int(np.ceil(top / bin_width)))
    counts, edges = np.histogram(raw, bins=n_bins,
                                 range=(0.0, n_bins * bin_width))
    out[path] = ShiftStatistics(
        mode=layer.mode, num_channels=layer.num_features,
        zero_fraction=float(np.mean(applied == 0)),
        moving_channels=int(np.sum(np.any(applied != 0, axis=1))),
        mean_abs=float(raw.mean()), histogram=counts, bin_edges=edges)
  return out


def freeze(model: nnx.Module):
  """Turns every `Shift` layer's shifts into constants: a portable model.

  Returns a copy of `model` in which every `Shift` layer holds its shifts as
  `FrozenShifts` (static constants, not parameters): ``mode="sparse"`` and
  ``"integer"`` layers ``round(shifts)`` (half to even), run in
  ``mode="integer"``; ``"active"`` layers their exact shifts, still active.
  The outputs are the same (to float rounding for active layers: the same
  bilinear weights in another order of operations), there is no shift
  gradient, and under `nnx.jit` or `jax.export` the shifts are plain XLA
  slices and pads (active: with constant per-channel weights, multiplies and
  adds) with no gather and no custom call, so a frozen network exports and
  runs where jaxshift is not installed, and a channel with a zero shift is a
  plain copy. `model` itself is not changed.

  Args:
    model: any NNX module.

  Returns:
    ``(frozen, moving)``: the frozen copy, and ``{layer path: (channels that
    move, channels)}`` for every layer. A channel whose (rounded, for the
    moves) shift is zero on every axis is a copy.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxshift.nn import Shift, freeze
    >>> init = lambda k, s, d: jnp.array([[0.4, 0.], [1.6, -0.7]], d)
    >>> frozen, moving = freeze(Shift(2, mode="sparse", shift_init=init,
    ...                               rngs=nnx.Rngs(0)))
    >>> frozen.mode, frozen.shifts[...].tolist(), moving
    ('integer', [[0.0, 0.0], [2.0, -1.0]], {'': (1, 2)})
    >>> frozen, moving = freeze(Shift(2, mode="active", shift_init=init,
    ...                               rngs=nnx.Rngs(0)))
    >>> frozen.mode, moving
    ('active', {'': (2, 2)})
  """
  frozen = nnx.clone(model)
  moving = {}
  for path, layer in _shift_layers(frozen):
    applied = _applied(layer)  # exact (active) or rounded, half to even
    dtype = np.float64 if layer.shifts[...].dtype == np.float64 else np.float32
    del layer.shifts  # a parameter before; a static constant now
    layer.shifts = _layers.FrozenShifts.of(applied, dtype)
    if layer.mode != "active":
      layer.mode = "integer"
    moving[path] = (int(np.sum(np.any(applied != 0, axis=1))),
                    layer.num_features)
  return frozen, moving
