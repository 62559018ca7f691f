"""Conditional distributions of the GLMM response, with their links.

Every family gives, per observation, the full log density of y given the
linear predictor η (all constants included, as Stata: binomial
coefficients, −ln y!, ...) and its first two derivatives with respect to η.
The derivatives are what PIRLS and the Laplace approximation use (the
*observed* curvature, as Stata's ``intmethod(laplace)`` and glmmTMB, not
lme4's Fisher weights).

Protocol (every family provides)
--------------------------------
``name``, ``link``        Stata's names (``bernoulli``, ``logit``)
``extra_names``           ancillary parameters in Stata's metric (``lnalpha``, ``cut1``...)
``n_extra``               their number
``loglik(y, η, ξ)``       log f(y | η) per observation
``derivs(y, η, ξ)``       (log f, ∂/∂η, ∂²/∂η²) per observation
``check(y)``              raise :class:`DataError` for a response the family cannot take
``start_extra(y)``        starting ancillary parameters
``cons_start(y)``         starting ``_cons`` of the fixed-only fit (default: link of the mean)
``to_opt(ξ)``/``from_opt``  the optimizer's unconstrained metric for ξ

Links are the binary CDF links (``logit``, ``probit``, ``cloglog``: F with
stable log F, log(1−F) and derivatives) and the mean links (``identity``,
``log``: μ(η), μ′, μ″).
"""
from __future__ import annotations

import numpy as np
from scipy import special

from ..spec.errors import DataError, SpecError

# --- links ------------------------------------------------------------------------


class LogitCDF:
    """Logistic F(x) = 1/(1+e^{−x})."""

    name = "logit"

    def cdf(self, x):
        return special.expit(x)

    def sf(self, x):
        return special.expit(-x)

    def pdf(self, x):
        return special.expit(x) * special.expit(-x)

    def dpdf(self, x):
        f = special.expit(x)
        return f * (1 - f) * (1 - 2 * f)

    def ppf(self, p):
        return special.logit(p)

    def log_cdf(self, x):
        """(log F, d log F, d² log F)."""
        F, S = special.expit(x), special.expit(-x)
        return -np.logaddexp(0.0, -x), S, -F * S

    def log_sf(self, x):
        F, S = special.expit(x), special.expit(-x)
        return -np.logaddexp(0.0, x), -F, -F * S


class ProbitCDF:
    """Standard normal F = Φ."""

    name = "probit"

    def cdf(self, x):
        return special.ndtr(x)

    def sf(self, x):
        return special.ndtr(-x)

    def pdf(self, x):
        return np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)

    def dpdf(self, x):
        return -x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)

    def ppf(self, p):
        return special.ndtri(p)

    def log_cdf(self, x):
        lf = special.log_ndtr(x)
        lam = np.exp(-0.5 * x * x - 0.5 * np.log(2 * np.pi) - lf)  # inverse Mills ratio φ/Φ
        return lf, lam, -lam * (x + lam)

    def log_sf(self, x):
        lf, lam, d2 = self.log_cdf(-x)
        return lf, -lam, d2


class CloglogCDF:
    """Complementary log-log F(x) = 1 − exp(−e^x)."""

    name = "cloglog"

    def cdf(self, x):
        return -np.expm1(-np.exp(x))

    def sf(self, x):
        return np.exp(-np.exp(x))

    def pdf(self, x):
        t = np.exp(x)
        return t * np.exp(-t)

    def dpdf(self, x):
        t = np.exp(x)
        return t * np.exp(-t) * (1 - t)

    def ppf(self, p):
        return np.log(-np.log1p(-p))

    def log_cdf(self, x):
        t = np.exp(x)
        one_minus = -np.expm1(-t)                     # F, accurate for small t
        ratio = t / np.where(one_minus > 0, one_minus, 1.0)  # t/F → 1 as t → 0
        d1 = np.exp(-t) * ratio
        return np.log(one_minus), d1, d1 * (1 - ratio)

    def log_sf(self, x):
        t = np.exp(x)
        return -t, -t, -t


class IdentityLink:
    name = "identity"

    def mu(self, eta):
        return eta, np.ones_like(eta), np.zeros_like(eta)


class LogLink:
    name = "log"

    def mu(self, eta):
        m = np.exp(eta)
        return m, m, m


CDF_LINKS = {"logit": LogitCDF, "probit": ProbitCDF, "cloglog": CloglogCDF}
MEAN_LINKS = {"identity": IdentityLink, "log": LogLink}

# Stata's meglm family × link table ([ME] meglm, Options)
ALLOWED = {
    "gaussian": ("identity", "log"),
    "bernoulli": ("logit", "probit", "cloglog"),
    "binomial": ("logit", "probit", "cloglog"),
    "ordinal": ("logit", "probit", "cloglog"),
    "poisson": ("log",),
    "nbinomial": ("log",),
    "gamma": ("log",),
}
CANONICAL = {"gaussian": "identity", "bernoulli": "logit", "binomial": "logit", "ordinal": "logit",
             "poisson": "log", "nbinomial": "log", "gamma": "log"}


def _values(y: np.ndarray, limit: int = 5) -> str:
    vals = np.unique(y)
    text = ", ".join(f"{v:g}" for v in vals[:limit])
    return text + (", ..." if len(vals) > limit else "")


# --- families -------------------------------------------------------------------------


def _col(a, eta):
    """A per-observation array as a column when η holds several quadrature nodes (n × m)."""
    return a[:, None] if np.ndim(eta) == 2 and np.ndim(a) == 1 else a



class _Family:
    """Shared defaults: no ancillary parameters, identity optimizer metric."""

    extra_names: tuple[str, ...] = ()
    residual = False
    # a coefficient can diverge under (quasi-)separation: a huge estimate is a warning sign
    # (not for gaussian and gamma, whose coefficients are on the response's own scale)
    separable = True

    @property
    def n_extra(self) -> int:
        return len(self.extra_names)

    def start_extra(self, y: np.ndarray) -> np.ndarray:
        return np.zeros(self.n_extra)

    def to_opt(self, xi: np.ndarray) -> np.ndarray:
        return np.asarray(xi, dtype=float)

    def from_opt(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=float)

    def loglik(self, y, eta, xi=()):
        return self.derivs(y, eta, xi, order=0)[0]

    def cons_start(self, y: np.ndarray) -> float:
        """Start of ``_cons`` in the fixed-only fit: the link of the mean response."""
        ybar = float(np.mean(y))
        return float(np.log(max(ybar, 1e-8))) if self.link == "log" else ybar

    def check(self, y: np.ndarray, command: str = "meglm") -> None:
        pass


class Binomial(_Family):
    """Bernoulli (``trials`` None) or binomial with ``trials`` n_i and a CDF link F.

    .. math:: \\log f = \\log\\binom{n}{y} + y\\log F(η) + (n−y)\\log(1−F(η))
    """

    def __init__(self, link: str = "logit", trials: np.ndarray | None = None):
        self.cdf = CDF_LINKS[link]()
        self.link = link
        self.trials = None if trials is None else np.asarray(trials, dtype=float)
        self.name = "bernoulli" if trials is None else "binomial"
        self._const = 0.0

    def check(self, y, command="meglm"):
        if self.trials is None:
            bad = ~np.isin(y, (0.0, 1.0))
            if bad.any():
                raise DataError(f"{command}: the dependent variable must be 0/1 for a Bernoulli model; it has "
                                f"values {_values(y[bad])}. For counts of successes out of n trials use "
                                f"binomial(n) (meglm: family(binomial n)).")
            return
        n = self.trials
        if np.any(n != np.round(n)) or np.any(n < 0):
            raise DataError(f"{command}: the number of binomial trials must be a non-negative integer "
                            f"(found {_values(n[(n != np.round(n)) | (n < 0)])})")
        if np.any(y < 0) or np.any(y != np.round(y)) or np.any(y > n):
            raise DataError(f"{command}: the dependent variable must be an integer count of successes "
                            "between 0 and the number of trials")
        self._const = special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)

    def cons_start(self, y):
        share = y if self.trials is None else y / np.maximum(self.trials, 1)
        return float(self.cdf.ppf(np.clip(float(np.mean(share)), 1e-3, 1 - 1e-3)))

    def derivs(self, y, eta, xi=(), order=2):
        n = 1.0 if self.trials is None else _col(self.trials, eta)
        const = _col(self._const, eta)
        if self.link == "logit":
            return self._logit(y, np.asarray(eta, dtype=float), n, const, order)
        lf, df, d2f = self.cdf.log_cdf(eta)
        ls, ds, d2s = self.cdf.log_sf(eta)
        fail = n - y
        # 0 × (−inf) is 0: an outcome with zero count contributes nothing
        ll = np.where(y > 0, y * lf, 0.0) + np.where(fail > 0, fail * ls, 0.0) + const
        if order == 0:
            return ll, None, None
        return ll, y * df + fail * ds, y * d2f + fail * d2s


    def _logit(self, y, eta, n, const, order):
        """y η − n log(1 + e^η) and its derivatives with one exp and one log, in place where
        possible: log(1 + e^{−|η|}) has absolute error below 2e-16, enough for a sum."""
        e = np.abs(eta)
        e *= -1.0
        np.exp(e, out=e)                       # e^{−|η|} in (0, 1]
        q = e + 1.0
        ll = np.log(q)
        ll += np.maximum(eta, 0.0)             # log(1 + e^η)
        if self.trials is not None:
            ll *= n
        ll -= y * eta
        ll *= -1.0
        if self.trials is not None:
            ll += const
        if order == 0:
            return ll, None, None
        pr = np.where(eta >= 0, 1.0, e)
        pr /= q                                # F(η)
        d2 = e / q
        d2 /= q                                # F(1 − F) = e^{−|η|}/(1 + e^{−|η|})²
        if self.trials is not None:
            pr *= n
            d2 *= n
        d2 *= -1.0
        return ll, y - pr, d2


class Poisson(_Family):
    """Poisson: log f = y log μ − μ − ln y!."""

    name = "poisson"

    def __init__(self, link: str = "log"):
        self.link = link
        self.lnk = MEAN_LINKS[link]()

    def check(self, y, command="meglm"):
        if np.any(y < 0):
            raise DataError(f"{command}: the dependent variable must be a non-negative count; it has "
                            f"negative values ({_values(y[y < 0])})")

    def derivs(self, y, eta, xi=(), order=2):
        if self.link == "log":
            mu = np.exp(eta)
            ll = y * eta - mu - special.gammaln(y + 1)
            return (ll, y - mu, -mu) if order else (ll, None, None)
        mu, m1, m2 = self.lnk.mu(eta)
        ll = special.xlogy(y, mu) - mu - special.gammaln(y + 1)
        l1, l2 = y / mu - 1, -y / mu ** 2
        return ll, l1 * m1, l2 * m1 ** 2 + l1 * m2


class NegBinomial(_Family):
    """Negative binomial: mean dispersion (NB2, Var = μ(1+αμ), ``/lnalpha``) or
    constant dispersion (NB1, Var = μ(1+δ), ``/lndelta``); [ME] menbreg."""

    name = "nbinomial"

    def __init__(self, link: str = "log", dispersion: str = "mean"):
        if dispersion not in ("mean", "constant"):
            raise SpecError(f"dispersion({dispersion}) must be mean or constant")
        self.link = link
        self.lnk = MEAN_LINKS[link]()
        self.dispersion = dispersion
        self.extra_names = ("lnalpha",) if dispersion == "mean" else ("lndelta",)

    check = Poisson.check

    def derivs(self, y, eta, xi=(), order=2):
        mu, m1, m2 = self.lnk.mu(eta)
        a = float(np.exp(xi[0]))
        if self.dispersion == "mean":
            r = 1.0 / a
            ll = (special.gammaln(y + r) - special.gammaln(r) - special.gammaln(y + 1)
                  - r * np.log1p(a * mu) + special.xlogy(y, a * mu / (1 + a * mu)))
            if not order:
                return ll, None, None
            l1 = y / mu - (a * y + 1) / (1 + a * mu)
            l2 = -y / mu ** 2 + a * (a * y + 1) / (1 + a * mu) ** 2
        else:
            r = mu / a
            ll = (special.gammaln(y + r) - special.gammaln(r) - special.gammaln(y + 1)
                  - r * np.log1p(a) + y * (np.log(a) - np.log1p(a)))
            if not order:
                return ll, None, None
            l1 = (special.digamma(y + r) - special.digamma(r) - np.log1p(a)) / a
            l2 = (special.polygamma(1, y + r) - special.polygamma(1, r)) / a ** 2
        return ll, l1 * m1, l2 * m1 ** 2 + l1 * m2

    def start_extra(self, y):
        return np.array([np.log(0.5)])


class Gamma(_Family):
    """Gamma with E y = μ, Var y = s μ² (shape 1/s); ancillary ``logs`` = ln s."""

    name = "gamma"
    separable = False
    extra_names = ("logs",)

    def __init__(self, link: str = "log"):
        self.link = link
        self.lnk = MEAN_LINKS[link]()

    def check(self, y, command="meglm"):
        if np.any(y <= 0):
            raise DataError(f"{command}: family(gamma) needs a positive dependent variable; it has values "
                            f"{_values(y[y <= 0])}")

    def derivs(self, y, eta, xi=(), order=2):
        mu, m1, m2 = self.lnk.mu(eta)
        k = float(np.exp(-xi[0]))
        ll = k * np.log(k) - k * np.log(mu) + (k - 1) * np.log(y) - k * y / mu - special.gammaln(k)
        if not order:
            return ll, None, None
        l1 = k * (y / mu - 1) / mu
        l2 = k / mu ** 2 - 2 * k * y / mu ** 3
        return ll, l1 * m1, l2 * m1 ** 2 + l1 * m2

    def start_extra(self, y):
        cv2 = np.var(y) / np.mean(y) ** 2
        return np.array([np.log(max(cv2, 1e-3))])


class Gaussian(_Family):
    """Normal with variance σ²_e; ancillary ``lnsig_e`` = ln σ_e."""

    name = "gaussian"
    separable = False
    extra_names = ("lnsig_e",)
    residual = True

    def __init__(self, link: str = "identity"):
        self.link = link
        self.lnk = MEAN_LINKS[link]()

    def derivs(self, y, eta, xi=(), order=2):
        mu, m1, m2 = self.lnk.mu(eta)
        s2 = float(np.exp(2 * xi[0]))
        ll = -0.5 * np.log(2 * np.pi * s2) - 0.5 * (y - mu) ** 2 / s2
        if not order:
            return ll, None, None
        l1 = (y - mu) / s2
        return ll, l1 * m1, -m1 ** 2 / s2 + l1 * m2

    def start_extra(self, y):
        return np.array([np.log(np.std(y) + 1e-12)])


class Ordinal(_Family):
    """Cumulative-link ordinal model, Stata's parameterization:
    P(y ≤ k | η) = F(κ_k − η), no constant in η; ancillary ``cut1 … cut(K−1)``.

    ``y`` must be coded 0..K−1 (see :meth:`codes`).  The optimizer sees
    (κ₁, ln(κ₂−κ₁), ...) so the cut points stay ordered.
    """

    name = "ordinal"

    def __init__(self, link: str = "logit", levels: np.ndarray | None = None):
        self.cdf = CDF_LINKS[link]()
        self.link = link
        self.levels = np.asarray(levels if levels is not None else [], dtype=float)
        self.extra_names = tuple(f"cut{i}" for i in range(1, len(self.levels)))

    @staticmethod
    def codes(y: np.ndarray, command: str = "meologit") -> tuple[np.ndarray, np.ndarray]:
        levels = np.unique(y)
        if len(levels) < 2:
            raise DataError(f"{command}: the dependent variable has a single outcome")
        if len(levels) > 50:
            raise DataError(f"{command}: the dependent variable has {len(levels)} outcomes; "
                            "an ordinal model needs a few ordered categories")
        return np.searchsorted(levels, y).astype(float), levels

    def start_extra(self, y):
        cum = np.cumsum(np.bincount(y.astype(int), minlength=len(self.levels)))[:-1] / len(y)
        return self.cdf.ppf(np.clip(cum, 1e-4, 1 - 1e-4))

    def to_opt(self, xi):
        xi = np.asarray(xi, dtype=float)
        return np.concatenate([xi[:1], np.log(np.maximum(np.diff(xi), 1e-12))])

    def from_opt(self, z):
        z = np.asarray(z, dtype=float)
        return np.cumsum(np.concatenate([z[:1], np.exp(z[1:])]))

    def loglik(self, y, eta, xi=()):
        """log P(y | η), also for η of shape (n, m) with y of shape (n, 1)."""
        if np.ndim(eta) == 1:
            return self.derivs(y, eta, xi, order=0)[0]
        K = len(self.levels)
        cuts = np.concatenate([[-np.inf], np.asarray(xi, dtype=float), [np.inf]])
        k = y.astype(int)
        lo, hi = k == 0, k == K - 1
        a = np.where(hi, 0.0, cuts[np.minimum(k + 1, K - 1)] - eta)     # finite stand-ins where unused
        b = np.where(lo, 0.0, cuts[np.maximum(k, 1)] - eta)
        P = np.where(b > 0, self.cdf.sf(b) - self.cdf.sf(a), self.cdf.cdf(a) - self.cdf.cdf(b))
        with np.errstate(divide="ignore"):
            mid = np.log(np.maximum(P, 1e-300))
        return np.where(lo, self.cdf.log_cdf(a)[0], np.where(hi, self.cdf.log_sf(b)[0], mid))

    def derivs(self, y, eta, xi=(), order=2):
        K = len(self.levels)
        cuts = np.concatenate([[-np.inf], np.asarray(xi, dtype=float), [np.inf]])
        k = np.broadcast_to(y.astype(int), np.shape(eta))
        a = cuts[k + 1] - eta           # upper bound
        b = cuts[k] - eta               # lower bound
        ll = np.empty_like(eta)
        d1 = np.empty_like(eta)
        d2 = np.empty_like(eta)
        lo, hi = k == 0, k == K - 1
        mid = ~(lo | hi)
        if lo.any():
            l, g, h = self.cdf.log_cdf(a[lo])
            ll[lo], d1[lo], d2[lo] = l, -g, h
        if hi.any():
            l, g, h = self.cdf.log_sf(b[hi])
            ll[hi], d1[hi], d2[hi] = l, -g, h
        if mid.any():
            am, bm = a[mid], b[mid]
            upper = bm > 0              # both bounds in the upper tail: difference of survivors
            P = np.where(upper, self.cdf.sf(bm) - self.cdf.sf(am), self.cdf.cdf(am) - self.cdf.cdf(bm))
            P = np.maximum(P, 1e-300)
            g = -(self.cdf.pdf(am) - self.cdf.pdf(bm)) / P
            ll[mid] = np.log(P)
            d1[mid] = g
            d2[mid] = (self.cdf.dpdf(am) - self.cdf.dpdf(bm)) / P - g * g
        return (ll, d1, d2) if order else (ll, None, None)


class Weighted:
    """A family whose per-observation log density is multiplied by level-1 weights w_i:
    ℓ_i = w_i log f(y_i | η_i) and likewise its η-derivatives, so that every sum over
    observations (the fixed-only fit, the modes, Laplace and quadrature) is the weighted one
    (Rabe-Hesketh & Skrondal 2006, JRSS A 169, eq. 2; [ME] meglm, Methods and formulas).
    Integer frequency weights give the likelihood of the data with each row replicated.
    Everything else is the unweighted ``base`` family's.
    """

    def __init__(self, base, weights: np.ndarray):
        self.base, self.weights = base, np.asarray(weights, dtype=float)

    def __getattr__(self, name):
        return getattr(self.base, name)

    def derivs(self, y, eta, xi=(), order=2):
        w = _col(self.weights, eta)
        return tuple(None if d is None else w * d for d in self.base.derivs(y, eta, xi, order))

    def loglik(self, y, eta, xi=()):
        return _col(self.weights, eta) * self.base.loglik(y, eta, xi)


def make_family(name: str, link: str | None = None, *, trials=None, dispersion: str = "mean",
                levels=None):
    """The family object for Stata's ``family(name) link(link)``.

    Raises :class:`SpecError` for a pair outside Stata's family × link table.
    """
    if name not in ALLOWED:
        raise SpecError(f"unknown family '{name}'; choose one of {', '.join(ALLOWED)}")
    link = link or CANONICAL[name]
    if link not in ALLOWED[name]:
        raise SpecError(f"family({name}) cannot be combined with link({link}); "
                        f"allowed links: {', '.join(ALLOWED[name])}")
    if name in ("bernoulli", "binomial"):
        return Binomial(link, trials if name == "binomial" else None)
    if name == "ordinal":
        return Ordinal(link, levels)
    if name == "nbinomial":
        return NegBinomial(link, dispersion)
    return {"poisson": Poisson, "gamma": Gamma, "gaussian": Gaussian}[name](link)
