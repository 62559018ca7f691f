"""Analytic gradient of the profiled deviance.

One random-effects term (group-local formulas): with M_g = ΛᵀA_gΛ + I per group (A_g = Z_gᵀZ_g), the spherical modes u_g, β̂, and
s_g = Z_gᵀ(y − Xβ̂ − Z_gΛu_g), for each θ_i with D = ∂Λ/∂θ_i:

- ∂ log|L_Z|² = 2 tr(D · Σ_g (M_g⁻¹ΛᵀA_g)ᵀ)   (from tr(M⁻¹ dM), dM = DᵀAΛ + ΛᵀAD);
- ∂ r² = −2 Σ_g s_gᵀ D u_g                      (envelope theorem on the penalized LS problem);
- ∂ log|R_X|² = −2 Σ_ab D_ab Σ_g (K_g − A_gΛN_g)_ab with B_g = ΛᵀZ_gᵀX, S = R_XR_Xᵀ,
  K_g = Z_gᵀX S⁻¹ B_gᵀ M_g⁻¹ and N_g = M_g⁻¹B_g S⁻¹B_gᵀM_g⁻¹  (REML only);

and the deviance gradient is ∂log|L_Z|² [+ ∂log|R_X|²] + ν ∂r²/r² (Bates et al. 2015, JSS
67(1) eqs. 34, 41 differentiated).  Each evaluation is O(G k² p), vectorized over groups.
Several terms (nested or crossed): :func:`_pieces_multi`, from the diagonal blocks of the
inverse penalized system.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse

from ..linalg import batched
from . import hessian, markov_gradient, scalar_term
from .model import Factor, LinearMixedModel


def available(model: LinearMixedModel) -> bool:
    """No cluster weights, and either several terms with independent residuals or one
    random-effects term with AR(1)/exponential residuals (markov_gradient) or, at the
    residuals' own level without weights or a variance function, any structure whose R_j is
    positive definite for every φ (all but ``exchangeable``; rside.ResidualModel.gradient).
    With a residual structure the θ part is analytic on the whitened cross-products."""
    if model._group_w is not None or not model.terms:
        return False
    if len(model.terms) > 1:
        return model.residual is None
    if model.residual is None or model._markov is not None:
        return True
    rd = model.design.residual   # any other structure: rows whitened group by group (rside.gradient)
    return (model.design.weights is None and rd.variance is None and rd.spec.kind != "exchangeable"
            and model.terms[0].equations[0].group_key == rd.key)


def pieces(model: LinearMixedModel, f: Factor) -> tuple[np.ndarray, np.ndarray]:
    """(∂ log|L_Z|² [+ ∂ log|R_X|² for REML], ∂ r²) with respect to the random-effects θ at the
    factor f (the cross-products are the whitened ones when there is a residual structure);
    kept with the factor (the optimizer's last gradient is the information's first)."""
    if "pieces" not in f.cache:
        if len(model.terms) > 1:
            f.cache["pieces"] = _pieces_multi(model, f)
        else:
            g_logdet, g_logx, g_r2 = _pieces_one(model, f)
            f.cache["pieces"] = g_logdet + (g_logx if model.reml else 0.0), g_r2
    return f.cache["pieces"]


def _pieces_one(model: LinearMixedModel, f: Factor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One term: (∂ log|L_Z|², ∂ log|R_X|², ∂ r²), group-local formulas of the module docstring."""
    theta = f.theta[:model.residual_slice.start]
    lam = model.terms[0].lam(theta)
    A = model.A11                                       # (G, k, k)
    p = model.p
    C = model.A21D                                      # (p+1, G, k)
    CX, Cy = C[:p].transpose(1, 2, 0), C[p]             # (G, k, p), (G, k)
    x2, u = model.spherical(f)
    beta = x2[model.q_rest:]
    G, k = A.shape[:2]
    Linv = f.l11_inverse()                              # (G, k, k)
    Minv = batched.matmul(Linv.transpose(0, 2, 1), Linv)
    AL = (A.reshape(G * k, k) @ lam).reshape(G, k, k)   # A_g Λ, one tall product
    s = Cy - (beta @ C[:p].reshape(p, G * k)).reshape(G, k) - batched.matvec(AL, u)   # Z_gᵀ r_g
    D = model.terms[0].dlam(theta)
    W = batched.sum_outer(Minv, AL)                     # Σ_g M_g⁻¹ΛᵀA_g
    g_logdet = 2 * np.einsum("iab,ba->i", D, W)
    g_r2 = -2 * np.einsum("iab,ab->i", D, s.T @ u)
    g_logx = np.zeros(len(theta))
    if model.reml and p:
        RX = f.L22[model.q_rest:-1, model.q_rest:-1]
        Sinv = np.linalg.inv(RX @ RX.T)
        B = np.tensordot(CX, lam, axes=(1, 0)).transpose(0, 2, 1)     # (G, k, p) = ΛᵀZ_gᵀX
        MB = batched.matmul(Minv, B)                                   # M⁻¹B
        MBS = (MB.reshape(G * k, p) @ Sinv).reshape(G, k, p)           # M⁻¹B S⁻¹
        K = batched.sum_outer(CX, MBS)                                 # Σ_g Z_gᵀX S⁻¹ Bᵀ M⁻¹
        ALN = batched.sum_outer(batched.matmul(AL, MB), MBS)           # Σ_g A_gΛ N_g
        g_logx = -2 * np.einsum("iab,ab->i", D, K - ALN)
    return g_logdet, g_logx, g_r2


def deviance_gradient(model: LinearMixedModel, f: Factor) -> np.ndarray:
    """∇_θ of the profiled deviance (ML or REML), residual parameters last."""
    g_det, g_r2 = pieces(model, f)
    grad = g_det + model.dof * g_r2 / f.pwrss
    if model.residual is None:
        return grad
    return np.concatenate([grad, markov_gradient.phi_gradient(model, f, model.dof / f.pwrss)])


def loglik_gradient(model: LinearMixedModel, theta: np.ndarray, sigma2: float,
                    f: Factor | None = None) -> np.ndarray:
    """∇ of ℓ(θ, σ²) = −½[log|L_Z|² (+ log|R_X|²) + Σ log|R_j| + ν log 2πσ² + r²/σ²]
    (β profiled out; residual-structure parameters after θ); ``f``: the factor at θ, if known."""
    if scalar_term.applies(model):
        _, g_det, g_r2, pwrss = scalar_term.criterion(model).pieces(theta)
    else:
        f = model.factor(theta) if f is None else f
        (g_det, g_r2), pwrss = pieces(model, f), f.pwrss
    d_theta = -0.5 * (g_det + g_r2 / sigma2)
    d_sigma2 = -0.5 * (model.dof / sigma2 - pwrss / sigma2 ** 2)
    if model.residual is not None:
        d_theta = np.concatenate([d_theta, -0.5 * markov_gradient.phi_gradient(model, f, 1 / sigma2)])
    return np.append(d_theta, d_sigma2)


def _pieces_multi(model: LinearMixedModel, f: Factor) -> tuple[np.ndarray, np.ndarray]:
    """Several terms: (∂ log|Ω|, ∂ r²) where Ω is the penalized system of the random effects
    (ML: V = ΛᵀZᵀZΛ + I) or of the random and fixed effects (REML).

    With Λ_t invertible, GΛ = I − Ω⁻¹ for G = Ω⁻¹[ΛᵀZᵀZ; XᵀZ] gives, per term t with G_t groups,
    B_t = Σ_g [Ω⁻¹]_gg and U_t = Σ_g u_g u_gᵀ (spherical modes, Λ_tᵀ Z_gᵀr = u_g):

    - ∂ log|Ω| = 2 tr((G_t I − B_t) Λ_t⁻¹ D),   ∂ r² = −2 tr(Λ_t⁻¹ D U_t),   D = ∂Λ_t/∂θ_i.

    B_t needs only the diagonal blocks of Ω⁻¹: for the other terms they are blocks of
    S = (L₂₂L₂₂ᵀ)⁻¹; for the first, Σ_g M_g⁻¹ + Σ_g Ỹ_gᵀ S Ỹ_g with Ỹ_g = L₂₁,g L₁₁,g⁻¹.  A
    scalar term at θ_t = 0 has derivative 0 (the criterion is even in θ_t); a vector term with a
    singular Λ_t is differenced.
    """
    theta = f.theta
    S = penalized_inverse(model, f)
    q = len(S)
    x2, u1 = model.spherical(f)
    k1 = f.L11.shape[1]
    Linv = f.l11_inverse()                                              # (G, k, k)
    if model.schur_pattern() is not None:
        B = [(Linv.transpose(0, 2, 1) @ Linv).sum(axis=0) + _scalar_first_trace(model, f, S)]
    else:
        Y = _first_term_columns(model, f, Linv, q)                      # Ỹ, (q, G·k)
        B = [(Linv.transpose(0, 2, 1) @ Linv).sum(axis=0)
             + np.array([[_trace_product(Y[:, a::k1], Y[:, b::k1], S) for b in range(k1)] for a in range(k1)])]
    U = [u1.T @ u1]
    for t, off in zip(model.terms[1:], model._rest_offsets):
        idx = off.start + np.arange(t.n_groups) * t.k
        B.append(np.array([[_lower(S, idx + a, idx + b).sum() for b in range(t.k)] for a in range(t.k)]))
        u = x2[off].reshape(t.n_groups, t.k)
        U.append(u.T @ u)
    g_det = np.zeros(len(theta))
    g_r2 = np.zeros(len(theta))
    for t, sl, Bt, Ut in zip(model.terms, model._theta_slices, B, U):
        lam = t.lam(theta[sl])
        diag = np.abs(np.diag(lam))
        if np.all(diag > 1e-12 * max(1.0, diag.max())):
            Dinv = np.linalg.solve(lam, np.eye(t.k))
            for j, D in enumerate(t.dlam(theta[sl])):
                LD = Dinv @ D
                g_det[sl.start + j] = 2 * np.trace((t.n_groups * np.eye(t.k) - Bt) @ LD)
                g_r2[sl.start + j] = -2 * np.trace(LD @ Ut)
        elif t.k > 1:  # a singular vector term: difference the two parts in its θ
            g_det[sl], g_r2[sl] = _differenced_parts(model, theta, sl)
    return g_det, g_r2


def penalized_inverse(model: LinearMixedModel, f: Factor) -> np.ndarray:
    """S = (L₂₂L₂₂ᵀ)⁻¹ over the rows of L₂₂ that belong to Ω (the other terms', and X's for REML):
    its lower triangle (LAPACK potri), once per factor."""
    if "inverse" not in f.cache:
        from scipy.linalg.lapack import dpotri

        q = model.q_rest + (model.p if model.reml else 0)
        S, info = dpotri(f.L22[:q, :q], lower=1)
        if info:
            raise np.linalg.LinAlgError("singular penalized system")
        f.cache["inverse"] = S
    return f.cache["inverse"]


def loglik_hessian(model: LinearMixedModel, theta: np.ndarray, sigma2: float,
                   f: Factor | None = None) -> np.ndarray | None:
    """∂²ℓ/∂ψ∂ψᵀ for ψ = (θ, σ²) in closed form where every term is scalar (one term:
    :mod:`.scalar_term`; several: :mod:`.hessian`), else None (``f``: the factor at θ, if known)."""
    if scalar_term.applies(model):
        return scalar_term.criterion(model).loglik_hessian(theta, sigma2)
    if not hessian.applies(model):
        return None
    f = model.factor(theta) if f is None else f
    second = deviance_hessian_pieces(model, f)
    if second is None:
        return None
    return hessian.loglik_hessian(*second, pieces(model, f)[1], f.pwrss, model.dof, sigma2)


def deviance_hessian(model: LinearMixedModel, f: Factor, approximate: bool = False) -> np.ndarray | None:
    """∇²_θ of the profiled deviance d = log|Ω| + ν log r² + const at the factor f, for several
    scalar terms: ∂² log|Ω| + ν(∂²r²/r² − ∂r² ∂r²ᵀ/r⁴) (None elsewhere, or where a λ_t is 0);
    ``approximate``: the cheaper Newton matrix of :func:`.hessian.deviance_pieces`."""
    if not hessian.applies(model):
        return None
    second = deviance_hessian_pieces(model, f, approximate)
    if second is None:
        return None
    g_r2 = pieces(model, f)[1]
    return second[0] + model.dof * (second[1] / f.pwrss - np.outer(g_r2, g_r2) / f.pwrss ** 2)


def deviance_hessian_pieces(model: LinearMixedModel, f: Factor,
                            approximate: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """(∂² log|Ω|, ∂² r²) in θ for several scalar terms (:func:`.hessian.deviance_pieces`), once
    per factor; None where a λ_t is 0."""
    key = "newton_matrix" if approximate else "hessian"
    if key not in f.cache:
        S = penalized_inverse(model, f)
        if approximate:
            f.cache[key] = hessian.deviance_pieces(model, f, S)
        else:
            S = S + S.T  # the whole symmetric inverse: potri leaves L₂₂'s zeros above the diagonal
            S[np.diag_indices_from(S)] *= 0.5
            Y = _first_term_columns(model, f, f.l11_inverse(), len(S))
            f.cache[key] = hessian.deviance_pieces(model, f, S, Y)
    return f.cache[key]


def _differenced_parts(model: LinearMixedModel, theta: np.ndarray, sl: slice, h: float = 1e-6):
    """Central differences of log|Ω| and r² over θ[sl]."""
    out = np.empty((2, sl.stop - sl.start))
    for j, i in enumerate(range(sl.start, sl.stop)):
        parts = []
        for sign in (1, -1):
            th = theta.copy()
            th[i] += sign * h
            fh = model.factor(th)
            parts.append((fh.log_det_z + (fh.log_det_x if model.reml else 0.0), fh.pwrss))
        out[:, j] = (np.array(parts[0]) - np.array(parts[1])) / (2 * h)
    return out[0], out[1]


def _first_term_columns(model: LinearMixedModel, f: Factor, Linv: np.ndarray, q: int):
    """Ỹ = L₂₁ blockdiag(L₁₁,g⁻¹) over the rows of Ω: (sparse rows of the other terms, dense X rows)."""
    G, k, _ = Linv.shape
    blk = model.block_diagonal(Linv)
    YZ = (f.L21Z @ blk).tocsc()
    if q == model.q_rest:
        return YZ
    YX = np.einsum("pga,gab->pgb", f.L21D[:model.p].reshape(model.p, G, k), Linv).reshape(model.p, G * k)
    return sparse.vstack([YZ, sparse.csc_matrix(YX)]).tocsc()


def _scalar_first_trace(model: LinearMixedModel, f: Factor, S: np.ndarray) -> float:
    """Σ_g Ỹ_gᵀ S Ỹ_g = tr(S ỸỸᵀ) when every term is scalar: Ỹ = Λ̃ A₂ diag(λ₁/L₁₁,g²) over the
    rows of Ω, so ỸỸᵀ is on the Schur pattern (:mod:`.schur`) with w = λ₁²/L₁₁⁴."""
    lams = model.lambdas(f.theta)
    return model.schur_pattern().trace(lams[0][0, 0] ** 2 / f.L11[:, 0, 0] ** 4, model.scalar_scale(lams), S)


def _trace_product(Ya, Yb, S: np.ndarray) -> float:
    """tr(S Ya Ybᵀ) = Σ (Ya Ybᵀ ∘ S) over the nonzeros of the sparse product (S: lower triangle)."""
    K = (Ya @ Yb.T).tocoo()
    return float(np.dot(K.data, _lower(S, K.row, K.col)))


def _lower(S: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Entries of a symmetric matrix of which only the lower triangle is stored (LAPACK potri)."""
    return S[np.maximum(rows, cols), np.minimum(rows, cols)]
