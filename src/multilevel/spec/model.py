"""The model specification: pure data, the same object from Stata or lme4 syntax.

A :class:`ModelSpec` says *what* model to fit, never how.  Both parsers
(:mod:`multilevel.spec.stata`, :mod:`multilevel.spec.lme4`) return one, and
:meth:`ModelSpec.to_stata` gives the canonical Stata command back.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

COVARIANCES = ("independent", "exchangeable", "identity", "unstructured")


@dataclass(frozen=True)
class ReLevel:
    """One random-effects equation (``|| group: terms, options``).

    Attributes
    ----------
    group:
        Grouping variables from the top of the hierarchy down to this level
        (``("block", "variety")`` for ``|| block: || variety:``); empty for
        Stata's ``_all`` (one group spanning the whole sample).
    terms:
        Random-slope variables in Stata order (slopes first; the constant is
        implied by ``constant``).  In an ``_all`` equation a term may be
        ``R.var``: an identity-covariance intercept for each level of ``var``.
    constant:
        Whether the equation has a random intercept (``_cons``).
    covariance:
        One of :data:`COVARIANCES`.
    label:
        Name shown in output (``variety``, ``_all``, ``a:b``).
    """

    group: tuple[str, ...]
    terms: tuple[str, ...] = ()
    constant: bool = True
    covariance: str = "independent"
    label: str = ""

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        return self.group[-1] if self.group else "_all"

    @property
    def term_names(self) -> tuple[str, ...]:
        """Stata names of the columns of this equation, ``_cons`` last."""
        return tuple(self.terms) + (("_cons",) if self.constant else ())

    def to_stata(self) -> str:
        head = f"|| {self.group[-1] if self.group else '_all'}:"
        body = " ".join(self.terms)
        opts = []
        if not self.constant:
            opts.append("noconstant")
        if self.covariance != _default_covariance(self):
            opts.append(f"covariance({self.covariance})")
        text = f"{head} {body}".rstrip()
        return text + (", " + " ".join(opts) if opts else "")


def _default_covariance(level: ReLevel) -> str:
    """Stata's default: identity for ``R.`` terms, independent otherwise."""
    if any(t.startswith("R.") for t in level.terms):
        return "identity"
    return "independent"


@dataclass(frozen=True)
class ModelSpec:
    """A multilevel model, independent of the syntax it was written in.

    Attributes
    ----------
    command:
        Stata command name (``mixed``, ``meglm``, ...).
    response:
        Name of the dependent variable.
    fixed:
        The fixed part as a formulaic right-hand side without the constant
        (``"age + C(male) + C(male):age"``; ``""`` for none).
    fixed_stata:
        The fixed part as the user would write it in Stata (for titles).
    constant:
        Whether the fixed part has ``_cons``.
    levels:
        Random-effects equations from the top level down.
    method:
        ``"ml"`` or ``"reml"``.
    if_expr, in_range:
        Stata sample qualifiers (``if`` expression over the columns;
        ``in`` as a 1-based inclusive ``(first, last)`` row range).
    options:
        Everything else (reporting options, residuals, family, ...).
    r_coding:
        Factor coding without a constant: R's (the first factor coded in full, lme4's
        ``0 + factor(x)``) instead of Stata's (every ``i.x`` keeps its base level out,
        with or without ``_cons``; [U] 11.4.3 Factor variables).
    """

    command: str
    response: str
    fixed: str
    fixed_stata: str
    constant: bool = True
    levels: tuple[ReLevel, ...] = ()
    method: str = "ml"
    if_expr: str | None = None
    in_range: tuple[int, int] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    r_coding: bool = False

    def with_options(self, **changes: Any) -> "ModelSpec":
        """A copy with some options changed (the spec is frozen)."""
        merged = dict(self.options)
        merged.update(changes)
        return replace(self, options=merged)

    def to_stata(self) -> str:
        """The canonical Stata command for this model."""
        head = f"{self.command} {self.response} {self.fixed_stata}".rstrip()
        parts = [head] + [lvl.to_stata() for lvl in self.levels]
        text = " ".join(parts)
        opts = []
        if not self.constant:
            opts.append("noconstant")
        if self.method == "reml":
            opts.append("reml")
        return text + (", " + " ".join(opts) if opts else "")
