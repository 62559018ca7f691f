"""Model specifications from Stata or lme4 syntax (pure data, no numerics)."""
from __future__ import annotations

from .errors import DataError, SpecError
from .model import ModelSpec, ReLevel


def parse(text: str, command: str | None = None) -> ModelSpec:
    """Parse a Stata command or an lme4 formula (chosen by whether ``~`` appears)."""
    if "~" in text:
        from . import lme4

        return lme4.parse(text, command=command or "mixed")
    from . import stata

    return stata.parse(text, command=command)


__all__ = ["ModelSpec", "ReLevel", "SpecError", "DataError", "parse"]
