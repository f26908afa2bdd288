"""jaxshift: shift layers (grouped, active, sparse) for JAX.

Public API; implementation lives in ``jaxshift._src``, which is private.
"""

from jaxshift import initializers as initializers
from jaxshift._src.dispatch import shift as shift
from jaxshift._src.ffi import build_info as build_info
from jaxshift._src.ffi import kernels_available as kernels_available
from jaxshift._src.sparsity import sparsity_loss as sparsity_loss
from jaxshift._src.shapes import MAX_AXIS_LENGTH as MAX_AXIS_LENGTH
from jaxshift._src.shapes import MODES as MODES
from jaxshift._src.shapes import PADDINGS as PADDINGS
from jaxshift._src.tables import axial_shifts as axial_shifts
from jaxshift._src.tables import grouped_shifts as grouped_shifts
from jaxshift._src.tables import partial_shifts as partial_shifts
from jaxshift._src.temporal import temporal_shift as temporal_shift
from jaxshift._src.temporal import temporal_shift_step as temporal_shift_step

# The one version string (pyproject.toml reads it).
__version__ = "0.1.0"

__all__ = (
    "MAX_AXIS_LENGTH",
    "MODES",
    "PADDINGS",
    "axial_shifts",
    "build_info",
    "grouped_shifts",
    "initializers",
    "kernels_available",
    "partial_shifts",
    "shift",
    "sparsity_loss",
    "temporal_shift",
    "temporal_shift_step",
)

# Do not import from jaxshift._src: it is private and may change.

# Register the built kernels now, so an exported graph holding jaxshift's
# custom calls runs after a bare `import jaxshift`.
from jaxshift._src import ffi as _ffi  # noqa: E402

_ffi.register_kernels()
del _ffi
