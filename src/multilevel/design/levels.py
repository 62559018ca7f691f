"""Levels of a factor variable (Stata's ``i.x`` and ``ib#.x``)."""
from __future__ import annotations

import numpy as np

from ..spec.errors import DataError


def base_and_levels(values: np.ndarray, base: str | None, name: str) -> tuple[object, tuple]:
    """The base level (the lowest, or ``base``, the ``#`` of ``ib#.``) and the other levels of
    ``values``, sorted; the base must occur in the data (``name``: the term, for the message)."""
    present = np.unique(values)
    base_level = present[0] if base is None else type(present[0])(float(base.strip("() ")))
    if base_level not in present:
        raise DataError(f"base level {base_level} of '{name}' does not occur in the data")
    return base_level, tuple(lv for lv in present.tolist() if lv != base_level)
