"""Within-group residual structures: Stata's ``residuals(restype, t() by())``.

Var(ε_j) = σ² R_j(φ) for each lowest-level group j, where R_j is a
correlation-type matrix built from the group's time values (Pinheiro &
Bates 2000, §5.3, nlme ``corStruct``/``varFunc``; [ME] mixed, residuals()).
σ² is profiled out, so every structure fixes one scale: the first variance
ratio is 1.

Protocol (every structure provides)
-----------------------------------
``label``                Stata's name in the output (``AR(1)``)
``n_params``             length of φ; ``start()``, ``lower``, ``upper``
``needs_time``           whether t() values enter R
``matrix(φ, t)``         R for one group with time values t (1-D array)
``report(φ, σ²)``        [(row name, value)] as Stata lists them, ``var(e)`` last
"""
from __future__ import annotations

import numpy as np

from ..spec.errors import SpecError


def _lags(t: np.ndarray) -> np.ndarray:
    return np.abs(t[:, None] - t[None, :])


class Independent:
    """``independent``: R = I (with ``by()``, one variance per level)."""

    label, n_params, needs_time = "Independent", 0, False
    lower = upper = np.zeros(0)

    def start(self) -> np.ndarray:
        return np.zeros(0)

    def matrix(self, phi: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.eye(len(t))

    def report(self, phi, sigma2):
        return [("var(e)", sigma2)]


class Exchangeable:
    """``exchangeable``: a common correlation ρ = tanh(φ₀)."""

    label, n_params, needs_time = "Exchangeable", 1, False
    lower, upper = np.array([-8.0]), np.array([8.0])

    def start(self) -> np.ndarray:
        return np.array([0.1])

    def matrix(self, phi, t):
        n, rho = len(t), np.tanh(phi[0])
        return (1 - rho) * np.eye(n) + rho

    def report(self, phi, sigma2):
        return [("var(e)", sigma2), ("cov(e)", sigma2 * np.tanh(phi[0]))]


class AR:
    """``ar p``: stationary AR(p), parametrized by partial autocorrelations tanh(φ).

    Lags are differences of the integer time variable, so gaps are allowed.
    The autocorrelations come from the Durbin–Levinson recursion.
    """

    needs_time = True

    def __init__(self, order: int):
        self.order = order
        self.n_params = order
        self.label = f"AR({order})"
        self.lower, self.upper = np.full(order, -8.0), np.full(order, 8.0)

    def start(self):
        return np.full(self.order, 0.2)

    def coefficients(self, phi: np.ndarray) -> np.ndarray:
        """AR coefficients from partial autocorrelations (Durbin–Levinson)."""
        a = np.zeros(0)
        for r in np.tanh(phi):
            a = np.concatenate([a - r * a[::-1], [r]])
        return a

    def acf(self, phi: np.ndarray, max_lag: int) -> np.ndarray:
        """ρ_0..ρ_max_lag: Yule–Walker for lags 1..p, then ρ_k = Σ_j a_j ρ_{k−j}."""
        a = self.coefficients(phi)
        p = len(a)
        M = np.eye(p)
        for k in range(1, p + 1):
            for j in range(1, p + 1):
                if k != j:
                    M[k - 1, abs(k - j) - 1] -= a[j - 1]
        out = [1.0] + list(np.linalg.solve(M, a))
        for k in range(p + 1, max_lag + 1):
            out.append(sum(a[j - 1] * out[k - j] for j in range(1, p + 1)))
        return np.array(out[:max_lag + 1])

    def matrix(self, phi, t):
        lags = _lags(t).astype(int)
        return self.acf(phi, int(lags.max()))[lags]

    def report(self, phi, sigma2):
        a = self.coefficients(phi)
        names = ["rho"] if self.order == 1 else [f"rho{i + 1}" for i in range(self.order)]
        return list(zip(names, a)) + [("var(e)", sigma2)]


class MA:
    """``ma q``: MA(q) with coefficients θ; ρ_h = (θ_h + Σθ_iθ_{i+h}) / Σθ_i² (θ₀ = 1)."""

    needs_time = True

    def __init__(self, order: int):
        self.order = order
        self.n_params = order
        self.label = f"MA({order})"
        self.lower, self.upper = np.full(order, -20.0), np.full(order, 20.0)

    def start(self):
        return np.full(self.order, 0.2)

    def matrix(self, phi, t):
        theta = np.concatenate([[1.0], phi])
        denom = theta @ theta
        acf = np.array([theta[:len(theta) - h] @ theta[h:] / denom for h in range(len(theta))])
        lags = _lags(t).astype(int)
        return np.where(lags <= self.order, acf[np.minimum(lags, self.order)], 0.0)

    def report(self, phi, sigma2):
        names = ["theta"] if self.order == 1 else [f"theta{i + 1}" for i in range(self.order)]
        return list(zip(names, phi)) + [("var(e)", sigma2)]


class Exponential:
    """``exponential``: corr = ρ^|t_i − t_k| for real-valued t, ρ = logistic(φ₀)."""

    label, n_params, needs_time = "Exponential", 1, True
    lower, upper = np.array([-15.0]), np.array([15.0])

    def start(self):
        return np.array([0.0])

    @staticmethod
    def rho(phi):
        return 1 / (1 + np.exp(-phi[0]))

    def matrix(self, phi, t):
        return self.rho(phi) ** _lags(t)

    def report(self, phi, sigma2):
        return [("rho", self.rho(phi)), ("var(e)", sigma2)]


def _inside(x: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Correlations r = x / (1 + γ(x)) of R = I + Σ_l r_l B_l from free x ∈ ℝᵏ, with
    γ(x) = −λ_min(Σ_l x_l B_l) ≥ 0 (the B_l are symmetric with zero diagonal, so the
    eigenvalues sum to 0).  R ≻ 0 iff γ(r) < 1, and γ(r) = γ(x)/(1 + γ(x)): every x gives a
    positive definite R, each ray from 0 maps onto the whole segment of it that does (the
    set is convex), and r = x + O(|x|²) near 0.  The likelihood is then finite everywhere, so
    a trust-region optimizer never meets the infinite values outside the region."""
    if not len(x):
        return x
    gamma = -np.linalg.eigvalsh(np.tensordot(x, basis, 1))[0]
    return x / (1 + max(gamma, 0.0))


class Toeplitz:
    """``toeplitz k``: correlations ρ_1..ρ_k by lag, 0 beyond lag k; ρ = :func:`_inside` of φ on
    the Toeplitz matrix over every integer time from the first t() level to the last."""

    needs_time = True

    def __init__(self, order: int, t_levels: np.ndarray):
        self.order = order
        self.n_params = order
        self.label = f"Toeplitz({order})"
        self.lower, self.upper = np.full(order, -100.0), np.full(order, 100.0)
        span = _lags(np.arange(int(t_levels.min()), int(t_levels.max()) + 1))
        self.basis = np.array([(span == lag).astype(float) for lag in range(1, order + 1)])

    def start(self):
        return np.full(self.order, 0.1)

    def correlations(self, phi: np.ndarray) -> np.ndarray:
        return _inside(phi, self.basis)

    @property
    def spans_constant(self) -> bool:
        """Every lag of the time range is free, so var(e) R + c J is again Toeplitz."""
        return self.order >= len(self.basis[0]) - 1

    def matrix(self, phi, t):
        acf = np.concatenate([[1.0], self.correlations(phi)])
        lags = _lags(t).astype(int)
        return np.where(lags <= self.order, acf[np.minimum(lags, self.order)], 0.0)

    def report(self, phi, sigma2):
        return [(f"rho{i + 1}", r) for i, r in enumerate(self.correlations(phi))] + [("var(e)", sigma2)]


class Unstructured:
    """``unstructured`` / ``banded b``: a free covariance over the levels of t().

    Relative SDs exp(φ) for levels 2..T (level 1 fixed at 1); correlations
    from a unit-diagonal-normalized LLᵀ with free sub-diagonal L (any positive
    definite correlation matrix), or, for ``banded``, :func:`_inside` of φ inside the
    band and 0 outside (positive definite for every φ).  ``correlation_only`` (menl's ``rescorrelation()``): equal
    variances, the correlations alone.
    """

    needs_time = True

    def __init__(self, levels: np.ndarray, band: int | None = None, correlation_only: bool = False):
        self.levels = np.asarray(levels)
        T = len(self.levels)
        self.band = band
        self.n_sd = 0 if correlation_only else T - 1
        self.pairs = [(i, j) for i in range(T) for j in range(i) if band is None or i - j <= band]
        self.n_params = self.n_sd + len(self.pairs)
        self.label = ("Unstructured" if band is None else f"Banded({band})") + (" corr." if correlation_only else "")
        self.lower, self.upper = np.full(self.n_params, -20.0), np.full(self.n_params, 20.0)
        self.spans_constant = self.n_sd > 0 and (band is None or band >= T - 1)
        self._rows, self._cols = (np.array(self.pairs).T if self.pairs else (np.zeros(0, int),) * 2)
        if band is not None:
            self.upper[self.n_sd:], self.lower[self.n_sd:] = 100.0, -100.0
            self.basis = np.zeros((len(self.pairs), T, T))
            for b, (i, j) in enumerate(self.pairs):
                self.basis[b, i, j] = self.basis[b, j, i] = 1.0

    def start(self):
        return np.zeros(self.n_params)

    def full(self, phi: np.ndarray) -> np.ndarray:
        T = len(self.levels)
        sd = np.exp(np.concatenate([[0.0], phi[:self.n_sd]])) if self.n_sd else np.ones(T)
        free = phi[self.n_sd:]
        if self.band is None:
            L = np.eye(T)
            L[self._rows, self._cols] = free
            S = L @ L.T
            d = np.sqrt(np.diag(S))
            corr = S / np.outer(d, d)
        else:
            corr = np.eye(T) + np.tensordot(_inside(free, self.basis), self.basis, 1)
        return corr * np.outer(sd, sd)

    def gradient(self, phi: np.ndarray, K: np.ndarray) -> np.ndarray:
        """⟨∂R/∂φ_i, K⟩ for R = :meth:`full` and a symmetric K (T × T).

        R = D C D with D = diag(sd): ∂/∂ log sd_a gives 2 Σ_j (R∘K)_aj.  With K̃ = D K D,
        the Cholesky entries L_ij of C = S/(d dᵀ), S = LLᵀ, d = √diag S, give
        2 (H L)_ij − 2 L_ij (C∘K̃)_i· 1 / S_ii with H = K̃/(d dᵀ); the banded correlations
        r = x/(1 + γ(x)) (:func:`_inside`) give ⟨∂C/∂r_b, K̃⟩ = 2 K̃_ij and, with v the
        eigenvector of λ_min, ∂γ/∂x_b = −2 v_i v_j."""
        T = len(self.levels)
        sd = np.exp(np.concatenate([[0.0], phi[:self.n_sd]])) if self.n_sd else np.ones(T)
        R = self.full(phi)
        Kt = K * np.outer(sd, sd)
        free, rows, cols = phi[self.n_sd:], self._rows, self._cols
        if self.band is None:
            L = np.eye(T)
            L[rows, cols] = free
            S = L @ L.T
            d = np.sqrt(np.diag(S))
            C = S / np.outer(d, d)
            H = Kt / np.outer(d, d)
            g_corr = 2 * (H @ L)[rows, cols] - 2 * free * (C * Kt).sum(axis=1)[rows] / np.diag(S)[rows]
        else:
            g_r = 2 * Kt[rows, cols]
            g_corr = g_r
            if len(free):
                w, V = np.linalg.eigh(np.tensordot(free, self.basis, 1))
                gamma, v = max(-w[0], 0.0), V[:, 0]
                d_gamma = -2 * v[rows] * v[cols]
                g_corr = g_r / (1 + gamma) - (g_r @ free) * d_gamma / (1 + gamma) ** 2
        g_sd = 2 * (R * K).sum(axis=1)[1:] if self.n_sd else np.zeros(0)
        return np.concatenate([g_sd, g_corr])

    def matrix(self, phi, t):
        idx = np.searchsorted(self.levels, t)
        return self.full(phi)[np.ix_(idx, idx)]

    def report(self, phi, sigma2):
        S = sigma2 * self.full(phi)
        names = [str(int(v)) if float(v).is_integer() else str(v) for v in self.levels]
        if not self.n_sd:
            return [(f"corr(e{names[j]},e{names[i]})", S[i, j] / sigma2)
                    for i, j in sorted(self.pairs, key=lambda p: (p[1], p[0]))] + [("var(e)", sigma2)]
        out = [(f"var(e{names[i]})", S[i, i]) for i in range(len(names))]
        out += [(f"cov(e{names[j]},e{names[i]})", S[i, j]) for i, j in sorted(self.pairs, key=lambda p: (p[1], p[0]))]
        return out


KINDS = ("independent", "exchangeable", "ar", "ma", "unstructured", "banded", "toeplitz", "exponential")


def make(kind: str, order: int | None, t_levels: np.ndarray | None, correlation_only: bool = False):
    """The structure for Stata's ``residuals(kind [order])`` (``correlation_only``: menl's
    ``rescorrelation(unstructured | banded #)``)."""
    if kind == "independent":
        return Independent()
    if kind == "exchangeable":
        return Exchangeable()
    if kind == "exponential":
        return Exponential()
    if kind == "toeplitz":
        return Toeplitz(order, t_levels)
    if kind in ("ar", "ma"):
        return {"ar": AR, "ma": MA}[kind](order or 1)
    if kind in ("unstructured", "banded"):
        return Unstructured(t_levels, band=(order if kind == "banded" else None), correlation_only=correlation_only)
    raise SpecError(f"unknown residual structure '{kind}' (choose one of {', '.join(KINDS)})")


# --- variance functions: Var(e_ij) = σ² g²(δ, v_ij) --------------------------------------
class VarianceFunction:
    """Stata menl's ``resvariance()``: Var(e_ij) = σ² g²(δ, v_ij) ([ME] menl, Options;
    nlme's ``varFunc`` classes, Pinheiro & Bates 2000, §5.2).

    ``v`` is a covariate or, for ``_yhat``, the fitted values of the previous PNLS step, held
    fixed in the LME step.  With ``strata()`` the parameters are distinct per stratum ``s``
    (σ is common).  ``log_sd(δ, v, s)`` is log g per row (vectorized), ``report(δ)`` the rows
    Stata prints after ``sigma2``.
    """

    names: tuple[str, ...] = ()

    def __init__(self, n_strata: int = 1):
        self.n_strata = n_strata
        self.n_params = len(self.names) * n_strata

    def start(self) -> np.ndarray:
        return np.zeros(self.n_params)

    def bounds(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full(self.n_params, -20.0), np.full(self.n_params, 20.0)

    def per_stratum(self, delta: np.ndarray) -> np.ndarray:
        """(n_strata, len(names)) parameters."""
        return np.asarray(delta).reshape(self.n_strata, len(self.names))

    def natural(self, delta: np.ndarray) -> np.ndarray:
        """The reported parameters (n_strata, len(names)) of the working ones."""
        return self.per_stratum(delta)


class Power(VarianceFunction):
    """``power v``: g = |v|^δ + c (nlme ``varConstPower``, c = exp(φ) > 0), or with
    ``noconstant`` g = |v|^δ (nlme ``varPower``)."""

    label = "Power"

    def __init__(self, n_strata: int = 1, constant: bool = True):
        self.names = ("delta", "_cons") if constant else ("delta",)
        super().__init__(n_strata)

    def bounds(self, v):
        lo, hi = super().bounds(v)
        return np.maximum(lo, -10.0), np.minimum(hi, 10.0)

    def log_sd(self, delta, v, strata):
        d = self.per_stratum(delta)[strata]
        with np.errstate(divide="ignore"):
            power = np.abs(v) ** d[:, 0]
        return np.log(power + np.exp(d[:, 1])) if d.shape[1] == 2 else np.log(power)

    def natural(self, delta):
        d = self.per_stratum(delta).copy()
        if d.shape[1] == 2:
            d[:, 1] = np.exp(d[:, 1])
        return d


class ExponentialVariance(VarianceFunction):
    """``exponential v``: g = exp(γ v) (nlme ``varExp``), with γ = φ/s for s = max|v| (so that
    |φ| ≤ 20 bounds the variance ratio and the optimizer's steps are on the scale of v)."""

    label, names = "Exponential", ("gamma",)

    def __init__(self, n_strata: int = 1, scale: float = 1.0):
        super().__init__(n_strata)
        self.scale = scale

    def log_sd(self, delta, v, strata):
        return self.per_stratum(delta)[strata, 0] / self.scale * v

    def natural(self, delta):
        return self.per_stratum(delta) / self.scale


class LinearVariance(VarianceFunction):
    """``linear v``: g = √v, no parameters (nlme ``varFixed(~v)``)."""

    label = "Linear"

    def log_sd(self, delta, v, strata):
        return 0.5 * np.log(v)


class Distinct(VarianceFunction):
    """``distinct, index(v)``: g = δ_l = σ_l/σ_1 for index level l (δ_1 = 1; nlme
    ``varIdent``); δ_l = exp(φ_l)."""

    label = "Distinct"

    def __init__(self, n_levels: int):
        self.names = ("delta",)
        self.n_strata, self.n_params = n_levels, n_levels - 1

    def log_sd(self, delta, v, strata):
        return np.concatenate([[0.0], delta])[strata]

    def natural(self, delta):
        return np.exp(np.concatenate([[0.0], delta]))[:, None]


VARIANCE_KINDS = ("identity", "linear", "power", "exponential", "distinct")
