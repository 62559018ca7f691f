"""Postestimation after a fit: ``predict``, ``estat``, ``lrtest``, ``test``, ``lincom``.

Everything reads the frozen results (and the design they carry); nothing
refits.  The results' methods (``res.predict``, ``res.estat``, ...) are thin
wrappers over these functions.  See ``docs/postestimation.md``.
"""
from __future__ import annotations

from .estat import estat
from .predict import predict, random_effects_table
from .tests import lincom, lrtest, test

__all__ = ["predict", "random_effects_table", "estat", "lrtest", "test", "lincom"]
