"""Exceptions raised for bad model specifications and bad data."""
from __future__ import annotations


class SpecError(ValueError):
    """The command or formula text cannot be understood.

    The message names the problem, quotes the text and, where known, the
    0-based character position of the error.
    """

    def __init__(self, message: str, text: str | None = None, pos: int | None = None):
        if text is not None and pos is not None:
            message = f"{message}\n  {text}\n  {' ' * pos}^ (position {pos})"
        elif text is not None:
            message = f"{message}: {text!r}"
        super().__init__(message)
        self.text = text
        self.pos = pos


class DataError(ValueError):
    """The data cannot be used for the model (unknown variable, bad type, ...)."""
