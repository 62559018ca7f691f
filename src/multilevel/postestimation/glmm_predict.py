"""``predict`` after the GLMM commands (``melogit``, ``mepoisson``, ``meologit``, ``meglm``, ``glmer``).

Stata's names ([ME] meglm postestimation, "Syntax for predict"):

==============  ===================================================================
``mu``          the mean of y, g⁻¹(η) (binomial: n·p); the default
``pr``          probabilities: P(y = 1) (bernoulli/binomial: p), P(y = k) with
                ``outcome=k`` (ordinal: all outcomes, one column each, without it;
                counts: P(y = k) for ``outcome=k``)
``eta``         the linear predictor xβ̂ + zb̃ (``fitted`` is an alias)
``xb``          xβ̂, the fixed portion
``stdp``        SE of xβ̂
``pearson``     (y − μ)/sqrt V(μ)
``deviance``    sign(y − μ) sqrt dᵢ
``anscombe``    (A(y) − A(μ))/V(μ)^{1/6}, A(y) = ∫₀ʸ V(t)^{−1/3} dt
``reffects``    predicted random effects, one column per effect (``level:term``)
``reses``       their posterior standard deviations
==============  ===================================================================

After ``mestreg`` ([ME] mestreg postestimation) ``mean`` and ``median`` are survival times and
``hazard``, ``surv`` the hazard h(t) and S(t)/S(t₀) of each record of the estimation sample
(:meth:`multilevel.survival.families._Survival.predict`); ``mu``, ``pr`` and the residuals do not apply.

``conditional="ebmeans"`` (default: the posterior means of the random effects),
``"ebmodes"`` (the conditional modes) or ``"fixedonly"`` (random effects 0)
chooses what ``mu``, ``pr``, ``eta`` and the residuals condition on;
``marginal=True`` instead integrates the random effects out (population-averaged):
η of an observation is N(xβ̂, s²) with s² = Σ z G zᵀ over the levels, so the
marginal mean is the one-dimensional integral ∫ g⁻¹(xβ̂ + s t) φ(t) dt (closed form
for the log link and the probit, otherwise the trapezoidal rule on a fine grid,
exact to rounding for these analytic integrands).  The offset (``offset()``,
ln ``exposure()``) is part of η and xb unless ``nooffset=True``, as in Stata.

Rows and new data follow :mod:`.predict`: without ``data`` the estimation
sample, indexed by the rows' positions in the fitted data; with ``data``
groups seen in the fit get their predicted effects and new groups 0 (their
``reses`` is the prior SD).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from ..design.sample import check_variables
from ..spec.errors import DataError, SpecError
from ._state import design_of
from .glmm_residuals import residual
from .glmm_state import effects, inputs, xi_of
from .predict import _codes, _column, _fixed_matrix, _needed, _z

KINDS = ("mu", "pr", "eta", "xb", "stdp", "pearson", "deviance", "anscombe", "reffects", "reses")
ALIASES = {"fitted": "eta", "fit": "eta", "linpred": "eta", "ranef": "reffects", "reffect": "reffects",
           "ebmeans": "reffects", "ebmodes": "reffects", "mean": "mu"}
CONDITIONAL = ("ebmeans", "ebmodes", "fixedonly")
SURVIVAL = ("mean", "median", "hazard", "surv")
_T = np.arange(-9.0, 9.0 + 1e-9, 0.05)                       # trapezoid nodes for N(0, 1)
_W = np.exp(-0.5 * _T ** 2) / np.sqrt(2 * np.pi) * 0.05


@dataclass(frozen=True)
class _Rows:
    index: pd.Index
    ok: np.ndarray
    X: np.ndarray
    y: np.ndarray | None
    offset: np.ndarray
    trials: np.ndarray | None
    codes: tuple[np.ndarray, ...]
    z: tuple[np.ndarray, ...]


def predict(res, kind: str = "mu", data: pd.DataFrame | None = None, *, conditional: str | None = None,
            marginal: bool = False, outcome=None, intpoints: int | None = None, nooffset: bool = False,
            ebmodes: bool = False, fixedonly: bool = False):
    """Predictions after a GLMM (Stata's ``predict, kind``); see the module docstring.

    Parameters
    ----------
    kind
        ``mu pr eta xb stdp pearson deviance anscombe reffects reses``
        (``"ebmodes"``/``"ebmeans"`` are ``reffects`` with that choice)
    conditional
        ``"ebmeans"`` (default), ``"ebmodes"`` or ``"fixedonly"``
        (``ebmodes=True`` and ``fixedonly=True`` are shorthands)
    marginal
        integrate the random effects out (``mu`` and ``pr``)
    outcome
        for ``pr``: the outcome value (ordinal, counts); ``"#k"`` is the k-th outcome
    intpoints
        quadrature points for the posterior means (default: the fit's)
    """
    low = kind.lower().strip()
    k = ALIASES.get(low, low)
    if res.command == "mestreg":
        k = _survival_kind(low, k, data, marginal)
    elif k not in KINDS:
        raise ValueError(f"unknown prediction {kind!r}; choose one of {', '.join(KINDS)}")
    cond = _conditional(low, conditional, ebmodes, fixedonly)
    if marginal and k not in ("mu", "pr"):
        raise SpecError(f"marginal is allowed with mu and pr, not with {k}")
    if k in ("reffects", "reses"):
        if cond == "fixedonly":
            raise SpecError(f"{k} cannot be combined with conditional(fixedonly)")
        return _effects(res, data, k, effects(res, cond, intpoints))
    rows = _rows(res, data, k, nooffset)
    values = _values(res, rows, k, cond, marginal, outcome, intpoints)
    if values.ndim == 2:
        full = np.full((len(rows.index), values.shape[1]), np.nan)
        full[rows.ok] = values
        return pd.DataFrame(full, index=rows.index, columns=_outcome_names(res))
    out = np.full(len(rows.index), np.nan)
    out[rows.ok] = values
    return pd.Series(out, index=rows.index, name=k if not marginal else f"{k}_marginal")


def _survival_kind(low: str, k: str, data, marginal: bool) -> str:
    """After ``mestreg`` ([ME] mestreg postestimation): survival times, hazard and survivor instead of
    the mean response; the record's times are those of the estimation sample."""
    if low in SURVIVAL:
        if marginal:
            raise SpecError(f"predict {low}, marginal is not available after mestreg")
        if low in ("hazard", "surv") and data is not None:
            raise SpecError(f"predict {low} after mestreg is for the estimation sample (data=None)")
        return low
    if k in ("eta", "xb", "stdp", "reffects", "reses"):
        return k
    raise SpecError(f"predict {low!r} is not available after mestreg; choose one of "
                    f"{', '.join(SURVIVAL + ('eta', 'xb', 'stdp', 'reffects', 'reses'))}")


def _conditional(low: str, conditional: str | None, ebmodes: bool, fixedonly: bool) -> str:
    if low in ("ebmeans", "ebmodes"):
        conditional = conditional or low
    if ebmodes:
        conditional = "ebmodes"
    if fixedonly:
        conditional = "fixedonly"
    cond = (conditional or "ebmeans").lower()
    if cond not in CONDITIONAL:
        raise ValueError(f"conditional must be one of {', '.join(CONDITIONAL)}, not {conditional!r}")
    return cond


# --- values ---------------------------------------------------------------------------------
def _values(res, rows: _Rows, kind: str, cond: str, marginal: bool, outcome, intpoints) -> np.ndarray:
    fam = inputs(res).family
    xb = rows.X @ res.fixed.coef + rows.offset
    if kind == "xb":
        return xb
    if kind == "stdp":
        return np.sqrt(np.einsum("ij,jk,ik->i", rows.X, res.fixed.vcov, rows.X))
    xi = xi_of(res)
    if marginal:
        return _marginal(res, fam, rows, xb, xi, kind, outcome)
    eta = xb if cond == "fixedonly" else xb + _zb(res, rows, effects(res, cond, intpoints))
    if kind == "eta":
        return eta
    if kind in SURVIVAL:
        return fam.predict(kind, eta, xi)
    if kind == "pr":
        return _pr(res, fam, eta[:, None], xi, outcome, rows)[..., 0]
    mu = _mean(fam, eta, xi, rows.trials)
    if kind == "mu":
        return mu
    if rows.y is None:
        raise DataError(f"predict {kind} needs the response '{res.depvar}'")
    return residual(kind, fam, rows.y, mu, xi, rows.trials)


def _zb(res, rows: _Rows, eff) -> np.ndarray:
    total = np.zeros(len(rows.X))
    for i in range(len(res.equations)):
        codes, known = rows.codes[i], rows.codes[i] >= 0
        b = eff.means[i][np.where(known, codes, 0)]
        total += np.where(known, np.einsum("ij,ij->i", rows.z[i], b), 0.0)
    return total


def _mean(fam, eta: np.ndarray, xi: np.ndarray, trials) -> np.ndarray:
    """E(y | η): g⁻¹(η), times the trials for the binomial."""
    if fam.name == "ordinal":
        raise SpecError("mu is not defined for an ordinal response; use pr (with outcome= for one outcome)")
    if fam.name in ("bernoulli", "binomial"):
        p = fam.cdf.cdf(eta)
        return p if trials is None else p * (trials if eta.ndim == 1 else trials[:, None])
    return fam.lnk.mu(eta)[0]


def _pr(res, fam, eta: np.ndarray, xi: np.ndarray, outcome, rows: _Rows) -> np.ndarray:
    """Probabilities for η of shape (n, m): (n, m), or (n, K, m) for all ordinal outcomes."""
    if fam.name in ("bernoulli", "binomial") and outcome is None:
        return fam.cdf.cdf(eta)
    if fam.name == "ordinal":
        K = len(fam.levels)
        cuts = np.concatenate([[-np.inf], xi, [np.inf]])
        F = fam.cdf.cdf(cuts[None, :, None] - eta[:, None, :])          # (n, K+1, m)
        P = np.diff(F, axis=1)
        return P if outcome is None else P[:, _outcome_index(fam, outcome, K), :]
    if fam.name in ("poisson", "nbinomial", "bernoulli", "binomial"):
        if outcome is None:
            raise SpecError(f"pr after {res.command} needs outcome= (the count whose probability is wanted)")
        k = np.full((len(eta), 1), float(outcome))
        if fam.name == "binomial":
            raise SpecError("pr with outcome= is not available for binomial(n); pr is P(success)")
        return np.exp(fam.loglik(k if eta.ndim == 2 else k[:, 0], eta, xi))
    raise SpecError(f"pr is not defined for family({fam.name}); use mu")


def _outcome_index(fam, outcome, K: int) -> int:
    if isinstance(outcome, str) and outcome.startswith("#"):
        j = int(outcome[1:]) - 1
        if not 0 <= j < K:
            raise SpecError(f"outcome({outcome}): the response has {K} outcomes")
        return j
    hits = np.flatnonzero(fam.levels == float(outcome))
    if not len(hits):
        raise SpecError(f"outcome({outcome}) is not an outcome of the response; its values are "
                        + ", ".join(f"{v:g}" for v in fam.levels))
    return int(hits[0])


def _outcome_names(res) -> list[str]:
    fam = inputs(res).family
    return [f"pr{v:g}" for v in fam.levels]


def _marginal(res, fam, rows: _Rows, xb: np.ndarray, xi: np.ndarray, kind: str, outcome) -> np.ndarray:
    """∫ h(xβ + s t) φ(t) dt with s² = Σ_levels z G zᵀ (closed forms where they exist)."""
    s2 = np.zeros(len(xb))
    for e, z in zip(res.equations, rows.z):
        s2 += np.einsum("ia,ab,ib->i", z, e.cov, z)
    s = np.sqrt(s2)
    if kind == "mu" and fam.name not in ("bernoulli", "binomial", "ordinal"):
        if fam.link == "log":
            return np.exp(xb + 0.5 * s2)
        if fam.link == "identity":
            return xb
    if fam.name in ("bernoulli", "binomial") and fam.link == "probit" and (kind == "mu" or outcome is None):
        p = special.ndtr(xb / np.sqrt(1 + s2))
        return p * rows.trials if kind == "mu" and rows.trials is not None else p
    out = []
    for a in range(0, len(xb), 4096):                   # chunks of rows × nodes
        eta = xb[a:a + 4096, None] + s[a:a + 4096, None] * _T[None, :]
        sub = _Rows(rows.index, rows.ok, rows.X, None, rows.offset,
                    None if rows.trials is None else rows.trials[a:a + 4096], (), ())
        v = _mean(fam, eta, xi, sub.trials) if kind == "mu" else _pr(res, fam, eta, xi, outcome, sub)
        out.append(v @ _W)
    return np.concatenate(out)


# --- reffects / reses -------------------------------------------------------------------------
def _effects(res, data, kind: str, eff) -> pd.DataFrame:
    design = design_of(res)
    if data is None:
        index = pd.Index(design.sample.rows, name="row")
        ok = np.ones(design.n, dtype=bool)
        codes = [eq.refs.astype(np.int64) for eq in design.equations]
    else:
        _check_frame(data)
        needed = _needed(design, "reffects")
        check_variables(data, needed)
        ok = data[needed].notna().all(axis=1).to_numpy() if needed else np.ones(len(data), dtype=bool)
        sub = data.iloc[np.flatnonzero(ok)]
        index = data.index
        codes = [_codes(eq, sub) for eq in design.equations]
    cols = {}
    for i, e in enumerate(res.equations):
        known = codes[i] >= 0
        vals, fill = (eff.means[i], np.zeros(len(e.names))) if kind == "reffects" \
            else (eff.sds[i], np.sqrt(np.diag(e.cov)))
        block = np.where(known[:, None], vals[np.where(known, codes[i], 0)], fill[None, :])
        full = np.full((len(index), len(e.names)), np.nan)
        full[ok] = block
        for j, name in enumerate(e.names):
            cols[_column(res, i, name)] = full[:, j]
    return pd.DataFrame(cols, index=index)


def random_effects_table(res, conditional: str = "ebmeans", intpoints: int | None = None) -> pd.DataFrame:
    """One row per (equation, group, term): the predicted effect and its posterior SD."""
    eff = effects(res, conditional, intpoints)
    frames = []
    for i, e in enumerate(res.equations):
        G, k = eff.means[i].shape
        labels = [":".join(map(str, g)) if isinstance(g, tuple) else g for g in e.groups]
        frames.append(pd.DataFrame({
            "level": e.label, "group": np.repeat(np.array(labels, dtype=object), k),
            "term": np.tile(np.array(e.names, dtype=object), G), "estimate": eff.means[i].ravel(),
            "se": eff.sds[i].ravel()}))
    return pd.concat(frames, ignore_index=True)


# --- rows -------------------------------------------------------------------------------------
def _check_frame(data) -> None:
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")


def _rows(res, data: pd.DataFrame | None, kind: str, nooffset: bool) -> _Rows:
    design = design_of(res)
    inp = inputs(res)
    fam = inp.family
    trials_of = getattr(fam, "trials", None)
    if data is None:
        off = np.zeros(design.n) if nooffset else inp.offset
        return _Rows(pd.Index(design.sample.rows, name="row"), np.ones(design.n, dtype=bool), design.X,
                     inp.y, off, trials_of, tuple(eq.refs.astype(np.int64) for eq in design.equations),
                     tuple(eq.z for eq in design.equations))
    _check_frame(data)
    opts = res.options or {}
    trials_var = _trials_variable(res)
    extra = [v for v in (opts.get("offset"), opts.get("exposure")) if isinstance(v, str) and not nooffset]
    needs_y = kind in ("pearson", "deviance", "anscombe")
    needed = _needed(design, "fitted") + extra + ([trials_var] if trials_var else [])
    needed = list(dict.fromkeys(([res.depvar] if needs_y else []) + needed))
    check_variables(data, needed)
    ok = data[needed].notna().all(axis=1).to_numpy()
    sub = data.iloc[np.flatnonzero(ok)]
    off = np.zeros(len(sub))
    if isinstance(opts.get("offset"), str) and not nooffset:
        off += sub[opts["offset"]].to_numpy(dtype=float)
    if isinstance(opts.get("exposure"), str) and not nooffset:
        off += np.log(sub[opts["exposure"]].to_numpy(dtype=float))
    trials = None
    if fam.name == "binomial":
        trials = sub[trials_var].to_numpy(dtype=float) if trials_var else np.full(len(sub), float(trials_of[0]))
    y = None
    if needs_y:
        y = sub[res.depvar].to_numpy(dtype=float)
        if fam.name == "ordinal":
            y = np.searchsorted(fam.levels, y).astype(float)
    codes = tuple(_codes(eq, sub) for eq in design.equations)
    z = tuple(_z(eq, sub) for eq in design.equations)
    return _Rows(data.index, ok, _fixed_matrix(design, sub), y, off, trials, codes, z)


def _trials_variable(res) -> str | None:
    """The binomial trials variable of the fit, if the trials are a variable."""
    opts = res.options or {}
    words = str(opts.get("family", "")).split()
    cand = opts.get("binomial") if opts.get("binomial") not in (None, True) else (
        words[1] if len(words) > 1 and words[0].startswith("bin") else None)
    if isinstance(cand, str):
        try:
            float(cand)
        except ValueError:
            return cand
    return None
