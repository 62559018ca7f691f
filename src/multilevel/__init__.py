"""multilevel: multilevel mixed-effects models with Stata's syntax and output.

>>> import multilevel as ml
>>> res = ml.mixed("weight week || id:", data=pig)          # doctest: +SKIP
>>> res = ml.mixed("weight ~ week + (1 | id)", data=pig)    # doctest: +SKIP
>>> print(res)                                               # doctest: +SKIP
"""
from __future__ import annotations

from .api import fit, mixed
from .spec import DataError, SpecError

__all__ = ["fit", "mixed", "SpecError", "DataError"]
__version__ = "0.1.0"
