"""matplotlib on demand: imported when a plot is drawn, never at ``import multilevel``."""
from __future__ import annotations


def axes(ax=None, figsize: tuple[float, float] | None = None):
    """``ax``, or the Axes of a new figure (of ``figsize`` inches)."""
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'multilevel[plot]'") from None
    return plt.subplots(figsize=figsize)[1]
