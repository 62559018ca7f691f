"""Pearson, deviance and Anscombe residuals of a GLMM, per family.

With μ the (conditional) mean of y and V(μ) the family's variance function
(unscaled: the dispersion is not divided out, as Stata's ``glm`` residuals;
McCullagh & Nelder 1989, §2.4; [R] glm, Methods and formulas):

=================  =============  ==================================================
family             V(μ)           deviance contribution dᵢ
=================  =============  ==================================================
bernoulli          μ(1 − μ)       −2 ln μ (y = 1), −2 ln(1 − μ) (y = 0)
binomial (n)       μ(1 − μ/n)     2{y ln(y/μ) + (n − y) ln[(n − y)/(n − μ)]}
poisson            μ              2{y ln(y/μ) − (y − μ)}
nbinomial mean     μ + αμ²        2{y ln(y/μ) − (y + 1/α) ln[(1 + αy)/(1 + αμ)]}
gamma              μ²             2{−ln(y/μ) + (y − μ)/μ}
gaussian           1              (y − μ)²
=================  =============  ==================================================

Pearson: (y − μ)/sqrt V(μ).  Deviance: sign(y − μ) sqrt dᵢ.  Anscombe:
(A(y) − A(μ))/V(μ)^{1/6} with A(y) = ∫₀ʸ V(t)^{−1/3} dt, which is
(3/2) y^{2/3} ₂F₁(1/3, 2/3; 5/3; y/n) for the binomial (Euler's integral; the
Bernoulli is n = 1), (3/2) y^{2/3} for the Poisson, 3 y^{1/3} for the gamma,
y for the Gaussian, and for the negative binomial the same integral in closed
form, A(y) = (3/2) y^{2/3} ₂F₁(1/3, 2/3; 5/3; −αy).
"""
from __future__ import annotations

import numpy as np
from scipy import special

from ..spec.errors import SpecError

KINDS = ("pearson", "deviance", "anscombe")


def residual(kind: str, fam, y: np.ndarray, mu: np.ndarray, xi: np.ndarray, trials=None) -> np.ndarray:
    """Residuals of ``kind`` for responses y with conditional means μ."""
    name = fam.name
    if name == "ordinal":
        raise SpecError(f"{kind} residuals are not defined for an ordinal response (as in Stata)")
    if name == "nbinomial" and fam.dispersion != "mean" and kind != "pearson":
        raise SpecError(f"{kind} residuals are available for nbinomial mean dispersion only")
    n = np.ones_like(mu) if name == "bernoulli" else trials
    alpha = float(np.exp(xi[0])) if name == "nbinomial" else None
    V = _variance(name, mu, n, alpha, fam)
    if kind == "pearson":
        return (y - mu) / np.sqrt(V)
    if kind == "deviance":
        return np.sign(y - mu) * np.sqrt(np.maximum(_deviance(name, y, mu, n, alpha), 0.0))
    return (_anscombe_a(name, y, n, alpha) - _anscombe_a(name, mu, n, alpha)) / V ** (1 / 6)


def _variance(name, mu, n, alpha, fam):
    if name in ("bernoulli", "binomial"):
        return mu * (1 - mu / n)
    if name == "poisson":
        return mu
    if name == "nbinomial":
        return mu + alpha * mu ** 2 if fam.dispersion == "mean" else mu * (1 + alpha)
    if name == "gamma":
        return mu ** 2
    return np.ones_like(mu)


def _deviance(name, y, mu, n, alpha):
    if name in ("bernoulli", "binomial"):
        return 2 * (special.xlogy(y, y / mu) + special.xlogy(n - y, (n - y) / (n - mu)))
    if name == "poisson":
        return 2 * (special.xlogy(y, y / mu) - (y - mu))
    if name == "nbinomial":
        return 2 * (special.xlogy(y, y / mu) - (y + 1 / alpha) * np.log((1 + alpha * y) / (1 + alpha * mu)))
    if name == "gamma":
        return 2 * (-np.log(y / mu) + (y - mu) / mu)
    return (y - mu) ** 2


def _anscombe_a(name, v, n, alpha):
    """A(v) = ∫₀ᵛ V(t)^{−1/3} dt."""
    if name in ("bernoulli", "binomial"):
        return 1.5 * v ** (2 / 3) * special.hyp2f1(1 / 3, 2 / 3, 5 / 3, v / n)
    if name == "poisson":
        return 1.5 * v ** (2 / 3)
    if name == "nbinomial":
        return 1.5 * v ** (2 / 3) * special.hyp2f1(1 / 3, 2 / 3, 5 / 3, -alpha * v)
    if name == "gamma":
        return 3 * v ** (1 / 3)
    return v
