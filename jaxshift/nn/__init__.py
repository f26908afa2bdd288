"""Flax NNX layers and models built on `jaxshift.shift` (needs ``flax``).

Install with ``pip install "jaxshift[nn]"``. A Linen `Shift` lives in
`jaxshift.nn.linen`.
"""

from jaxshift.nn._count import mult_adds as mult_adds
from jaxshift.nn._count import num_params as num_params
from jaxshift.nn._layers import DepthwiseConvBlock as DepthwiseConvBlock
from jaxshift.nn._layers import DepthwiseShift as DepthwiseShift
from jaxshift.nn._layers import Shift as Shift
from jaxshift.nn._layers import ShiftConv as ShiftConv
from jaxshift.nn._layers import ShiftParam as ShiftParam
from jaxshift.nn._models import DepthwiseResNet as DepthwiseResNet
from jaxshift.nn._models import ShiftResNet as ShiftResNet
from jaxshift.nn._optax import normalize_shift_gradients as normalize_shift_gradients
from jaxshift.nn._sparse import ShiftStatistics as ShiftStatistics
from jaxshift.nn._sparse import freeze as freeze
from jaxshift.nn._sparse import shift_statistics as shift_statistics
from jaxshift.nn._sparse import sparsity_loss as sparsity_loss

__all__ = (
    "DepthwiseConvBlock",
    "DepthwiseResNet",
    "DepthwiseShift",
    "Shift",
    "ShiftConv",
    "ShiftParam",
    "ShiftResNet",
    "ShiftStatistics",
    "freeze",
    "mult_adds",
    "normalize_shift_gradients",
    "num_params",
    "shift_statistics",
    "sparsity_loss",
)
