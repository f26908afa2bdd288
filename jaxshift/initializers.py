"""Shift initialisers with the ``(key, shape, dtype)`` signature."""

from jaxshift._src.init import grouped as grouped
from jaxshift._src.init import sign_split as sign_split
from jaxshift._src.init import uniform as uniform
from jaxshift._src.init import zeros as zeros

__all__ = ("grouped", "sign_split", "uniform", "zeros")
