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
- gamma (generalized gamma), AFT: z = (ln t − η)/σ, γ = κ⁻², u = γ e^{κz};
  ln f = −ln σt + γ ln γ − ½ ln γ − ln Γ(γ) + γ(κz − e^{κz}), S = 1 − I(γ, u) (κ > 0), I(γ, u) (κ < 0),
  Φ(−z) (κ = 0: lognormal), I the regularized lower incomplete gamma function; ``/logs``, ``/kappa``.

Delayed entry (``_t0 > 0``, [ST] stset ``enter()``/``time0()``, multiple records per subject): a
record observed on (t₀, t] contributes its likelihood given survival to t₀, conditional on the
random effects: ln f(t)^d S(t)^{1−d} − ln S(t₀) (Stata's ``streg``, StataCorp on Statalist 2002; its
frailty models, van den Berg & Drepper, IZA DP 6031, 2011).
"""
from __future__ import annotations

import numpy as np
from scipy import special

from ..glmm.families import _col, _Family
from ..spec.errors import SpecError

DISTRIBUTIONS = ("exponential", "weibull", "lognormal", "loglogistic", "gamma")
PH_CAPABLE = ("exponential", "weibull")


class _Survival(_Family):
    """Shared: the record times t (and ln t), the entry times t₀ of delayed records, Stata's names.

    Subclasses give :meth:`record`, the log likelihood of (t, d) and its η-derivatives;
    :meth:`derivs` subtracts ln S(t₀) where t₀ > 0."""

    link = "log"

    def __init__(self, t: np.ndarray, metric: str, t0: np.ndarray | None = None):
        self.t = np.asarray(t, dtype=float)
        self.log_t = np.log(self.t)
        self.metric = metric
        late = np.zeros(len(self.t), bool) if t0 is None else np.asarray(t0, dtype=float) > 0
        self.late = np.flatnonzero(late)
        self.log_t0 = np.log(np.asarray(t0, dtype=float)[self.late]) if len(self.late) else None

    def cons_start(self, d: np.ndarray) -> float:
        """_cons of a constant-hazard (exponential) fit, ln(Σd / Σ(t − t₀)), in this metric."""
        exposure = float(np.sum(self.t)) - (float(np.sum(np.exp(self.log_t0))) if len(self.late) else 0.0)
        rate = np.log(max(float(np.sum(d)), 0.5) / exposure)
        return rate if self.metric == "ph" else -rate

    def record(self, log_t, d, eta, xi, order):
        """(ℓ, ∂ℓ/∂η, ∂²ℓ/∂η²) of records ending at ln t (a column when η has nodes), failed if d > 0."""
        raise NotImplementedError

    def derivs(self, y, eta, xi=(), order=2):
        eta = np.asarray(eta, dtype=float)
        out = self.record(_col(self.log_t, eta), y, eta, xi, order)
        if not len(self.late):
            return out
        entry = self.record(_col(self.log_t0, eta), 0.0, eta[self.late], xi, order)  # ln S(t₀)
        for a, b in zip(out, entry):     # fresh arrays of record(): changed in place
            if a is not None:
                a[self.late] -= b
        return out

    def predict(self, kind: str, eta: np.ndarray, xi) -> np.ndarray:
        """Stata's ``predict`` after ``mestreg`` at η: ``mean`` and ``median`` survival time, and for
        each record (time t, entry t₀) the ``hazard`` h(t) = f(t)/S(t) and ``surv`` S(t)/S(t₀)."""
        if kind == "hazard":
            return np.exp(self.record(self.log_t, 1.0, eta, xi, 0)[0] - self.record(self.log_t, 0.0, eta, xi, 0)[0])
        if kind == "surv":
            return np.exp(self.derivs(0.0, eta, xi, order=0)[0])
        return self.time(kind, eta, xi)

    def time(self, kind: str, eta: np.ndarray, xi) -> np.ndarray:
        """The ``mean`` or ``median`` of T given η."""
        raise NotImplementedError


class Weibull(_Survival):
    """Weibull (``shape`` None: estimated ``/ln_p``) or exponential (shape fixed at 1)."""

    def __init__(self, t, metric: str = "ph", estimate_shape: bool = True, t0=None):
        super().__init__(t, metric, t0)
        self.name = "weibull" if estimate_shape else "exponential"
        self.extra_names = ("ln_p",) if estimate_shape else ()

    def record(self, log_t, d, eta, xi, order):
        ln_p = float(xi[0]) if self.extra_names else 0.0
        p = np.exp(ln_p)
        scale = 1.0 if self.metric == "ph" else -p         # η_PH = scale × η
        eta_ph = scale * eta
        cum = np.exp(p * log_t + eta_ph)                   # t^p e^η: the cumulative hazard
        ll = d * (ln_p + (p - 1) * log_t + eta_ph) - cum
        if not order:
            return ll, None, None
        return ll, scale * (d - cum), -scale ** 2 * cum

    def time(self, kind, eta, xi):
        """S(t) = exp(−t^p e^{η_PH}): median (ln 2)^{1/p} e^{−η_PH/p}, mean Γ(1 + 1/p) e^{−η_PH/p}."""
        p = np.exp(float(xi[0])) if self.extra_names else 1.0
        scale = 1.0 if self.metric == "ph" else -p
        factor = np.log(2.0) ** (1 / p) if kind == "median" else special.gamma(1 + 1 / p)
        return factor * np.exp(-scale * eta / p)


class _LogLocationScale(_Survival):
    """ln T = η + s ε (AFT) with ε of a standard density: z = (ln t − η)/s,
    ln f(t) = ln g(z) − ln(s t), ln S(t) = ln Ḡ(z); ∂/∂η = −(·)′/s, ∂²/∂η² = (·)″/s².
    ξ = (ln s, shape parameters of g)."""

    def standard(self, z, shape):
        """(ln g, (ln g)′, (ln g)″, ln Ḡ, (ln Ḡ)′, (ln Ḡ)″) at z."""
        raise NotImplementedError

    def record(self, log_t, d, eta, xi, order):
        s = np.exp(float(xi[0]))
        z = (log_t - eta) / s
        lg, g1, g2, lsf, s1, s2 = self.standard(z, xi[1:])
        event = d > 0
        ll = np.where(event, lg - np.log(s) - log_t, lsf)
        if not order:
            return ll, None, None
        return ll, -np.where(event, g1, s1) / s, np.where(event, g2, s2) / s ** 2

    def time(self, kind, eta, xi):
        """T = e^{η + sε}: median e^{η + s m} (m the median of ε), mean e^η E e^{sε}."""
        s, shape = np.exp(float(xi[0])), xi[1:]
        if kind == "median":
            return np.exp(eta + s * self.median_standard(shape))
        return np.exp(eta + self.log_mean_factor(s, shape))

    def median_standard(self, shape) -> float:
        return 0.0                                  # ε symmetric about 0

    def log_mean_factor(self, s: float, shape) -> float:
        """ln E e^{sε}."""
        raise NotImplementedError


class Lognormal(_LogLocationScale):
    """Lognormal AFT, ``/lnsigma``: ε standard normal (λ = φ/Φ(−z), the inverse Mills ratio)."""

    name = "lognormal"
    extra_names = ("lnsigma",)

    def standard(self, z, shape=()):
        log_sf = special.log_ndtr(-z)
        mills = np.exp(-0.5 * z * z - 0.5 * np.log(2 * np.pi) - log_sf)
        return -0.5 * z * z - 0.5 * np.log(2 * np.pi), -z, -1.0, log_sf, -mills, -mills * (mills - z)

    def log_mean_factor(self, s, shape=()):
        return 0.5 * s * s


class Loglogistic(_LogLocationScale):
    """Loglogistic AFT, ``/lngamma``: ε standard logistic (σ(z) = e^z/(1+e^z))."""

    name = "loglogistic"
    extra_names = ("lngamma",)

    def standard(self, z, shape=()):
        soft, sig = np.logaddexp(0.0, z), special.expit(z)
        return z - 2 * soft, 1 - 2 * sig, -2 * sig * (1 - sig), -soft, -sig, -sig * (1 - sig)

    def log_mean_factor(self, s, shape=()):
        """E e^{sε} = πs/sin(πs), infinite for s ≥ 1."""
        return float(np.log(np.pi * s / np.sin(np.pi * s))) if s < 1 else np.inf


_EXPREL2 = 1.0 / special.factorial(np.arange(14, 1, -1))   # 1/(k+2)!, k = 12 … 0


def _half_exprel2(v):
    """h(v) = (e^v − 1 − v)/v², h(0) = ½, without cancellation near 0."""
    v = np.asarray(v, dtype=float)
    small = np.abs(v) < 0.1
    series = np.zeros_like(v)
    for c in _EXPREL2:                         # Σ v^k/(k+2)! by Horner
        series = series * v + c
    vs = np.where(small, 1.0, v)
    return np.where(small, series, (np.expm1(vs) - vs) / (vs * vs))


def _gamma_const(g: float) -> float:
    """c(γ) = γ ln γ − ½ ln γ − γ − ln Γ(γ) (→ −½ ln 2π as γ → ∞; Stirling's series for γ ≥ 30)."""
    if not np.isfinite(g):
        return -0.5 * np.log(2 * np.pi)
    if g >= 30:
        r = 1.0 / g
        return -0.5 * np.log(2 * np.pi) - r * (1 / 12 - r * r * (1 / 360 - r * r * (1 / 1260 - r * r / 1680)))
    return g * np.log(g) - 0.5 * np.log(g) - g - special.gammaln(g)


def _log_incomplete_tail(a: float, x: np.ndarray, log_prefix: np.ndarray, upper: bool) -> np.ndarray:
    """ln Q(a, x) (``upper``, x > a) or ln P(a, x) (x < a) far in the tail, where the regularized
    incomplete gamma function underflows: prefix x^a e^{−x}/Γ(a) times Legendre's continued
    fraction (Lentz) or the power series (Numerical Recipes §6.2)."""
    if upper:
        b = x + 1.0 - a
        c = np.full_like(x, 1e300)
        d = 1.0 / b
        h = d.copy()
        for i in range(1, 300):
            an = -i * (i - a)
            b = b + 2.0
            d = 1.0 / (an * d + b)
            c = b + an / c
            h = h * d * c
            if np.all(np.abs(d * c - 1.0) < 1e-16):
                break
        return log_prefix + np.log(h)
    term = np.full_like(x, 1.0 / a)
    total = term.copy()
    for n in range(1, 2000):
        term = term * x / (a + n)
        total = total + term
        if np.all(term < 1e-17 * total):
            break
    return log_prefix + np.log(total)


def _near_zero(fn, kappa: float, kappa0: float):
    """fn(κ) (a tuple of arrays) for |κ| ≥ κ₀; nearer 0 the degree-4 polynomial in κ through
    fn(0), fn(±κ₀), fn(±2κ₀) (error O(κ₀⁵)), where the incomplete gamma function of γ = κ⁻² > 40000
    loses accuracy."""
    if abs(kappa) >= kappa0:
        return fn(kappa)
    nodes = kappa0 * np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    weights = [np.prod([(kappa - b) / (a - b) for b in nodes if b != a]) for a in nodes]
    values = [fn(a) for a in nodes]
    return tuple(sum(w * v[i] for w, v in zip(weights, values)) for i in range(len(values[0])))


class GeneralizedGamma(_LogLocationScale):
    """Stata's ``distribution(gamma)``: the generalized gamma AFT model ([ST] streg, Methods and
    formulas; Prentice 1974), ``/logs`` = ln σ and ``/kappa`` = κ.  With v = κz, γ = κ⁻²:

    ln g(z) = c(γ) − z² h(v),  (ln g)′ = −z (e^v − 1)/v,  (ln g)″ = −e^v,  h(v) = (e^v − 1 − v)/v²,

    exact for every κ (κ = 0 is the lognormal; κ = 1 the Weibull with p = 1/σ).  The survivor of
    the regularized incomplete gamma function is evaluated directly for |κ| ≥ κ₀ and by
    :func:`_near_zero` below."""

    name = "gamma"
    extra_names = ("logs", "kappa")
    KAPPA0 = 5e-3

    def start_extra(self, y):
        return np.array([0.0, 1.0])

    def standard(self, z, shape):
        kappa = float(shape[0])
        lg, g1 = self._density(z, kappa)
        survivor = _near_zero(lambda k: self._survivor(z, k, *self._density(z, k)), kappa, self.KAPPA0)
        return (lg, g1, -np.exp(kappa * z)) + tuple(survivor)

    def median_standard(self, shape):
        """z with S(z) = ½: u = γe^{κz} is Gamma(γ, 1), so z = ln(u½/γ)/κ with u½ its median."""
        def median(kappa):
            if kappa == 0:
                return (0.0,)
            a = kappa ** -2
            u = special.gammainccinv(a, 0.5) if kappa > 0 else special.gammaincinv(a, 0.5)
            return (np.log(u / a) / kappa,)
        return _near_zero(median, float(shape[0]), self.KAPPA0)[0]

    def log_mean_factor(self, s, shape):
        """e^{sz} = (u/γ)^r with r = s/κ: ln E = ln Γ(γ + r) − ln Γ(γ) − r ln γ (infinite if γ + r ≤ 0);
        s²/2 at κ = 0."""
        def log_mean(kappa):
            if kappa == 0:
                return (0.5 * s * s,)
            a, r = kappa ** -2, s / kappa
            return (special.gammaln(a + r) - special.gammaln(a) - r * np.log(a) if a + r > 0 else np.inf,)
        return _near_zero(log_mean, float(shape[0]), self.KAPPA0)[0]

    @staticmethod
    def _density(z, kappa):
        """(ln g, (ln g)′) at κ."""
        v = kappa * z
        return _gamma_const(kappa ** -2 if kappa else np.inf) - z * z * _half_exprel2(v), -z * special.exprel(v)

    @staticmethod
    def _survivor(z, kappa, lg, g1):
        """(ln Ḡ, (ln Ḡ)′, (ln Ḡ)″) at κ, given ln g and (ln g)′: (ln Ḡ)′ = −λ, (ln Ḡ)″ = −λ(λ + (ln g)′)
        with λ = g/Ḡ."""
        if kappa == 0:
            lsf = special.log_ndtr(-z)
        else:
            a = kappa ** -2
            x = a * np.exp(kappa * z)
            with np.errstate(divide="ignore"):
                lsf = np.log(special.gammaincc(a, x) if kappa > 0 else special.gammainc(a, x))
            deep = ~(lsf > -700.0)
            if np.any(deep):
                prefix = lg + 0.5 * np.log(a)          # ln(x^a e^{−x}/Γ(a)) = ln g + ½ ln γ
                lsf = np.where(deep, 0.0, lsf)
                lsf[deep] = _log_incomplete_tail(a, np.broadcast_to(x, lsf.shape)[deep],
                                                 np.broadcast_to(prefix, lsf.shape)[deep], kappa > 0)
        lam = np.exp(lg - lsf)
        return lsf, -lam, -lam * (lam + g1)


def make_survival_family(distribution: str, t: np.ndarray, aft: bool, t0: np.ndarray | None = None) -> _Survival:
    """The family of ``distribution(name)`` in the PH metric, or AFT with ``time``; ``t0`` the
    entry times (0: no delayed entry)."""
    if distribution in ("lognormal", "loglogistic", "gamma"):
        cls = {"lognormal": Lognormal, "loglogistic": Loglogistic, "gamma": GeneralizedGamma}[distribution]
        return cls(t, "aft", t0)
    if distribution in PH_CAPABLE:
        return Weibull(t, "aft" if aft else "ph", estimate_shape=distribution == "weibull", t0=t0)
    raise SpecError(f"distribution({distribution}) is not implemented; choose one of {', '.join(DISTRIBUTIONS)}")
