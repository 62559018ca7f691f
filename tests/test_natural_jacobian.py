"""The closed-form Jacobian ∂(θ, σ²)/∂φ of the standard errors' map agrees with central
differences of ``from_natural``, and the information built on it with a Hessian of the log
likelihood taken from values alone (Richardson extrapolation), also away from the optimum where
the map's curvature counts."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multilevel.covariance.structures import Exchangeable, Identity, Independent, Unstructured
from multilevel.design import build
from multilevel.inference import information
from multilevel.lmm.fit import optimize
from multilevel.lmm.model import LinearMixedModel
from multilevel.spec import parse
from tests.conftest import load_data


@pytest.mark.parametrize("struct", [Unstructured(2), Unstructured(3), Exchangeable(3), Independent(3),
                                    Identity(2)], ids=lambda s: f"{s.label}{s.k}")
def test_structure_jacobian_matches_differences(struct):
    rng = np.random.default_rng(struct.k)
    phi, ln_sigma, h = 0.5 * rng.normal(size=struct.n_natural), 0.3, 1e-6
    if isinstance(struct, Exchangeable):
        phi[1] = 0.2  # tanh φ₁ inside (−1/(k−1), 1), where from_sigma does not clip it

    def theta(ph, ls):
        return struct.from_sigma(struct.from_natural(ph) / np.exp(2 * ls))

    got, got_e = struct.theta_jacobian(phi, np.exp(2 * ln_sigma))
    num = np.column_stack([(theta(phi + h * e, ln_sigma) - theta(phi - h * e, ln_sigma)) / (2 * h)
                           for e in np.eye(len(phi))])
    np.testing.assert_allclose(got, num, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(got_e, (theta(phi, ln_sigma + h) - theta(phi, ln_sigma - h)) / (2 * h),
                               rtol=1e-7, atol=1e-9)


def _b4_like() -> pd.DataFrame:
    """2-level data as B4 (benchmarks/gen_data.py), small: 60 groups of 8, (1 + x1 | g)."""
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(60), 8)
    x1, x2 = rng.normal(size=len(g)), rng.normal(size=len(g))
    u = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], size=60)
    y = 1 + 0.5 * x1 - 0.3 * x2 + u[g, 0] + u[g, 1] * x1 + rng.normal(size=len(g))
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})


CASES = [("sleepstudy", "mixed Reaction Days || Subject: Days, covariance(unstructured) reml"),
         ("sleepstudy", "mixed Reaction Days || Subject: Days, covariance(unstructured)"),
         ("sleepstudy", "mixed Reaction Days || Subject: Days, covariance(exchangeable) reml"),
         ("pig", "mixed weight week || id: week, covariance(unstructured)"),
         ("b4", "mixed y x1 x2 || g: x1, covariance(unstructured)")]


def _model(dataset, command):
    data = _b4_like() if dataset == "b4" else load_data(f"{dataset}.csv")
    return LinearMixedModel(build(parse(command), data), reml=command.endswith("reml"))


@pytest.mark.parametrize("dataset,command", CASES)
def test_model_jacobian_and_information(dataset, command):
    model = _model(dataset, command)
    theta = optimize(model).final
    f = model.factor(theta)
    phi = information.to_natural(model, theta, model.sigma2(f))
    h = 1e-6
    num = np.column_stack([(np.append(*information.from_natural(model, phi + h * e))
                            - np.append(*information.from_natural(model, phi - h * e))) / (2 * h)
                           for e in np.eye(len(phi))])
    np.testing.assert_allclose(information._jacobian(model, phi), num, rtol=1e-7, atol=1e-7 * np.abs(num).max())
    away = phi + 0.05  # not a stationary point: the curvature of φ ↦ (θ, σ²) enters the Hessian
    theta_a, sigma2_a = information.from_natural(model, away)
    got = information._hessian_from_gradient(model, away, theta_a, sigma2_a, model.factor(theta_a))
    ref = information.richardson_hessian(lambda x: information.loglik_natural(model, x), away)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
