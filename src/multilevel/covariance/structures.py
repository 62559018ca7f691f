"""Covariance structures of the random effects: parameters <-> relative factor Λ.

Each structure maps its optimizer parameters θ to the lower-triangular
relative covariance factor Λ (Σ = σ² ΛΛᵀ; Bates et al. 2015, JSS 67(1) §2.2),
and maps Σ to and from Stata's estimation metric (log standard deviations and
atanh correlations; [ME] mixed, Methods and formulas), in which Stata forms
standard errors and confidence intervals.

Protocol (every structure provides)
-----------------------------------
``k``                 number of random-effect columns
``n_params``          length of θ
``lower``             lower bounds of θ (``0`` for scale parameters)
``upper``             upper bounds of θ
``start()``           a starting θ
``to_lambda(θ)``      k×k lower-triangular Λ
``from_sigma(Σ_rel)`` θ for a relative covariance matrix (inverse of to_lambda)
``n_natural``         number of Stata-metric parameters
``natural(Σ)``        Stata-metric vector of a covariance matrix
``from_natural(φ)``   covariance matrix of a Stata-metric vector
``theta_jacobian(φ, σ²)``  (∂θ/∂φ, ∂θ/∂ln σ_e) for θ of Σ(φ)/σ² (the standard errors' map)
``label``             Stata's name (``Identity``, ``Independent``, ...)
"""
from __future__ import annotations

import numpy as np


class Identity:
    """``covariance(identity)``: Σ = s² I, one parameter."""

    linear = True  # Λ is linear in θ (∂Λ/∂θ constant)
    label = "Identity"

    def __init__(self, k: int):
        self.k = k
        self.n_params = 1
        self.n_natural = 1
        self.lower = np.array([0.0])
        self.upper = np.array([np.inf])

    def start(self) -> np.ndarray:
        return np.array([1.0])

    def to_lambda(self, theta: np.ndarray) -> np.ndarray:
        return theta[0] * np.eye(self.k)

    def from_sigma(self, sigma_rel: np.ndarray) -> np.ndarray:
        return np.array([np.sqrt(max(np.mean(np.diag(sigma_rel)), 0.0))])

    def natural(self, sigma: np.ndarray) -> np.ndarray:
        return np.array([0.5 * np.log(sigma[0, 0])])

    def from_natural(self, phi: np.ndarray) -> np.ndarray:
        return np.exp(2 * phi[0]) * np.eye(self.k)

    def theta_jacobian(self, phi: np.ndarray, sigma2: float) -> tuple[np.ndarray, np.ndarray]:
        """θ = exp(φ − ln σ_e): ∂θ/∂φ = θ, ∂θ/∂ln σ_e = −θ."""
        theta = np.exp(phi) / np.sqrt(sigma2)
        return np.diag(theta), -theta


class Independent:
    """``covariance(independent)``: Σ diagonal, one variance per column."""

    linear = True  # Λ is linear in θ (∂Λ/∂θ constant)
    label = "Independent"

    def __init__(self, k: int):
        self.k = k
        self.n_params = k
        self.n_natural = k
        self.lower = np.zeros(k)
        self.upper = np.full(k, np.inf)

    def start(self) -> np.ndarray:
        return np.ones(self.k)

    def to_lambda(self, theta: np.ndarray) -> np.ndarray:
        return np.diag(theta)

    def from_sigma(self, sigma_rel: np.ndarray) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(sigma_rel), 0.0, None))

    def natural(self, sigma: np.ndarray) -> np.ndarray:
        return 0.5 * np.log(np.diag(sigma))

    def from_natural(self, phi: np.ndarray) -> np.ndarray:
        return np.diag(np.exp(2 * phi))

    theta_jacobian = Identity.theta_jacobian


class Exchangeable:
    """``covariance(exchangeable)``: common variance s², common correlation ρ.

    θ = (s, ρ) relative to σ, with ρ ∈ [-1/(k-1), 1].
    """

    linear = False  # Λ = s·chol(R(ρ)) is not linear in θ
    label = "Exchangeable"

    def __init__(self, k: int):
        if k < 2:
            raise ValueError("covariance(exchangeable) needs at least two random-effect columns")
        self.k = k
        self.n_params = 2
        self.n_natural = 2
        self.lower = np.array([0.0, -1.0 / (k - 1) + 1e-10])
        self.upper = np.array([np.inf, 1.0 - 1e-10])

    def start(self) -> np.ndarray:
        return np.array([1.0, 0.0])

    def _corr(self, rho: float) -> np.ndarray:
        return (1 - rho) * np.eye(self.k) + rho * np.ones((self.k, self.k))

    def to_lambda(self, theta: np.ndarray) -> np.ndarray:
        return theta[0] * np.linalg.cholesky(self._corr(theta[1]))

    def from_sigma(self, sigma_rel: np.ndarray) -> np.ndarray:
        var = np.mean(np.diag(sigma_rel))
        off = (sigma_rel.sum() - np.trace(sigma_rel)) / (self.k * (self.k - 1))
        rho = np.clip(off / var if var > 0 else 0.0, self.lower[1], self.upper[1])
        return np.array([np.sqrt(max(var, 0.0)), rho])

    def natural(self, sigma: np.ndarray) -> np.ndarray:
        var = sigma[0, 0]
        return np.array([0.5 * np.log(var), np.arctanh(sigma[0, 1] / var)])

    def from_natural(self, phi: np.ndarray) -> np.ndarray:
        return np.exp(2 * phi[0]) * self._corr(np.tanh(phi[1]))

    def theta_jacobian(self, phi: np.ndarray, sigma2: float) -> tuple[np.ndarray, np.ndarray]:
        """θ = (exp(φ₀ − ln σ_e), tanh φ₁): ∂θ/∂φ = diag(s, 1 − ρ²), ∂θ/∂ln σ_e = (−s, 0)."""
        s = np.exp(phi[0]) / np.sqrt(sigma2)
        return np.diag([s, 1 - np.tanh(phi[1]) ** 2]), np.array([-s, 0.0])


class Unstructured:
    """``covariance(unstructured)``: Λ any lower-triangular matrix (lme4's θ).

    θ holds the lower triangle column by column; diagonal entries ≥ 0.
    The Stata metric is log standard deviations then atanh correlations
    (row-major over the lower triangle).
    """

    linear = True  # Λ is linear in θ (∂Λ/∂θ constant)
    label = "Unstructured"

    def __init__(self, k: int):
        self.k = k
        self.rows, self.cols = np.tril_indices(k)
        order = np.lexsort((self.rows, self.cols))  # column-major, as lme4
        self.rows, self.cols = self.rows[order], self.cols[order]
        self.n_params = len(self.rows)
        self.n_natural = self.n_params
        self.lower = np.where(self.rows == self.cols, 0.0, -np.inf)
        self.upper = np.full(self.n_params, np.inf)
        self.corr_pairs = [(i, j) for i in range(k) for j in range(i)]

    def start(self) -> np.ndarray:
        return (self.rows == self.cols).astype(float)

    def to_lambda(self, theta: np.ndarray) -> np.ndarray:
        lam = np.zeros((self.k, self.k))
        lam[self.rows, self.cols] = theta
        return lam

    def from_sigma(self, sigma_rel: np.ndarray) -> np.ndarray:
        chol = np.linalg.cholesky(sigma_rel + 1e-12 * np.eye(self.k))
        return chol[self.rows, self.cols]

    def natural(self, sigma: np.ndarray) -> np.ndarray:
        sd = np.sqrt(np.diag(sigma))
        corr = [sigma[i, j] / (sd[i] * sd[j]) for i, j in self.corr_pairs]
        return np.concatenate([np.log(sd), np.arctanh(corr)])

    def from_natural(self, phi: np.ndarray) -> np.ndarray:
        sd = np.exp(phi[:self.k])
        corr = np.eye(self.k)
        for (i, j), a in zip(self.corr_pairs, phi[self.k:]):
            corr[i, j] = corr[j, i] = np.tanh(a)
        return corr * np.outer(sd, sd)

    def theta_jacobian(self, phi: np.ndarray, sigma2: float) -> tuple[np.ndarray, np.ndarray]:
        """∂θ/∂φ by the derivative of the Cholesky factor L of Σ_rel = Σ/σ² (θ: L's lower triangle):
        dL = L Φ(L⁻¹ dΣ_rel L⁻ᵀ), Φ the lower triangle with the diagonal halved (Murray 2016,
        arXiv:1602.07527, eq. 8), with ∂Σ/∂ln s_a = E_aΣ + ΣE_a and ∂Σ_ij/∂atanh ρ_ij =
        s_is_j(1 − ρ_ij²) (both triangles); θ ∝ 1/σ_e, so ∂θ/∂ln σ_e = −θ."""
        k = self.k
        sigma = self.from_natural(phi)
        sd = np.exp(phi[:k])
        d_sigma = np.zeros((self.n_natural, k, k))
        for a in range(k):
            d_sigma[a, a, :] += sigma[a]
            d_sigma[a, :, a] += sigma[a]
        for n, ((i, j), z) in enumerate(zip(self.corr_pairs, phi[k:]), start=k):
            d_sigma[n, i, j] = d_sigma[n, j, i] = sd[i] * sd[j] * (1 - np.tanh(z) ** 2)
        L = np.linalg.cholesky(sigma / sigma2)
        Linv = np.linalg.inv(L)
        X = np.tril(Linv @ (d_sigma / sigma2) @ Linv.T)
        X[:, np.arange(k), np.arange(k)] *= 0.5
        dL = L @ X
        return dL[:, self.rows, self.cols].T, -L[self.rows, self.cols]


STRUCTURES = {
    "identity": Identity,
    "independent": Independent,
    "exchangeable": Exchangeable,
    "unstructured": Unstructured,
}


def make(name: str, k: int):
    """The structure for Stata's ``covariance(name)`` with ``k`` columns."""
    if k == 1 and name in ("exchangeable", "unstructured", "independent"):
        return Identity(1)
    return STRUCTURES[name](k)
