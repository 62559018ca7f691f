"""Exact second derivatives of the profiled deviance when every random-effects term is scalar.

Crossed or nested random intercepts (InstEval's students × lectures × departments, Penicillin's
plates × samples).  With Λ = Σ_t λ_t E_t (E_t selects term t's G_t effects, λ_t linear in θ_t),
Ω = J + Λ̃AΛ̃ the penalized system of log|Ω| (ML: the random effects, J = I; REML: the random and
fixed effects, J = I on the random ones), P = Ω⁻¹, T_t = tr(E_tPE_t) and F_st = ‖E_sPE_t‖²_F:
since ΛAE_t = (Ω − J)E_t/λ_t, every product of Ω's derivatives with P reduces to P and J, and

    ∂² log|Ω| / ∂λ_s∂λ_t = −[2δ_st(G_t − 3T_t) + 4F_st] / (λ_sλ_t)

(the first derivative is 2(G_t − T_t)/λ_t, :func:`.gradient._pieces_multi`).  For r², in the
b = Λu metric r² = min ‖y − Xβ − Zb‖² + Σ_t ‖b_t‖²/λ_t², so by the envelope theorem
∂r²/∂λ_t = −2U_t/λ_t with U_t = ‖u_t‖², and differentiating the solution once more,

    ∂² r² / ∂λ_s∂λ_t = 6δ_st U_t/λ_t² − 8 u_tᵀ[Ω_f⁻¹]_ts u_s / (λ_sλ_t),

Ω_f being the system of u and β (for ML too: β is profiled out of r²).  From the blocked factor,
P = [[D + ỸᵀSỸ, ·], [−SỸ, S]] with D = diag(L₁₁⁻²), Ỹ = L₂₁L₁₁⁻¹ and S = (L₂₂L₂₂ᵀ)⁻¹ over Ω's rows
(the gradient's inverse): with Z = ỸᵀS and M = ỸZ,

    F₁₁ = Σ d_g² + 2 Σ_g d_g (ZỸ)_gg + tr(M²),   F₁t = Σ_{r∈t} (SM)_rr,   F_st = ‖S_st‖²_F,

two sparse–dense products of the size of Ỹ's nonzeros times Ω's order (a fraction of the
inverse S itself).  The observed information of the standard errors then needs no differenced
gradients (each a factorization and an inverse).
"""
from __future__ import annotations

import numpy as np

from .model import Factor, LinearMixedModel, _tri_solve


def applies(model: LinearMixedModel) -> bool:
    """Several terms, each one scalar column with Λ linear in θ; no residual structure or weights."""
    return (len(model.terms) > 1 and model.residual is None and model._group_w is None
            and all(t.k == 1 and all(s.linear for s in t.structures) for t in model.terms))


def deviance_pieces(model: LinearMixedModel, f: Factor, S: np.ndarray,
                    Y=None) -> tuple[np.ndarray, np.ndarray] | None:
    """(∂² log|Ω|, ∂² r²) in θ at the factor f (module docstring); ``S``: the inverse of L₂₂L₂₂ᵀ
    over Ω's rows (symmetric when Y is given, else its lower triangle suffices), ``Y``: Ỹ (sparse,
    Ω's rows × the first term's groups).  Without Y, a cheaper Newton matrix for steps far from the
    optimum: F_st from the diagonal of P alone (F_tt ≈ Σ_g P_gg², F_st ≈ 0 for s ≠ t; P_gg of the
    first term from the Schur pattern, :meth:`.schur.SchurPattern.group_forms`; None without the
    pattern).  None when some λ_t is 0 (the formulas divide by it; the criterion is even in λ_t
    there)."""
    theta = f.theta
    lam = np.array([t.lam(theta[sl])[0, 0] for t, sl in zip(model.terms, model._theta_slices)])
    dlam = np.array([t.dlam(theta[sl])[0, 0, 0] for t, sl in zip(model.terms, model._theta_slices)])
    pattern = model.schur_pattern()
    if not np.all(np.abs(lam) > 1e-8 * max(1.0, np.abs(lam).max())) or (Y is None and pattern is None):
        return None
    d = 1.0 / f.L11[:, 0, 0] ** 2
    rest = model._rest_offsets
    n = len(model.terms)
    F = np.zeros((n, n))
    if Y is None:
        p11 = d + (lam[0] * d) ** 2 * pattern.group_forms(model.scalar_scale(model.lambdas(theta)), S)
        F[0, 0] = p11 @ p11
        for i, o in enumerate(rest, start=1):
            F[i, i] = np.sum(np.diag(S)[o] ** 2)
        ZY = p11 - d
    else:
        Yt = Y.T.tocsr()
        Z = Yt @ S.T                                          # ỸᵀS (G₁ × q); S.T: C-contiguous
        M = Y @ Z                                             # ỸỸᵀS (q × q)
        ZY = np.asarray(Yt.multiply(Z).sum(axis=1)).ravel()  # (ỸᵀSỸ)_gg
        colsq = np.einsum("cr,cr->r", M, S)                   # (SỸỸᵀS)_rr = Σ_c M_cr S_cr
        F[0, 0] = d @ d + 2 * d @ ZY + np.einsum("ij,ji->", M, M)
        for i, oi in enumerate(rest, start=1):
            F[0, i] = F[i, 0] = colsq[oi].sum()
            for j, oj in enumerate(rest[:i], start=1):
                F[i, j] = F[j, i] = np.sum(S[oi, oj] ** 2)
    T = np.array([d.sum() + ZY.sum()] + [np.trace(S[o, o]) for o in rest])
    G = np.array([t.n_groups for t in model.terms], dtype=float)
    outer = np.outer(lam, lam)
    h_det = -(2 * np.diag(G - 3 * T) + 4 * F) / outer
    h_r2 = _r2_hessian(model, f, lam) / outer
    scale = np.outer(dlam, dlam)
    return h_det * scale, h_r2 * scale


def _r2_hessian(model: LinearMixedModel, f: Factor, lam: np.ndarray) -> np.ndarray:
    """λ_sλ_t ∂²r²/∂λ_s∂λ_t = 6δ_st U_t − 8 u_tᵀ[Ω_f⁻¹]_ts u_s: one solve with the factor of the
    (u, β) system per term (the columns of B hold each term's spherical modes)."""
    x2, u1 = model.spherical(f)
    G1, q, n = len(u1), model.q_rest, len(model.terms)
    B1 = np.zeros((G1, n))
    B1[:, 0] = u1[:, 0]
    B2 = np.zeros((q + model.p, n))
    for i, off in enumerate(model._rest_offsets, start=1):
        B2[off, i] = x2[off]
    l11 = f.L11[:, 0, 0][:, None]
    LX = f.L21D[:model.p]
    W1 = B1 / l11                                              # forward: L₁₁ w₁ = b₁
    R2 = np.zeros((len(B2) + 1, n))                            # with y's row, to solve with L₂₂ itself
    R2[:q] = -(f.L21Z @ W1)
    R2[q:-1] = -(LX @ W1)
    R2[:-1] += B2
    W2 = _tri_solve(f.L22, R2)                                 # L₂₂ w₂ = b₂ − L₂₁w₁ (y's entry unused)
    W2[-1] = 0.0
    V2 = _tri_solve(f.L22, W2, transpose=True)[:-1]            # L₂₂ᵀ v₂ = w₂
    V1 = (W1 - f.L21Z.T @ V2[:q] - LX.T @ V2[q:]) / l11        # L₁₁ v₁ = w₁ − L₂₁ᵀv₂
    W = B1.T @ V1 + B2.T @ V2                                  # u_tᵀ[Ω_f⁻¹]_ts u_s
    U = np.diag(B1.T @ B1 + B2.T @ B2)
    return 6 * np.diag(U) - 8 * (W + W.T) / 2


def loglik_hessian(dd_det: np.ndarray, dd_r2: np.ndarray, d_r2: np.ndarray, r2: float, nu: float,
                   sigma2: float) -> np.ndarray:
    """∂²ℓ/∂ψ∂ψᵀ for ψ = (θ, σ²) and ℓ = −½[log|Ω| + ν log 2πσ² + r²/σ²] from the θ derivatives
    of log|Ω| (second) and r² (first and second): ∂²ℓ/∂θ² = −½(∂²log|Ω| + ∂²r²/σ²),
    ∂²ℓ/∂θ∂σ² = ½∂r²/σ⁴, ∂²ℓ/∂(σ²)² = ν/(2σ⁴) − r²/σ⁶."""
    k = len(d_r2)
    H = np.empty((k + 1, k + 1))
    H[:k, :k] = -0.5 * (dd_det + dd_r2 / sigma2)
    H[:k, k] = H[k, :k] = 0.5 * d_r2 / sigma2 ** 2
    H[k, k] = 0.5 * nu / sigma2 ** 2 - r2 / sigma2 ** 3
    return H
