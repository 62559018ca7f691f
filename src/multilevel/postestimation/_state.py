"""What postestimation derives once from a fit, cached on the (frozen) results.

Nothing here refits: the model core is rebuilt from ``res.design`` and
factored once at the estimated θ (cheap: the cross-products and one blocked
Cholesky factor), and the observed information in Stata's metric is
recomputed only when a delta-method standard error needs the covariances
between variance parameters.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..spec.errors import DataError, SpecError

_CACHE = "_postestimation_cache"


def cached(res, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per results object (stored beside its frozen fields)."""
    store = res.__dict__.get(_CACHE)
    if store is None:
        store = {}
        object.__setattr__(res, _CACHE, store)  # a cache, not a field: the results stay frozen
    if key not in store:
        store[key] = compute()
    return store[key]


def design_of(res):
    """The Design the results were fitted on, or a clear error."""
    design = getattr(res, "design", None)
    if design is None:
        raise DataError("these results do not carry their design; refit with this version of multilevel "
                        "to use predict/estat")
    return design


def require_iid_errors(res, what: str) -> None:
    """Refuse ``what`` for fits with a ``residuals()`` structure (R ≠ σ²I), which it assumes."""
    spec = getattr(res, "spec", None)
    if spec is not None and (getattr(spec, "options", None) or {}).get("residuals"):
        raise SpecError(f"{what} is not available yet for models with a residuals() structure")


def model_and_factor(res):
    """(LinearMixedModel, Factor at θ̂), rebuilt from the design once."""
    def build():
        from ..lmm.pseudolikelihood import make_model

        model = make_model(design_of(res), reml=res.method == "reml")
        return model, model.factor(res.theta)
    return cached(res, "model", build)


def natural_vcov(res):
    """Stata-metric parameters φ̂ (log SDs, atanh correlations, ln σ_e) and Var(φ̂).

    Returns ``(phi, V, free)``: ``V`` is the full covariance over all φ with
    NaN rows/columns for parameters on the boundary (``free`` False).
    """
    def build():
        from ..inference.information import natural_fit

        model, _ = model_and_factor(res)
        nat = natural_fit(model, res.theta, res.residual_var)
        idx = np.flatnonzero(nat.free)
        V = np.full((len(nat.phi), len(nat.phi)), np.nan)
        V[np.ix_(idx, idx)] = nat.vcov
        return nat.phi, V, nat.free
    return cached(res, "natural", build)


def natural_offsets(res) -> list[slice]:
    """Slice of each equation's parameters in φ (the residual ln σ_e is last)."""
    sizes = [len(e.phi) for e in res.equations]
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]
