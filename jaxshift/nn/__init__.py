"""Flax NNX layers and models built on `jaxshift.shift` (needs ``flax``).

Install with ``pip install "jaxshift[nn]"``. A Linen `Shift` lives in
`jaxshift.nn.linen`.
"""

from jaxshift.nn._count import mult_adds as mult_adds
from jaxshift.nn._count import num_params as num_params
from jaxshift.nn._layers import DepthwiseConvBlock as DepthwiseConvBlock
from jaxshift.nn._layers import DepthwiseShift as DepthwiseShift
from jaxshift.nn._layers import FrozenShifts as FrozenShifts
from jaxshift.nn._layers import Shift as Shift
from jaxshift.nn._layers import ShiftConv as ShiftConv
from jaxshift.nn._layers import ShiftParam as ShiftParam
from jaxshift.nn._layers import TemporalShift as TemporalShift
from jaxshift.nn._models import DepthwiseResNet as DepthwiseResNet
from jaxshift.nn._models import ShiftResNet as ShiftResNet
from jaxshift.nn._optax import normalize_shift_gradients as normalize_shift_gradients
from jaxshift.nn._sparse import ShiftStatistics as ShiftStatistics
from jaxshift.nn._sparse import freeze as freeze
from jaxshift.nn._sparse import model_sparsity_loss as model_sparsity_loss
from jaxshift.nn._sparse import shift_statistics as shift_statistics

__all__ = (
    "DepthwiseConvBlock",
    "DepthwiseResNet",
    "DepthwiseShift",
    "FrozenShifts",
    "Shift",
    "ShiftConv",
    "ShiftParam",
    "ShiftResNet",
    "ShiftStatistics",
    "TemporalShift",
    "freeze",
    "model_sparsity_loss",
    "mult_adds",
    "normalize_shift_gradients",
    "num_params",
    "shift_statistics",
)

# Old names that still work, with a warning that names the replacement.
_DEPRECATED = {
    # `jaxshift.sparsity_loss` takes a pytree of shifts; this one took a model.
    "sparsity_loss": ("jaxshift.nn.model_sparsity_loss", model_sparsity_loss),
}


def __getattr__(name):
  if name in _DEPRECATED:
    import warnings  # pylint: disable=import-outside-toplevel
    new_name, value = _DEPRECATED[name]
    warnings.warn(
        f"jaxshift.nn.{name} is deprecated: use {new_name}(model, weight) (it "
        f"is the same function; jaxshift.{name} is the penalty of a pytree of "
        "shifts).", DeprecationWarning, stacklevel=2)
    return value
  raise AttributeError(f"module 'jaxshift.nn' has no attribute {name!r}")
