"""``estat`` after the GLMM commands: icc (latent scale), ic, group, sd.

The displays and frames are those of :mod:`.estat` (the ``mixed`` versions);
only what differs for a GLMM is here.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..inference.distributions import critical_value
from ..spec.errors import SpecError
from ._state import cached
from .estat import IcResult, IccResult, SdResult, _cons_index, _expit, _gradient, _nested_levels, group

SUBCOMMANDS = ("icc", "group", "sd", "ic")
# variance of the latent residual: logistic π²/3, standard normal 1 ([ME] estat icc)
LATENT_VAR = {"logit": np.pi ** 2 / 3, "probit": 1.0}


def estat(res, subcommand: str, **options):
    """Stata's ``estat <subcommand>`` after a GLMM: ``icc`` (``level=``), ``group``, ``sd``
    (``variance=True``), ``ic`` (``n=``)."""
    name = {"gr": "group"}.get(subcommand.strip().lower(), subcommand.strip().lower())
    if name in ("recovariance", "wcorrelation"):
        raise SpecError(f"estat {name} is available after mixed; after {res.command} use estat sd or "
                        "res.random_effects")
    if name not in SUBCOMMANDS:
        raise ValueError(f"unknown estat subcommand {subcommand!r}; choose one of {', '.join(SUBCOMMANDS)}")
    return {"icc": icc, "group": group, "sd": sd, "ic": ic}[name](res, **options)


def icc(res, level: float | None = None) -> IccResult:
    """Latent-scale intraclass correlations of a binary or ordinal GLMM ([ME] estat icc).

    With random-intercept variances σ²₁ … σ²_L from the top level down, the
    ICC of level j (conditional on the levels above it, as for ``mixed``) is

    .. math:: ρ_j = \\frac{\\sum_{l \\le j} σ^2_l}{\\sum_{l=1}^{L} σ^2_l + σ^2_ε},
              \\quad σ^2_ε = π^2/3 \\text{ (logit)}, \\; 1 \\text{ (probit)},

    the correlation of the latent responses y* = η + ε of two observations
    that share the groups of levels 1..j.  SE by the delta method over the
    observed information in Stata's metric (log SDs); CI on the logit scale.
    """
    if res.family not in ("bernoulli", "binomial", "ordinal") or res.link not in LATENT_VAR:
        raise SpecError(f"estat icc is available after logit and probit models (binary, binomial, "
                        f"ordinal), not after family({res.family}) link({res.link})")
    level = res.level if level is None else float(level)
    groups = _nested_levels(res)
    cons = [_cons_index(res, eqs) for _, eqs in groups]
    phi = np.concatenate([e.phi for e in res.equations])
    free = np.isfinite(np.concatenate([e.phi_se for e in res.equations]))
    V = _phi_vcov(res, phi, free, [i for idx in cons for i in idx])
    resid = LATENT_VAR[res.link]

    def rho(p: np.ndarray, j: int) -> float:
        var = [sum(np.exp(2 * p[i]) for i in idx) for idx in cons]
        return sum(var[:j + 1]) / (sum(var) + resid)

    n_levels = len(groups)
    est, se = np.empty(n_levels), np.empty(n_levels)
    for j in range(n_levels):
        est[j] = rho(phi, j)
        g = _gradient(lambda p, j=j: rho(p, j), phi, free)
        se[j] = float(np.sqrt(g @ V @ g))
    half = critical_value(level) * se / (est * (1 - est))
    logit = np.log(est / (1 - est))
    labels = tuple("|".join(name for name, _ in reversed(groups[:j + 1])) for j in range(n_levels))
    return IccResult(labels, est, se, _expit(logit - half), _expit(logit + half), level)


def _phi_vcov(res, phi: np.ndarray, free: np.ndarray, used: list[int]) -> np.ndarray:
    """Var(φ̂) over the random-effects parameters (0 where not free).

    One parameter: its SE from the table.  Several: the covariances too,
    from the observed information of the fit recomputed once at the
    estimates (:func:`multilevel.glmm.fit.information`).
    """
    V = np.diag(np.where(free, np.nan_to_num(np.concatenate([e.phi_se for e in res.equations])) ** 2, 0.0))
    if sum(free[i] for i in used) < 2:
        return V

    def build():
        from ..glmm.fit import information
        from ..glmm.model import GeneralizedLinearMixedModel
        from ._state import design_of
        from .glmm_state import inputs, xi_of

        inp = inputs(res)
        model = GeneralizedLinearMixedModel(design_of(res), inp.family, inp.y, inp.offset, res.intmethod,
                                            res.intpoints)
        x = np.concatenate([res.fixed.coef, model.family.to_opt(xi_of(res)), res.theta])
        _, vcov, _, free_info = information(model, x, res.fixed.se)
        start = model.p + model.n_extra
        out = np.zeros((len(phi), len(phi)))
        idx = np.flatnonzero(free_info)
        out[np.ix_(idx, idx)] = vcov[start:, start:]
        return out
    return cached(res, "glmm_phi_vcov", build)


def sd(res, variance: bool = False) -> SdResult:
    """``estat sd``: the random-effects table as SDs and correlations (``variance=True``: variances)."""
    from ..output.glmm_table import random_rows
    from ..output.rows import equation_rows

    rows = [r for e in res.equations for r in equation_rows(e, res.level, not variance)]
    frame = pd.DataFrame([(r.equation, r.name, r.estimate, r.se, r.lower, r.upper) for r in rows],
                         columns=["equation", "parameter", "estimate", "se", "ci_lower", "ci_upper"]
                         ).set_index(["equation", "parameter"])
    lines = random_rows(res, not variance)
    head = ["-" * 78, f"{'Random-effects parameters':<13}|   Estimate   Std. err.     [{res.level:g}% conf. interval]"]
    return SdResult(tuple(head + lines), frame)


def ic(res, n: int | None = None) -> IcResult:
    """``estat ic``: AIC = −2ℓ + 2k, BIC = −2ℓ + k ln N (N = observations, as Stata's ``me``
    commands; ``n=`` overrides); k counts β, the ancillary parameters and the variance components."""
    N = res.nobs if n is None else int(n)
    return IcResult(N, res.loglik, res.k, -2 * res.loglik + 2 * res.k, -2 * res.loglik + res.k * np.log(N))
