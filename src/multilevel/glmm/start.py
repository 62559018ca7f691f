"""Start values of a GLMM fit: Stata's ``startvalues()``, ``startgrid`` and ``from()``.

[ME] meglm, "Options": ``startvalues(zero)`` sets the coefficients and
ancillary parameters to 0; ``constantonly`` fits the model with the
constant (and ancillary parameters) only; ``fixedonly`` fits the model
without random effects; all three start every random-effects variance at 1
(covariances at 0).  ``startgrid(numlist)`` tries each variance at the
listed values (default 0.1 1 10), one variance at a time, and keeps the
best; ``from()`` sets any parameter by its name and overrides the method's
values.

Names (the coefficient table's, as ``to_dict`` and Stata's ``e(b)``):
``height_s`` or ``ticks:height_s`` for a coefficient, ``lnalpha``/``cut1``
(or ``/lnalpha``) for an ancillary parameter, ``var(_cons[location])`` and
``cov(x,_cons[id])`` for the random part, where the level is the level
variable or, nested, Stata's path ``location>brood``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..lmm.model import equation_blocks
from ..spec import SpecError
from .glm import fit_glm

METHODS = ("zero", "constantonly", "fixedonly")
START_OPTIONS = ("startvalues", "startgrid", "from", "noestimate")
GRID = (0.1, 1.0, 10.0)


@dataclass(frozen=True)
class Start:
    """A start point: β, ξ (Stata's metric) and θ; ``default`` when the fit may use its own
    variance stage (the default ``fixedonly`` start without ``from()`` or ``startgrid``)."""

    beta: np.ndarray
    xi: np.ndarray
    theta: np.ndarray
    default: bool = False

    def x(self, family) -> np.ndarray:
        """The optimizer vector."""
        return np.concatenate([self.beta, family.to_opt(self.xi), self.theta])


def start_method(value: Any) -> str:
    """The method of ``startvalues(value)`` (abbreviations of three letters or more)."""
    if value in (None, True):
        return "fixedonly"
    words = str(value).replace(",", " ").split()
    low = words[0].lower() if words else ""
    hits = [m for m in METHODS if m.startswith(low) and len(low) >= 3] if len(words) == 1 else []
    if low == "iv":
        raise SpecError("startvalues(iv) is not available; use startvalues(fixedonly) (the default), "
                        "startgrid or from()")
    if not hits:
        raise SpecError(f"startvalues({value}) is not valid; choose one of {', '.join(METHODS)}")
    return hits[0]


def grid_values(value: Any) -> tuple[float, ...] | None:
    """``startgrid`` -> None (no grid), the default grid, or the listed variances."""
    if value in (None, False):
        return None
    if value is True or (isinstance(value, str) and not value.strip()):
        return GRID
    items = value.replace(",", " ").split() if isinstance(value, str) else list(np.atleast_1d(value))
    try:
        out = tuple(float(v) for v in items)
    except ValueError:
        raise SpecError(f"startgrid({value}) needs a list of variances, e.g. startgrid(0.1 1 10)") from None
    if not out or any(not v > 0 or not np.isfinite(v) for v in out):
        raise SpecError(f"startgrid({value}): the variances must be positive numbers")
    return out


_ITEM = re.compile(r"\s*([^=\s]+)\s*=\s*([-+0-9.eE]+|[-+]?inf|nan)\s*")


def parse_from(value: Any) -> dict[str, float]:
    """``from()`` as a dict: a dict, a fitted results object, or the text ``name=# name=# ...``."""
    if value is None:
        return {}
    if isinstance(value, dict):
        try:
            return {str(k): float(v) for k, v in value.items()}
        except (TypeError, ValueError):
            raise SpecError("from_ must map parameter names to numbers") from None
    if hasattr(value, "fixed") and hasattr(value, "equations"):
        return _of_results(value)
    text, pos, out = str(value), 0, {}
    while pos < len(text.rstrip()):
        m = _ITEM.match(text, pos)
        if not m:
            raise SpecError(f"from({text}): expected name=value pairs such as "
                            "from(x=0.5 var(_cons[id])=1)")
        out[m.group(1)] = float(m.group(2))
        pos = m.end()
    return out


def _of_results(res) -> dict[str, float]:
    """Named estimates of a previous GLMM fit (coefficients, ancillary, variances, covariances)."""
    out = dict(zip(res.fixed.names, map(float, res.fixed.coef)))
    out.update({a.name: float(a.estimate) for a in getattr(res, "ancillary", ())})
    for e in res.equations:
        for (i, j), name in _entry_names(e.names, e.label).items():
            out[name] = float(e.cov[i, j])
    return out


def _entry_names(names, label: str) -> dict[tuple[int, int], str]:
    """var(a[level]) for the diagonal, cov(a,b[level]) below it."""
    out = {}
    for i, a in enumerate(names):
        out[(i, i)] = f"var({a}[{label}])"
        for j in range(i):
            out[(i, j)] = f"cov({names[j]},{a}[{label}])"
    return out


def start_values(model, glm, options: dict[str, Any]) -> Start:
    """The start point from the options ``startvalues``, ``startgrid`` and ``from``."""
    method = start_method(options.get("startvalues"))
    grid = grid_values(options.get("startgrid"))
    given = parse_from(options.get("from"))
    from_fit = hasattr(options.get("from"), "equations")     # a previous fit: its matching names
    beta, xi = _fixed_part(model, glm, method)
    default = method == "fixedonly" and grid is None and not given and not options.get("noestimate")
    sigmas = [np.eye(s.k) for _, s, _ in equation_blocks(model)]
    fixed_vars: set[tuple[int, int]] = set()
    if given:
        beta, xi, sigmas, fixed_vars = _apply(model, given, beta, xi, sigmas, skip_unknown=from_fit)
    theta = _theta(model, sigmas)
    if grid is not None:
        theta = _grid(model, beta, xi, sigmas, grid, skip=fixed_vars)
    return Start(beta, xi, theta, default)


def _fixed_part(model, glm, method: str) -> tuple[np.ndarray, np.ndarray]:
    """β and ξ of ``startvalues(method)``."""
    fam, names = model.family, list(model.design.fixed.names)
    if method == "fixedonly":
        return glm.beta.copy(), np.asarray(glm.xi, dtype=float).copy()
    if method == "zero":
        return np.zeros(model.p), fam.from_opt(np.zeros(fam.n_extra))
    keep = [i for i, n in enumerate(names) if n == "_cons"]
    const = fit_glm(fam, model.X[:, keep], model.y, model.offset, [names[i] for i in keep])
    beta = np.zeros(model.p)
    beta[keep] = const.beta
    return beta, np.asarray(const.xi, dtype=float)


def _apply(model, given: dict[str, float], beta, xi, sigmas, skip_unknown: bool = False):
    """Override the start by the named values of ``from()``; unknown names are an error
    (skipped with ``skip_unknown``).
    Also returns the (equation, column) of each variance given."""
    beta, xi, sigmas = beta.copy(), xi.copy(), [s.copy() for s in sigmas]
    given_vars = set()
    depvar = model.design.spec.response
    slots: dict[str, tuple[str, Any]] = {}
    for i, n in enumerate(model.design.fixed.names):
        slots[n] = slots[f"{depvar}:{n}"] = ("beta", i)
    for i, n in enumerate(model.family.extra_names):
        slots[n] = slots[f"/{n}"] = slots[f"/:{n}"] = ("xi", i)
    for b, (eq, _, _) in enumerate(equation_blocks(model)):
        for label in {eq.label, ">".join(eq.group_key)}:
            for (i, j), name in _entry_names(eq.names, label).items():
                for key in (name, "/" + name, "/:" + name):
                    slots[key] = ("sigma", (b, i, j))
    unknown = [k for k in given if k not in slots and k not in model.design.fixed.omitted]
    if unknown and not skip_unknown:
        shown = [k for k in slots if not k.startswith("/") and ":" not in k.split("(")[0]]
        raise SpecError(f"from(): unknown parameter(s) {', '.join(unknown)}; this model's are "
                        + ", ".join(shown))
    for key, value in given.items():
        if key not in slots:
            continue
        kind, where = slots[key]
        if not np.isfinite(value):
            raise SpecError(f"from(): {key} = {value} is not a finite number")
        if kind == "beta":
            beta[where] = value
        elif kind == "xi":
            xi[where] = value
        else:
            b, i, j = where
            sigmas[b][i, j] = sigmas[b][j, i] = value
            if i == j:
                given_vars.add((b, i))
    return beta, xi, sigmas, given_vars


def _theta(model, sigmas) -> np.ndarray:
    """θ of each equation's covariance matrix (which must be positive definite)."""
    theta = np.zeros(model.n_theta)
    for (eq, struct, sl), sigma in zip(equation_blocks(model), sigmas):
        if np.any(np.diag(sigma) <= 0) or np.any(np.linalg.eigvalsh(sigma) <= 0):
            raise SpecError(f"from(): the start covariance matrix of level '{eq.label}' is not positive "
                            "definite (variances must be > 0, correlations inside (-1, 1))")
        theta[sl] = struct.from_sigma(sigma)
    return theta


def _grid(model, beta, xi, sigmas, grid, skip: set[tuple[int, int]]) -> np.ndarray:
    """Each variance not given in ``from()`` in turn at each grid value, the others held;
    the best −2 log L kept."""
    x_fixed = np.concatenate([beta, model.family.to_opt(xi)])
    sigmas = [s.copy() for s in sigmas]

    def value(sig):
        return model.objective(np.concatenate([x_fixed, _theta(model, sig)]))

    best = value(sigmas)
    for b, (eq, _, _) in enumerate(equation_blocks(model)):
        for i in range(len(eq.names)):
            if (b, i) in skip:
                continue
            for v in grid:
                trial = [s.copy() for s in sigmas]
                sd = np.sqrt(v / trial[b][i, i])
                trial[b][i, :] *= sd
                trial[b][:, i] *= sd
                f = value(trial)
                if f < best:
                    best, sigmas = f, trial
    return _theta(model, sigmas)
