"""The O(groups) AR(1)/exponential path gives the same likelihood as whitening every group."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from multilevel.design import build
from multilevel.lmm.model import LinearMixedModel
from multilevel.spec import parse
from tests.conftest import load_data

COMMANDS = [
    ("ovary.csv", "mixed follicles sin1 cos1 || mare:, residuals(ar 1, t(time))"),
    ("ovary.csv", "mixed follicles sin1 cos1 || mare: sin1, residuals(exponential, t(time))"),
    ("orthodont.csv", "mixed distance age i.male || subject:, residuals(ar 1, t(occ) by(male))"),
    ("orthodont.csv", "mixed distance age i.male || subject:, noconstant residuals(ar 1, t(occ))"),
]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("dataset,command", COMMANDS)
def test_markov_statistics_equal_row_whitening(dataset, command, shuffle):
    data = load_data(dataset)
    # drop some rows so that time gaps of 2 and 3 occur; shuffled rows must be sorted first
    data = data.drop(index=data.index[::7]).reset_index(drop=True)
    if shuffle:
        data = data.sample(frac=1, random_state=3).reset_index(drop=True)
    design = build(parse(command), data)
    fast = LinearMixedModel(design)
    slow = LinearMixedModel(design)
    slow._markov = None
    assert fast._markov is not None and len(fast._markov.gaps) > 1
    assert (fast.residual.time_order is None) != shuffle
    rng = np.random.default_rng(0)
    for _ in range(3):
        theta = fast.theta_start() + rng.uniform(-0.3, 0.3, fast.n_theta)
        assert fast.objective(theta) == pytest.approx(slow.objective(theta), rel=1e-11)


GRADIENT_COMMANDS = COMMANDS[:3] + [  # one random-effects term
    ("ovary.csv", "mixed follicles sin1 cos1 || mare: sin1, covariance(unstructured) residuals(ar 1, t(time)) reml"),
    ("orthodont.csv", "mixed distance age i.male || subject: age, residuals(ar 1, t(occ) by(male)) reml"),
]


def _central(fun, x: np.ndarray, i: int, h: float = 1e-5) -> float:
    e = np.zeros(len(x))
    e[i] = h
    return (fun(x + e) - fun(x - e)) / (2 * h)


@pytest.mark.parametrize("dataset,command", GRADIENT_COMMANDS)
def test_analytic_gradient_equals_differences(dataset, command):
    """Deviance and log-likelihood gradients (θ and the residual φ, analytic on the Markov
    path) against central differences of the criteria themselves, with time gaps 1-3."""
    from multilevel.lmm import gradient

    data = load_data(dataset)
    data = data.drop(index=data.index[::7]).reset_index(drop=True)
    model = LinearMixedModel(build(parse(command), data), reml=command.endswith("reml"))
    assert model._markov is not None and gradient.available(model)
    rng = np.random.default_rng(1)
    theta = model.theta_start() + rng.uniform(-0.3, 0.3, model.n_theta)
    grad = gradient.deviance_gradient(model, model.factor(theta))
    sigma2 = 1.3 * model.sigma2(model.factor(theta))
    ll_grad = gradient.loglik_gradient(model, theta, sigma2)
    for i in range(model.n_theta):
        assert grad[i] == pytest.approx(_central(model.objective, theta, i), rel=1e-6, abs=1e-6)
        ll = _central(lambda t: model.loglik_at(model.factor(t), sigma2), theta, i)
        assert ll_grad[i] == pytest.approx(ll, rel=1e-6, abs=1e-6)


MARKOV_REFS = sorted((pathlib.Path(__file__).parent / "references" / "markov").glob("*.json"))


@pytest.mark.parametrize("path", MARKOV_REFS, ids=lambda p: p.stem)
def test_reml_fit_equals_nlme(path):
    """REML fits on the Markov path (analytic θ and φ gradient) against nlme's lme with corAR1
    (tests/references/markov/make.R), with and without time gaps."""
    import multilevel

    case = json.loads(path.read_text())
    data = load_data(case["dataset"])
    if case["subset"]:
        data = data.sort_values(["mare", "time"]).reset_index(drop=True)
        data = data.drop(index=data.index[::7]).reset_index(drop=True)   # as make.R
    res = multilevel.fit(case["stata"], data=data).to_dict()
    ref = case["results"]
    assert res["loglik"] == pytest.approx(ref["loglik"], abs=1e-5)
    assert res["extra"]["ar1_rho"] == pytest.approx(ref["ar1_rho"], abs=1e-4)
    assert res["residual"]["var"] == pytest.approx(ref["residual_var"], rel=1e-4)
    assert res["fixed"]["coef"] == pytest.approx([ref["coef"][n] for n in res["fixed"]["names"]], abs=1e-4)
    assert np.array(res["random"][0]["cov"]) == pytest.approx(np.array(ref["re_cov"]), rel=1e-3, abs=1e-4)
