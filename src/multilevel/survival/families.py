"""Survival distributions of ``mestreg`` as GLMM families of the linear predictor η.

Each gives, per record (time t, failure indicator d), the full log density of what was
observed — ln f(t) for a failure, ln S(t) for a censored record, with the ln t terms, as
Stata's ``streg``/``mestreg`` — and its first two derivatives in η ([ST] streg, Methods and
formulas).  ``y`` passed to the family is d; t is held by the family (as binomial trials).

- exponential, PH:  ln f = d η − t e^η;  AFT (``time``): η → −η.
- Weibull, PH:      ln f = d (ln p + (p−1) ln t + η) − t^p e^η,  ``/ln_p``;
  AFT:              η_PH = −p η.
- lognormal, AFT:   z = (ln t − η)/σ;  ln f = d (−ln σ − ln t + ln φ(z)) + (1−d) ln Φ(−z),  ``/lnsigma``.
- loglogistic, AFT: z = (ln t − η)/γ;  ln f = d (z − ln γ − ln t − 2 ln(1+e^z)) − (1−d) ln(1+e^z),
  ``/lngamma``.
"""
from __future__ import annotations

import numpy as np
from scipy import special

from ..glmm.families import _col, _Family
from ..spec.errors import SpecError

DISTRIBUTIONS = ("exponential", "weibull", "lognormal", "loglogistic")
PH_CAPABLE = ("exponential", "weibull")


class _Survival(_Family):
    """Shared: the record times t (and ln t) and Stata's names."""

    link = "log"

    def __init__(self, t: np.ndarray, metric: str):
        self.t = np.asarray(t, dtype=float)
        self.log_t = np.log(self.t)
        self.metric = metric

    def cons_start(self, d: np.ndarray) -> float:
        """_cons of a constant-hazard (exponential) fit, ln(Σd / Σt), in this metric."""
        rate = np.log(max(float(np.sum(d)), 0.5) / float(np.sum(self.t)))
        return rate if self.metric == "ph" else -rate


class Weibull(_Survival):
    """Weibull (``shape`` None: estimated ``/ln_p``) or exponential (shape fixed at 1)."""

    def __init__(self, t, metric: str = "ph", estimate_shape: bool = True):
        super().__init__(t, metric)
        self.name = "weibull" if estimate_shape else "exponential"
        self.extra_names = ("ln_p",) if estimate_shape else ()

    def derivs(self, y, eta, xi=(), order=2):
        ln_p = float(xi[0]) if self.extra_names else 0.0
        p = np.exp(ln_p)
        log_t, d = _col(self.log_t, eta), y
        scale = 1.0 if self.metric == "ph" else -p         # η_PH = scale × η
        eta_ph = scale * np.asarray(eta, dtype=float)
        cum = np.exp(p * log_t + eta_ph)                   # t^p e^η: the cumulative hazard
        ll = d * (ln_p + (p - 1) * log_t + eta_ph) - cum
        if not order:
            return ll, None, None
        return ll, scale * (d - cum), -scale ** 2 * cum


class _LogLocationScale(_Survival):
    """ln T = η + s ε (AFT) with ε of a standard density: z = (ln t − η)/s,
    ln f(t) = ln g(z) − ln(s t), ln S(t) = ln Ḡ(z); ∂/∂η = −(·)′/s, ∂²/∂η² = (·)″/s²."""

    def standard(self, z):
        """(ln g, (ln g)′, (ln g)″, ln Ḡ, (ln Ḡ)′, (ln Ḡ)″) at z."""
        raise NotImplementedError

    def derivs(self, y, eta, xi=(), order=2):
        s = np.exp(float(xi[0]))
        log_t, d = _col(self.log_t, eta), y
        z = (log_t - eta) / s
        lg, g1, g2, lsf, s1, s2 = self.standard(z)
        event = d > 0
        ll = np.where(event, lg - np.log(s) - log_t, lsf)
        if not order:
            return ll, None, None
        return ll, -np.where(event, g1, s1) / s, np.where(event, g2, s2) / s ** 2


class Lognormal(_LogLocationScale):
    """Lognormal AFT, ``/lnsigma``: ε standard normal (λ = φ/Φ(−z), the inverse Mills ratio)."""

    name = "lognormal"
    extra_names = ("lnsigma",)

    def standard(self, z):
        log_sf = special.log_ndtr(-z)
        mills = np.exp(-0.5 * z * z - 0.5 * np.log(2 * np.pi) - log_sf)
        return -0.5 * z * z - 0.5 * np.log(2 * np.pi), -z, -1.0, log_sf, -mills, -mills * (mills - z)


class Loglogistic(_LogLocationScale):
    """Loglogistic AFT, ``/lngamma``: ε standard logistic (σ(z) = e^z/(1+e^z))."""

    name = "loglogistic"
    extra_names = ("lngamma",)

    def standard(self, z):
        soft, sig = np.logaddexp(0.0, z), special.expit(z)
        return z - 2 * soft, 1 - 2 * sig, -2 * sig * (1 - sig), -soft, -sig, -sig * (1 - sig)


def make_survival_family(distribution: str, t: np.ndarray, aft: bool) -> _Survival:
    """The family of ``distribution(name)`` in the PH metric, or AFT with ``time``."""
    if distribution in ("lognormal", "loglogistic"):
        return (Lognormal if distribution == "lognormal" else Loglogistic)(t, "aft")
    if distribution in PH_CAPABLE:
        return Weibull(t, "aft" if aft else "ph", estimate_shape=distribution == "weibull")
    raise SpecError(f"distribution({distribution}) is not implemented; choose one of {', '.join(DISTRIBUTIONS)}")
