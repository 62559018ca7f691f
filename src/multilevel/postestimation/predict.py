"""``predict`` after ``mixed``: linear predictions, fitted values, residuals, BLUPs.

Stata's names ([ME] mixed postestimation, "Syntax for predict"):

=============  ==============================================================
``xb``         x β̂, the fixed part (default)
``stdp``       SE of x β̂: sqrt(x Var(β̂) xᵀ)
``fitted``     x β̂ + z b̂, the random effects from the top level down to
               ``relevel`` (all levels by default)
``residuals``  y − fitted
``rstandard``  residuals / σ̂_e (the errors are i.i.d.)
``reffects``   the BLUPs b̂ (one column per random effect)
``reses``      their standard errors (see :mod:`.condvar` for which one)
=============  ==============================================================

Results are pandas objects.  Without ``data`` they cover the estimation
sample and are indexed by the *positions* of its rows in the data that was
fitted (so ``df.assign(fit=res.predict("fitted"))`` lines up when ``df`` has
the default RangeIndex).  With ``data`` they are indexed like ``data``: rows
with a missing value in a variable the prediction needs get NaN, groups seen
in the fit get their BLUPs and **groups not seen in the fit get 0** (the
mean of the random effects, as lme4's ``allow.new.levels``), with the prior
SD sqrt(diag G) as their ``reses``.  A variable the model uses that is not in
``data`` raises :class:`DataError` naming it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..design import random as _random
from ..design import fixed as _fixed
from ..design.sample import check_variables
from ..spec.errors import DataError, SpecError
from ._state import design_of, require_iid_errors
from .condvar import blup_variance, stata_kind

KINDS = ("xb", "stdp", "fitted", "residuals", "rstandard", "reffects", "reses", "scores")
SE_KINDS = ("stata", "conditional", "comparative")


@dataclass(frozen=True)
class _Rows:
    """What the predictions need, on the rows predicted (``ok`` marks complete rows)."""

    index: pd.Index
    ok: np.ndarray
    X: np.ndarray | None
    y: np.ndarray | None
    codes: tuple[np.ndarray, ...]      # per equation; −1 for a group not in the fit
    z: tuple[np.ndarray, ...]


def predict(res, kind: str = "xb", data: pd.DataFrame | None = None, relevel: str | None = None,
            se: str = "stata"):
    """Predictions of kind ``kind`` after ``mixed`` (Stata's ``predict, kind``).

    Parameters
    ----------
    res
        fitted :class:`~multilevel.inference.results.MixedResults`
    kind
        one of ``xb stdp fitted residuals rstandard reffects reses scores``
        (``scores``: a DataFrame of log-likelihood scores per highest-level group)
    data
        new data (default: the estimation sample)
    relevel
        a level name (``"id"``, ``"cask"``, ``"_all"``): ``fitted`` and
        ``residuals`` use the random effects from the top level down to
        it; ``reffects``/``reses`` return only that level's effects
    se
        for ``reses``: ``"stata"`` (conditional after ML, comparative
        after REML, as Stata), ``"conditional"`` (β known; lme4's
        condVar) or ``"comparative"`` (accounts for estimating β)

    Returns
    -------
    pandas.Series or pandas.DataFrame
        A Series (one value per row) or, for ``reffects``/``reses``, a
        DataFrame with one column per random effect named ``level:term``.
    """
    kind = _check_kind(kind)
    if kind == "scores":
        if data is not None or relevel is not None:
            raise SpecError("predict scores is computed on the estimation sample only")
        from ..inference.robust import scores

        return scores(res)
    if se not in SE_KINDS:
        raise ValueError(f"se must be one of {', '.join(SE_KINDS)}, not {se!r}")
    equations = _selected(res, relevel, below=kind in ("fitted", "residuals", "rstandard"))
    if relevel is not None and kind in ("xb", "stdp", "rstandard"):
        raise SpecError(f"relevel() is not allowed with predict {kind}")
    if kind in ("rstandard", "reses"):
        require_iid_errors(res, f"predict {kind}")
    rows = _rows(res, data, kind)
    if kind in ("reffects", "reses"):
        return _effects(res, rows, equations, kind, se)
    out = np.full(len(rows.index), np.nan)
    out[rows.ok] = _values(res, rows, equations, kind)
    return pd.Series(out, index=rows.index, name=kind)


def _check_kind(kind: str) -> str:
    k = kind.lower().strip()
    aliases = {"fitted": "fitted", "fit": "fitted", "residual": "residuals", "res": "residuals",
               "reffect": "reffects", "ranef": "reffects"}
    k = aliases.get(k, k)
    if k not in KINDS:
        raise ValueError(f"unknown prediction {kind!r}; choose one of {', '.join(KINDS)}")
    return k


def _values(res, rows: _Rows, equations: list[int], kind: str) -> np.ndarray:
    xb = rows.X @ res.fixed.coef
    if kind == "xb":
        return xb
    if kind == "stdp":
        return np.sqrt(np.einsum("ij,jk,ik->i", rows.X, res.fixed.vcov, rows.X))
    fitted = xb + _zb(res, rows, equations)
    if kind == "fitted":
        return fitted
    resid = rows.y - fitted
    return resid if kind == "residuals" else resid / np.sqrt(res.residual_var)


def _zb(res, rows: _Rows, equations: list[int]) -> np.ndarray:
    """Σ over the equations of z_i · b̂[group_i] (0 for groups not in the fit)."""
    total = np.zeros(len(rows.codes[0]) if rows.codes else 0)
    for i in equations:
        codes, known = rows.codes[i], rows.codes[i] >= 0
        b = res.equations[i].blups[np.where(known, codes, 0)]
        total += np.where(known, np.einsum("ij,ij->i", rows.z[i], b), 0.0)
    return total


def _effects(res, rows: _Rows, equations: list[int], kind: str, se: str) -> pd.DataFrame:
    if kind == "reses":
        which = stata_kind(res) if se == "stata" else se
        per_eq = blup_variance(res).se(which)
    cols = {}
    for i in equations:
        e = res.equations[i]
        codes = rows.codes[i]
        known = codes >= 0
        if kind == "reffects":
            vals, fill = e.blups, np.zeros(len(e.names))
        else:
            vals, fill = per_eq[i], np.sqrt(np.diag(e.cov))
        block = np.where(known[:, None], vals[np.where(known, codes, 0)], fill[None, :])
        full = np.full((len(rows.index), len(e.names)), np.nan)
        full[rows.ok] = block
        for j, name in enumerate(e.names):
            cols[_column(res, i, name)] = full[:, j]
    return pd.DataFrame(cols, index=rows.index)


def _column(res, i: int, name: str) -> str:
    label = res.equations[i].label
    same = [j for j, e in enumerate(res.equations) if e.label == label and name in e.names]
    return f"{label}:{name}" if len(same) < 2 else f"{label}{same.index(i) + 1}:{name}"


# --- which equations -------------------------------------------------------------
def _selected(res, relevel: str | None, below: bool) -> list[int]:
    """Equation indices: all, or those of level ``relevel`` (with ``below``: and above it)."""
    eqs = res.equations
    if relevel is None:
        return list(range(len(eqs)))
    match = [i for i, e in enumerate(eqs) if relevel in (e.label, *e.group_vars[-1:])
             or (relevel == "_all" and not e.group_vars)]
    if not match:
        names = ", ".join(dict.fromkeys(e.label for e in eqs))
        raise SpecError(f"relevel({relevel}) names no level of the model; its levels are {names}")
    if not below:
        return match
    design = design_of(res)
    deepest = max(design.equations[i].level for i in match)
    return [i for i, eq in enumerate(design.equations) if eq.level <= deepest]


# --- the rows predicted --------------------------------------------------------------
def _rows(res, data: pd.DataFrame | None, kind: str) -> _Rows:
    design = design_of(res)
    if data is None:
        index = pd.Index(design.sample.rows, name="row")
        return _Rows(index, np.ones(design.n, dtype=bool), design.X, design.y,
                     tuple(eq.refs.astype(np.int64) for eq in design.equations),
                     tuple(eq.z for eq in design.equations))
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    needed = _needed(design, kind)
    check_variables(data, needed)
    ok = data[needed].notna().all(axis=1).to_numpy() if needed else np.ones(len(data), dtype=bool)
    sub = data.iloc[np.flatnonzero(ok)]
    X = _fixed_matrix(design, sub) if kind in ("xb", "stdp", "fitted", "residuals", "rstandard") else None
    y = sub[design.spec.response].to_numpy(dtype=float) if kind in ("residuals", "rstandard") else None
    slopes = kind in ("fitted", "residuals", "rstandard")
    codes = tuple(_codes(eq, sub) for eq in design.equations)
    z = tuple(_z(eq, sub) if slopes else np.ones((len(sub), eq.k)) for eq in design.equations)
    return _Rows(data.index, ok, X, y, codes, z)


def _needed(design, kind: str) -> list[str]:
    spec = design.spec
    fixed_vars = _fixed.variables(spec.fixed)
    groups = [v for lvl in spec.levels for v in lvl.group]
    groups += [t[2:] for lvl in spec.levels for t in lvl.terms if t.startswith("R.")]
    if kind in ("xb", "stdp"):
        out = fixed_vars
    elif kind in ("reffects", "reses"):
        out = groups
    else:
        out = fixed_vars + _random.variables(spec.levels)
        if kind in ("residuals", "rstandard"):
            out = [spec.response] + out
    return list(dict.fromkeys(out))


def _fixed_matrix(design, frame: pd.DataFrame) -> np.ndarray:
    """X on new rows with the fit's columns and encoding (omitted columns left out)."""
    fx = design.fixed
    if hasattr(fx, "matrix"):
        X = fx.matrix(frame)
    else:  # a FixedTerm without matrix(): rebuild through formulaic's ModelSpec
        from ..spec.factor import stata_name

        mm = fx.model_spec.get_model_matrix(frame)
        names = [stata_name(c) for c in mm.columns]
        X = np.asarray(mm, dtype=float)[:, [names.index(n) for n in fx.names]]
    if X.shape[1] != len(fx.names):
        raise DataError(f"the new data give {X.shape[1]} fixed-effects columns, the fit has {len(fx.names)} "
                        f"({', '.join(fx.names)}); are factor levels missing or new?")
    return X


def _codes(eq, frame: pd.DataFrame) -> np.ndarray:
    """Code of each row's group in the fit, −1 for a group the fit did not see."""
    if not eq.group_key:
        return np.zeros(len(frame), dtype=np.int64)
    if len(eq.group_key) == 1:
        return pd.Index(eq.groups).get_indexer(frame[eq.group_key[0]]).astype(np.int64)
    fitted = pd.MultiIndex.from_tuples(eq.groups, names=list(eq.group_key))
    return fitted.get_indexer(pd.MultiIndex.from_frame(frame[list(eq.group_key)])).astype(np.int64)


def _z(eq, frame: pd.DataFrame) -> np.ndarray:
    cols = [np.ones(len(frame)) if (n == "_cons" or n.startswith("R.")) else frame[n].to_numpy(dtype=float)
            for n in eq.names]
    return np.column_stack(cols) if cols else np.zeros((len(frame), 0))


# --- the tidy table of BLUPs ---------------------------------------------------------
def random_effects_table(res) -> pd.DataFrame:
    """One row per (equation, group, term): the BLUP and its standard errors.

    Columns: ``level``, ``group`` (the group's label; nested groups as
    ``"1:2"``), ``term``, ``estimate``, ``se`` (what Stata's ``reses``
    reports for this fit), ``cond_sd`` (β known; lme4's condVar) and
    ``se_comparative`` (sqrt diag(G − G Zᵀ P Z G), accounting for β̂).
    """
    require_iid_errors(res, "random_effects_table()")
    var = blup_variance(res)
    cond, comp = var.se("conditional"), var.se("comparative")
    stata = comp if stata_kind(res) == "comparative" else cond
    frames = []
    for i, e in enumerate(res.equations):
        G, k = e.blups.shape
        labels = [":".join(map(str, g)) if isinstance(g, tuple) else g for g in e.groups]
        frames.append(pd.DataFrame({
            "level": e.label, "group": np.repeat(np.array(labels, dtype=object), k),
            "term": np.tile(np.array(e.names, dtype=object), G), "estimate": e.blups.ravel(),
            "se": stata[i].ravel(), "cond_sd": cond[i].ravel(), "se_comparative": comp[i].ravel()}))
    return pd.concat(frames, ignore_index=True)
