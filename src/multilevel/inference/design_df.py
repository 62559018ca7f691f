"""DF of the fixed effects from ranks of the design: ``dfmethod(repeated)`` and ``dfmethod(anova)``.

Neither uses the variance estimates, so both work after ML or REML ([ME] mixed,
"Small-sample inference for fixed effects"; the methods SAS PROC MIXED calls
DDFM=BETWITHIN and DDFM=CONTAIN, which Stata cites).

- repeated (Schluchter & Elashoff 1990), two-level models: the residual DF
  n − rank(X) split into the between-subject DF rank([X Z_s]) − rank(X) and the
  within-subject DF n − rank([X Z_s]), Z_s the subject indicators.  A coefficient
  whose column is constant within every subject (``_cons`` too) gets the between
  DF, the others the within DF.
- anova (containment): the random effects are the columns of each random-effects
  equation crossed with its groups, in the order written (top level first, an
  equation's columns in order).  An effect contains a fixed effect when every
  variable of the fixed effect is among the effect's variables — its own
  variable and the grouping variables of its level (``_cons`` has none, so every
  effect contains it).  The DF is the smallest rank contribution
  rank([X Z_1 … Z_k]) − rank([X Z_1 … Z_k−1]) of the effects that contain the
  fixed effect, or n − rank([X Z]) when none does.
"""
from __future__ import annotations

import re

import numpy as np

from .small_sample import MAX_N   # anova stacks the random-effects design densely

_TOL = 1e-8    # singular values below this (columns scaled to unit length) count as 0


def repeated_df(res) -> np.ndarray:
    """Between- or within-subject DF of each coefficient (two-level models only)."""
    design = res.design
    keys = {lvl.group for lvl in design.spec.levels}
    if len(keys) != 1:
        raise ValueError("dfmethod(repeated) is available only for two-level models (one grouping level), as Stata")
    (key,) = keys
    if not key:
        raise ValueError("dfmethod(repeated) needs subjects: its level cannot be _all")
    refs = _subjects(design, key)
    g = int(refs.max()) + 1
    X = design.X
    within = X - _group_means(X, refs, g)[refs]
    between = np.abs(within).max(axis=0) <= 1e-10 * (1 + np.abs(X).max(axis=0))
    rank_xz = g + _rank(within[:, ~between])   # rank([X Z_s]) = #subjects + rank(X centred within subjects)
    p = _rank(X)
    return np.where(between, rank_xz - p, design.n - rank_xz).astype(float)


def anova_df(res) -> np.ndarray:
    """Containment DF of each coefficient."""
    design = res.design
    if design.n > MAX_N:
        raise ValueError(f"dfmethod(anova) uses dense {design.n}-row design matrices; available for n ≤ {MAX_N}")
    effects = [(set(eq.group_key) | _variables(name), _effect_columns(eq, c))
               for eq in design.equations for c, name in enumerate(eq.names)]
    steps = _rank_steps([design.X] + [cols for _, cols in effects])
    residual = design.n - sum(steps)
    df = []
    for name in res.fixed.names:
        need = _variables(name)
        contributions = [step for (vars_, _), step in zip(effects, steps[1:]) if need <= vars_]
        df.append(min(contributions) if contributions else residual)
    return np.asarray(df, dtype=float)


def _variables(name: str) -> set[str]:
    """Data variables of a Stata column name: ``2.drug`` → {drug}, ``1.a#c.x`` → {a, x},
    ``R.plate`` → {plate}, ``_cons`` → {}."""
    if name == "_cons":
        return set()
    return {re.sub(r"^[^.]*\.", "", part) for part in name.split("#")}


def _effect_columns(eq, c: int) -> np.ndarray:
    """n × groups design of column ``c`` of an equation: z_c times the group indicators."""
    out = np.zeros((len(eq.refs), len(eq.groups)))
    out[np.arange(len(eq.refs)), eq.refs] = eq.z[:, c]
    return out


def _rank_steps(blocks: list[np.ndarray]) -> list[int]:
    """rank([B_1 … B_k]) − rank([B_1 … B_k−1]) for each k, by projecting each block on
    the orthogonal complement of the earlier ones (twice, for orthogonality)."""
    Q = np.empty((blocks[0].shape[0], 0))
    steps = []
    for B in blocks:
        norms = np.linalg.norm(B, axis=0)
        R = B[:, norms > 0] / norms[norms > 0]
        for _ in range(2):
            R = R - Q @ (Q.T @ R)
        if not R.shape[1]:
            steps.append(0)
            continue
        U, s, _ = np.linalg.svd(R, full_matrices=False)
        r = int(np.sum(s > _TOL))
        Q = np.hstack([Q, U[:, :r]])
        steps.append(r)
    return steps


def _rank(A: np.ndarray) -> int:
    return _rank_steps([A])[0]


def _group_means(X: np.ndarray, refs: np.ndarray, g: int) -> np.ndarray:
    counts = np.bincount(refs, minlength=g)
    return np.stack([np.bincount(refs, weights=col, minlength=g) for col in X.T], axis=1) / counts[:, None]


def _subjects(design, key: tuple[str, ...]) -> np.ndarray:
    """Subject code of each row: the groups of the level's equation, or of its residual structure."""
    for eq in design.equations:
        if eq.group_key == key:
            return eq.refs
    return design.residual.groups
