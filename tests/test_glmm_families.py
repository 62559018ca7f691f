"""GLMM families: full log densities against scipy.stats, derivatives against differences."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from multilevel.glmm.families import Binomial, Gamma, Gaussian, NegBinomial, Ordinal, Poisson, make_family
from multilevel.spec import DataError, SpecError

RNG = np.random.default_rng(1)
ETA = np.linspace(-4, 3, 15)


def _expit(x):
    return special.expit(x)


CDF = {"logit": _expit, "probit": special.ndtr, "cloglog": lambda x: -np.expm1(-np.exp(x))}


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_bernoulli_loglik(link):
    y = (RNG.random(len(ETA)) < 0.5).astype(float)
    fam = Binomial(link)
    fam.check(y)
    ref = stats.bernoulli.logpmf(y, CDF[link](ETA))
    # scipy forms log(1 − p) from p, which loses digits when p is near 1 (cloglog at η = 3)
    assert np.allclose(fam.loglik(y, ETA), ref, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_binomial_loglik_includes_the_binomial_coefficient(link):
    n = RNG.integers(1, 20, len(ETA)).astype(float)
    y = np.floor(RNG.random(len(ETA)) * (n + 1))
    fam = Binomial(link, trials=n)
    fam.check(y)
    ref = stats.binom.logpmf(y, n, CDF[link](ETA))
    assert np.allclose(fam.loglik(y, ETA), ref, rtol=1e-8, atol=1e-11)


def test_poisson_loglik():
    y = RNG.poisson(3.0, len(ETA)).astype(float)
    assert np.allclose(Poisson().loglik(y, ETA), stats.poisson.logpmf(y, np.exp(ETA)), rtol=1e-12)


@pytest.mark.parametrize("dispersion", ["mean", "constant"])
def test_negative_binomial_loglik(dispersion):
    y = RNG.poisson(3.0, len(ETA)).astype(float)
    lnalpha = -0.7
    a, mu = np.exp(lnalpha), np.exp(ETA)
    if dispersion == "mean":     # NB2: size 1/α, Var = μ(1 + αμ)
        ref = stats.nbinom.logpmf(y, 1 / a, 1 / (1 + a * mu))
    else:                        # NB1: size μ/δ, Var = μ(1 + δ)
        ref = stats.nbinom.logpmf(y, mu / a, 1 / (1 + a))
    fam = NegBinomial("log", dispersion)
    assert np.allclose(fam.loglik(y, ETA, [lnalpha]), ref, rtol=1e-10)


def test_gamma_loglik():
    y = RNG.gamma(2.0, 1.0, len(ETA))
    logs = -0.4
    s, mu = np.exp(logs), np.exp(ETA)
    ref = stats.gamma.logpdf(y, a=1 / s, scale=s * mu)
    assert np.allclose(Gamma().loglik(y, ETA, [logs]), ref, rtol=1e-11)


def test_gaussian_loglik():
    y = RNG.normal(size=len(ETA))
    assert np.allclose(Gaussian().loglik(y, ETA, [0.3]), stats.norm.logpdf(y, ETA, np.exp(0.3)), rtol=1e-12)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_ordinal_probabilities(link):
    cuts = np.array([-1.0, 0.5, 2.0])
    fam = Ordinal(link, levels=np.arange(4))
    F = CDF[link]
    for k in range(4):
        y = np.full(len(ETA), float(k))
        upper = F(cuts[k] - ETA) if k < 3 else 1.0
        lower = F(cuts[k - 1] - ETA) if k > 0 else 0.0
        assert np.allclose(np.exp(fam.loglik(y, ETA, cuts)), upper - lower, rtol=1e-10, atol=1e-14)


def test_ordinal_cutpoint_metric_round_trip():
    fam = Ordinal("logit", levels=np.arange(5))
    cuts = np.array([-1.6, 1.5, 4.2, 6.1])
    assert np.allclose(fam.from_opt(fam.to_opt(cuts)), cuts)


FAMILIES = [
    (Binomial("logit"), lambda: (RNG.random(len(ETA)) < 0.5).astype(float), ()),
    (Binomial("probit"), lambda: (RNG.random(len(ETA)) < 0.5).astype(float), ()),
    (Binomial("cloglog"), lambda: (RNG.random(len(ETA)) < 0.5).astype(float), ()),
    (Poisson(), lambda: RNG.poisson(2.0, len(ETA)).astype(float), ()),
    (NegBinomial("log", "mean"), lambda: RNG.poisson(2.0, len(ETA)).astype(float), (-0.5,)),
    (NegBinomial("log", "constant"), lambda: RNG.poisson(2.0, len(ETA)).astype(float), (-0.5,)),
    (Gamma(), lambda: RNG.gamma(2.0, 1.0, len(ETA)), (-0.3,)),
    (Ordinal("logit", levels=np.arange(4)), lambda: RNG.integers(0, 4, len(ETA)).astype(float), (-1, 0.5, 2)),
    (Ordinal("probit", levels=np.arange(4)), lambda: RNG.integers(0, 4, len(ETA)).astype(float), (-1, 0.5, 2)),
]


@pytest.mark.parametrize("fam,draw,xi", FAMILIES, ids=lambda v: getattr(v, "name", "") + getattr(v, "link", ""))
def test_derivatives_match_differences(fam, draw, xi):
    y = draw()
    ll, d1, d2 = fam.derivs(y, ETA, xi)
    h = 1e-5
    up, down = fam.loglik(y, ETA + h, xi), fam.loglik(y, ETA - h, xi)
    assert np.allclose(d1, (up - down) / (2 * h), rtol=1e-6, atol=1e-7)
    assert np.allclose(d2, (up - 2 * ll + down) / h ** 2, rtol=1e-4, atol=1e-4)


def test_extreme_linear_predictors_stay_finite():
    y = np.array([0.0, 1.0, 0.0, 1.0])
    eta = np.array([-40.0, -40.0, 40.0, 40.0])
    for link in ("logit", "probit", "cloglog"):
        ll, d1, d2 = Binomial(link).derivs(y, eta)
        assert np.all(np.isfinite(d1)) and np.all(np.isfinite(d2))
        assert ll[0] > -1e-10 and ll[3] > -1e-10


def test_impossible_family_link_pairs():
    with pytest.raises(SpecError, match="family\\(poisson\\) cannot be combined with link\\(logit\\)"):
        make_family("poisson", "logit")
    with pytest.raises(SpecError, match="allowed links: logit, probit, cloglog"):
        make_family("ordinal", "log")
    with pytest.raises(SpecError, match="unknown family"):
        make_family("weibull")


def test_response_checks():
    with pytest.raises(DataError, match="must be 0/1"):
        Binomial("logit").check(np.array([0.0, 1.0, 2.0]), "melogit")
    with pytest.raises(DataError, match="non-negative count"):
        Poisson().check(np.array([1.0, -1.0]), "mepoisson")
    with pytest.raises(DataError, match="non-negative integer"):
        Binomial("logit", trials=np.array([2.0, 2.5])).check(np.array([1.0, 1.0]))
    with pytest.raises(DataError, match="positive dependent variable"):
        Gamma().check(np.array([1.0, 0.0]))


def test_gaussian_coefficients_on_the_response_scale_are_not_separation():
    """meglm family(gaussian): _cons 251 (Reaction in ms) is no sign of separation; the fit is
    quiet (the separation checks apply to families whose coefficients can diverge)."""
    import warnings

    import multilevel as ml
    from tests.conftest import load_data

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = ml.fit("meglm Reaction Days || Subject: Days, family(gaussian)", data=load_data("sleepstudy.csv"))
    assert res.fixed.coef[-1] > 15 and not Gaussian("identity").separable and Poisson("log").separable
