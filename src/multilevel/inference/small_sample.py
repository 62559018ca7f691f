"""Small-sample inference for the fixed effects: Satterthwaite and Kenward–Roger DF.

Both work with the marginal covariance V = Σ_k σ_k V_k written linearly in
the covariance parameters σ_k (the entries of each random-effects Σ and the
residual variance), with dense n×n matrices, so they are meant for the small
samples they are designed for (n ≤ :data:`MAX_N`).

- Satterthwaite (Fai & Cornelius 1996; Kuznetsova et al. 2017, lmerTest):
  ν_i = 2 Φ_ii² / (∇Φ_iiᵀ W ∇Φ_ii), ∂Φ/∂σ_k = Φ XᵀV⁻¹V_kV⁻¹X Φ, with W the
  inverse expected (``eim``, Stata's default) or observed (``oim``) REML
  information.
- Kenward & Roger (1997), as pbkrtest (Halekoh & Højsgaard 2014): the
  adjusted covariance Φ_A = Φ + 2Φ[Σ W_ij (Q_ij − P_iΦP_j)]Φ and the DF of
  each coefficient (ℓ = 1) from the moment matching of the approximate F.

``apply_dfmethod`` and ``ftest`` also serve the DF that need no variance
estimates — residual, repeated and anova (ranks of the design, :mod:`.design_df`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_N = 4000
AUTO_N = 1000  # to_dict() of a REML fit reports all DF when n is at most this


@dataclass(frozen=True)
class DenseModel:
    """V_k, V and the pieces the DF methods share, at the REML estimates."""

    X: np.ndarray
    y: np.ndarray
    Vk: list[np.ndarray]
    Vinv: np.ndarray
    Phi: np.ndarray       # (XᵀV⁻¹X)⁻¹
    P: np.ndarray         # V⁻¹ − V⁻¹XΦXᵀV⁻¹


def dense_model(res) -> DenseModel:
    """Build V = Σ σ_k V_k from a fitted result (independent residuals only)."""
    design = res.design
    n = design.n
    if n > MAX_N:
        raise ValueError(f"small-sample DF use dense {n}×{n} matrices; available for n ≤ {MAX_N}")
    if res.residual_rows:
        raise ValueError("small-sample DF are not available with residuals() structures")
    Vk, sigmas = [], []
    for eq, e in zip(design.equations, res.equations):
        same = eq.refs[:, None] == eq.refs[None, :]
        for basis, value in _linear_basis(e):
            Vk.append(((eq.z @ basis) @ eq.z.T) * same)
            sigmas.append(value)
    Vk.append(np.eye(n))
    sigmas.append(res.residual_var)
    V = sum(s * M for s, M in zip(sigmas, Vk))
    Vinv = np.linalg.inv(V)
    X = design.X
    Phi = np.linalg.inv(X.T @ Vinv @ X)
    VX = Vinv @ X
    P = Vinv - VX @ Phi @ VX.T
    return DenseModel(X, design.y, Vk, Vinv, Phi, P)


def _linear_basis(e) -> list[tuple[np.ndarray, float]]:
    """(G_k, σ_k) with Σ = Σ_k σ_k G_k for one random-effects equation."""
    k = len(e.names)
    if e.structure == "Identity":
        return [(np.eye(k), e.cov[0, 0])]
    if e.structure == "Independent":
        return [(np.diag(np.eye(k)[i]), e.cov[i, i]) for i in range(k)]
    if e.structure == "Exchangeable":
        return [(np.eye(k), e.cov[0, 0]), (np.ones((k, k)) - np.eye(k), e.cov[0, 1])]
    out = []
    for i in range(k):
        for j in range(i + 1):
            G = np.zeros((k, k))
            G[i, j] = G[j, i] = 1.0
            out.append((G, e.cov[i, j]))
    return out


def information(d: DenseModel, kind: str = "eim") -> np.ndarray:
    """REML information of the linear covariance parameters.

    Expected: ½ tr(P V_i P V_j).  Observed: −½ tr(P V_i P V_j) + yᵀP V_i P V_j P y.
    """
    PV = [d.P @ M for M in d.Vk]
    m = len(PV)
    info = np.empty((m, m))
    Py = d.P @ d.y
    for i in range(m):
        for j in range(i + 1):
            tr = np.einsum("ab,ba->", PV[i], PV[j])
            val = 0.5 * tr if kind == "eim" else -0.5 * tr + Py @ d.Vk[i] @ PV[j] @ Py
            info[i, j] = info[j, i] = val
    return info


def _dphi(d: DenseModel) -> list[np.ndarray]:
    """∂Φ/∂σ_k = Φ XᵀV⁻¹V_kV⁻¹X Φ."""
    VX = d.Vinv @ d.X
    return [d.Phi @ (VX.T @ M @ VX) @ d.Phi for M in d.Vk]


def satterthwaite(d: DenseModel, kind: str = "eim") -> np.ndarray:
    """Satterthwaite DF of each coefficient."""
    W = np.linalg.inv(information(d, kind))
    grads = np.array([np.diag(g) for g in _dphi(d)])   # (m, p)
    var = np.einsum("kp,kl,lp->p", grads, W, grads)
    return 2 * np.diag(d.Phi) ** 2 / var


def kenward_roger(d: DenseModel) -> tuple[np.ndarray, np.ndarray]:
    """Kenward–Roger DF and adjusted standard errors of each coefficient."""
    W = np.linalg.inv(information(d, "eim"))
    VX = d.Vinv @ d.X
    P = [-(VX.T @ M @ VX) for M in d.Vk]
    Phi_A = _adjusted(d, W, VX, P)
    p = d.Phi.shape[0]
    df = np.empty(p)
    for c in range(p):
        L = np.zeros((p, 1))
        L[c] = 1.0
        df[c] = _kr_df(L, d.Phi, Phi_A, P, W)
    return df, np.sqrt(np.diag(Phi_A))


def _adjusted(d: DenseModel, W: np.ndarray, VX: np.ndarray, P: list[np.ndarray]) -> np.ndarray:
    """Φ_A = Φ + 2Φ[Σ_ij W_ij (Q_ij − P_iΦP_j)]Φ with Q_ij = XᵀV⁻¹V_iV⁻¹V_jV⁻¹X."""
    U = np.zeros_like(d.Phi)
    for i in range(len(P)):
        for j in range(len(P)):
            Q = VX.T @ d.Vk[i] @ d.Vinv @ d.Vk[j] @ VX
            U += W[i, j] * (Q - P[i] @ d.Phi @ P[j])
    return d.Phi + 2 * d.Phi @ U @ d.Phi


def _kr_df(L: np.ndarray, Phi: np.ndarray, Phi_A: np.ndarray, P: list[np.ndarray], W: np.ndarray,
           scale: bool = False):
    """Kenward & Roger (1997) denominator DF for H0: Lᵀβ = 0 (pbkrtest's KRmodcomp);
    with ``scale``, also the F scaling λ."""
    q = L.shape[1]
    Theta = L @ np.linalg.inv(L.T @ Phi @ L) @ L.T
    TPP = [Theta @ Phi @ Pi @ Phi for Pi in P]
    m = len(P)
    A1 = sum(W[i, j] * np.trace(TPP[i]) * np.trace(TPP[j]) for i in range(m) for j in range(m))
    A2 = sum(W[i, j] * np.trace(TPP[i] @ TPP[j]) for i in range(m) for j in range(m))
    B = (A1 + 6 * A2) / (2 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    denom = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / denom, (q - g) / denom, (q + 2 - g) / denom
    E = 1 / (1 - A2 / q)
    V = (2 / q) * (1 + c1 * B) / ((1 - c2 * B) ** 2 * (1 - c3 * B))
    rho = V / (2 * E ** 2)
    m = 4 + (q + 2) / (q * rho - 1)
    return (m, m / (E * (m - 2))) if scale else m


def kenward_roger_f(d: DenseModel, beta: np.ndarray, L: np.ndarray) -> tuple[float, float]:
    """KR-scaled F statistic λF and its denominator DF for H0: Lᵀβ = 0."""
    W = np.linalg.inv(information(d, "eim"))
    VX = d.Vinv @ d.X
    P = [-(VX.T @ M @ VX) for M in d.Vk]
    Phi_A = _adjusted(d, W, VX, P)
    m, lam = _kr_df(L, d.Phi, Phi_A, P, W, scale=True)
    b = L.T @ beta
    F = float(b @ np.linalg.solve(L.T @ Phi_A @ L, b)) / L.shape[1]
    return lam * F, m


def satterthwaite_f(d: DenseModel, beta: np.ndarray, L: np.ndarray, kind: str = "eim") -> tuple[float, float]:
    """F statistic and Satterthwaite denominator DF for H0: Lᵀβ = 0 (lmerTest's contestMD)."""
    W = np.linalg.inv(information(d, kind))
    grads = _dphi(d)
    vals, vecs = np.linalg.eigh(L.T @ d.Phi @ L)
    contrasts = (L @ vecs).T                       # one row per eigen-direction
    t2 = (contrasts @ beta) ** 2 / vals
    nu = np.array([2 * (c @ d.Phi @ c) ** 2 / (np.array([c @ g @ c for g in grads]) @ W
                                              @ np.array([c @ g @ c for g in grads])) for c in contrasts])
    q = L.shape[1]
    E = np.sum(nu[nu > 2] / (nu[nu > 2] - 2))
    ddf = 2 * E / (E - q) if E > q else np.nan
    return float(t2.sum() / q), float(ddf)


def small_sample_summary(res) -> dict:
    """All DF of a small REML fit, in the conformance cases' keys."""
    d = dense_model(res)
    df_kr, se_kr = kenward_roger(d)
    return {"df_satterthwaite": satterthwaite(d, "oim").tolist(),
            "df_satterthwaite_eim": satterthwaite(d, "eim").tolist(),
            "df_kenwardroger": df_kr.tolist(), "se_kenwardroger": se_kr.tolist()}


def parse_dfmethod(text: str) -> tuple[str, str]:
    """``"satterthwaite, oim"`` -> ("satterthwaite", "oim"); Stata's names and abbreviations."""
    head, _, opt = text.partition(",")
    word = head.strip().lower()
    for name in ("residual", "repeated", "anova", "satterthwaite", "kroger"):
        if name.startswith(word) and len(word) >= 3:
            kind = opt.strip().lower()
            if kind and name not in ("satterthwaite", "kroger"):
                raise ValueError(f"dfmethod({name}) takes no options")
            if kind not in ("", "eim", "oim"):
                raise ValueError(f"dfmethod({name}, {kind}): use eim or oim")
            return name, kind or "eim"
    raise ValueError(f"unknown dfmethod '{text}' (residual, repeated, anova, satterthwaite or kroger)")


DESIGN_METHODS = ("residual", "repeated", "anova")  # DF from ranks of the design alone


def design_dfs(res, method: str) -> np.ndarray:
    """DF of each coefficient under ``residual`` (n − rank X), ``repeated`` or ``anova``."""
    from .design_df import anova_df, repeated_df

    if method == "residual":
        return np.full(len(res.fixed.names), float(res.nobs - len(res.fixed.names)))
    if not res.design.equations and not res.residual_rows:
        raise ValueError(f"model is linear regression; dfmethod({method}) needs random effects "
                         "(use dfmethod(residual)), as Stata")
    return repeated_df(res) if method == "repeated" else anova_df(res)


def design_f(res, idx: list[int]) -> tuple[float, float]:
    """Wald F = βᵀL(LᵀVL)⁻¹Lᵀβ / q for the coefficients ``idx`` and their common DF as the
    denominator DF — missing (NaN) when their DF differ, as Stata's ``test, small`` after
    dfmethod(repeated/anova)."""
    b, V = res.fixed.coef[idx], res.fixed.vcov[np.ix_(idx, idx)]
    F = float(b @ np.linalg.solve(V, b)) / len(idx)
    dfs = set(np.asarray(res.df)[idx])
    return F, dfs.pop() if len(dfs) == 1 else float("nan")


def apply_dfmethod(res, text: str):
    """Results with per-coefficient DF (and KR-adjusted covariance for ``kroger``)."""
    from dataclasses import replace

    from .results import FixedEffects
    from .tests import TestResult
    from .distributions import f_sf

    method, kind = parse_dfmethod(text)
    names = res.fixed.names
    idx = [i for i, n in enumerate(names) if n != "_cons"]
    L = np.eye(len(names))[:, idx]
    if method in DESIGN_METHODS:
        res = replace(res, df_method=method, df=tuple(float(v) for v in design_dfs(res, method)))
        if not idx:
            return replace(res, wald=TestResult(np.nan, 0, np.nan, "F", res.df[0]))
        F, ddf = design_f(res, idx)
        return replace(res, wald=TestResult(F, len(idx), f_sf(F, len(idx), ddf), "F", ddf))
    if res.method != "reml":
        raise ValueError(f"dfmethod({method}) requires REML estimation (add reml), as Stata")
    d = dense_model(res)
    fixed, wald = res.fixed, res.wald
    if method == "satterthwaite":
        df = satterthwaite(d, kind)
        if L.shape[1]:
            F, ddf = satterthwaite_f(d, res.fixed.coef, L, kind)
            wald = TestResult(F, L.shape[1], f_sf(F, L.shape[1], ddf), "F", ddf)
    else:
        df, _ = kenward_roger(d)
        W = np.linalg.inv(information(d, "eim"))
        VX = d.Vinv @ d.X
        fixed = FixedEffects(names, res.fixed.coef, _adjusted(d, W, VX, [-(VX.T @ M @ VX) for M in d.Vk]),
                             res.fixed.omitted)
        if L.shape[1]:
            F, ddf = kenward_roger_f(d, res.fixed.coef, L)
            wald = TestResult(F, L.shape[1], f_sf(F, L.shape[1], ddf), "F", ddf)
    key = {"satterthwaite": f"satterthwaite{'_eim' if kind == 'eim' else ''}", "kroger": "kenwardroger"}[method]
    return replace(res, fixed=fixed, wald=wald, df_method=key, df=tuple(float(v) for v in df))


def ftest(res, names: list[str]) -> dict:
    """F test that the named coefficients are 0 under the fit's dfmethod.

    Returns F, numerator and denominator DF and the p-value (Stata's ``test``
    after ``mixed, dfmethod()``).  Under residual, repeated and anova the
    denominator DF is the DF the coefficients share, missing (NaN, and so the
    p-value) when they differ, as Stata.
    """
    from .distributions import f_sf

    method = res.df_method
    if not method:
        raise ValueError("ftest needs a fit with dfmethod()")
    idx = [list(res.fixed.names).index(n) for n in names]
    if method in DESIGN_METHODS:
        F, ddf = design_f(res, idx)
    else:
        L = np.eye(len(res.fixed.names))[:, idx]
        d = dense_model(res)
        if method == "kenwardroger":
            F, ddf = kenward_roger_f(d, res.fixed.coef, L)
        else:
            F, ddf = satterthwaite_f(d, res.fixed.coef, L, "eim" if method.endswith("_eim") else "oim")
    return {"F": F, "ndf": len(names), "ddf": ddf, "p": f_sf(F, len(names), ddf)}
