"""multilevel: multilevel mixed-effects models with Stata's syntax and output.

>>> import multilevel as ml
>>> res = ml.mixed("weight week || id:", data=pig)          # doctest: +SKIP
>>> res = ml.mixed("weight ~ week + (1 | id)", data=pig)    # doctest: +SKIP
>>> print(res)                                               # doctest: +SKIP

The public functions are imported on first use, so ``import multilevel``
stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

from .spec import DataError, SpecError

_LAZY = {
    "fit": "api", "mixed": "api", "menl": "api",
    "meglm": "glmm.api", "melogit": "glmm.api", "meprobit": "glmm.api", "mecloglog": "glmm.api",
    "mepoisson": "glmm.api", "menbreg": "glmm.api", "meologit": "glmm.api", "meoprobit": "glmm.api",
    "glmer": "glmm.api", "mestreg": "survival.api",
    "lrtest": "postestimation",
}

__all__ = sorted(_LAZY) + ["SpecError", "DataError"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'multilevel' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
