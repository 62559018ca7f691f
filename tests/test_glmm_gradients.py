"""Analytic derivatives of the one-factor GLMM objectives against central differences.

The values themselves are checked against outside references (conformance cases,
brute-force integrals in test_glmm_quadrature.py); here the exact Laplace gradient
(through the modes, with third derivatives), the Newton matrix (profiled Hessian plus
the log-determinant's θ curvature) and the
fixed-node quadrature gradient and Hessian are checked against numerical derivatives
of those values, for families with and without ancillary parameters and for linear
and nonlinear covariance structures.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from multilevel.design import build
from multilevel.glmm.families import Ordinal, make_family
from multilevel.glmm.glm import fit_glm
from multilevel.glmm.model import GeneralizedLinearMixedModel
from multilevel.glmm.onefactor import OneFactor
from multilevel.glmm.quadrature import GroupIntegrator
from multilevel.spec import parse
from tests.conftest import load_data

SLOPES = "tests/references/glmm_slopes/glmm_slopes_sim.csv"
CASES = [
    ("melogit c_use urban age child1 child2 child3 || district:", "bangladesh.csv", ("bernoulli", "logit")),
    ("meprobit c_use urban age child1 child2 child3 || district:", "bangladesh.csv", ("bernoulli", "probit")),
    ("menbreg seizures treat lbas lbas_trt lage v4 || subject:", "epilepsy.csv", ("nbinomial", "log")),
    ("meglm y x || group:, family(gamma)", "gamma_sim.csv", ("gamma", "log")),
    ("meologit rating warm contact || judge:", "wine.csv", ("ordinal", "logit")),
    ("melogit y x || g: x, covariance(unstructured)", SLOPES, ("bernoulli", "logit")),
    ("melogit y x || g: x, covariance(exchangeable)", SLOPES, ("bernoulli", "logit")),
]


def _setup(cmd, dataset, fam):
    df = pd.read_csv(dataset) if dataset.endswith(SLOPES) else load_data(dataset)
    spec = parse(cmd)
    if fam[0] == "ordinal":
        spec = replace(spec, constant=False)
    design = build(spec, df)
    y = design.y
    if fam[0] == "ordinal":
        y, levels = Ordinal.codes(y)
        family = make_family("ordinal", fam[1], levels=levels)
    else:
        family = make_family(fam[0], fam[1])
    family.check(y)
    model = GeneralizedLinearMixedModel(design, family, y, None, "laplace", 1)
    glm = fit_glm(family, model.X, y, model.offset, design.fixed.names)
    rng = np.random.default_rng(1)
    x = np.concatenate([glm.beta, family.to_opt(glm.xi), model.theta_start() + 0.3 * rng.random(model.n_theta)])
    return model, OneFactor(model), x


def _central(f, x, h=1e-5):
    out = []
    for i in range(len(x)):
        e = np.zeros(len(x))
        e[i] = h * max(1.0, abs(x[i]))
        out.append((f(x + e) - f(x - e)) / (2 * e[i]))
    return np.array(out)


@pytest.mark.parametrize("cmd,dataset,fam", CASES, ids=[c[0].split("||")[0] + c[0].split(",")[-1] for c in CASES])
def test_laplace_gradient_and_profiled_hessian(cmd, dataset, fam):
    model, one, x = _setup(cmd, dataset, fam)
    value, grad, newton = one.laplace(x, hessian=True)
    m = one.modes_at(x)
    theta = x[model.p + model.n_extra:]
    curv = one._logdet_curvature(m, theta, model.terms[0].lam(theta))
    Hp = newton - curv
    assert value == pytest.approx(model.loglik(*model.split(x)), abs=1e-9)   # the blocked PIRLS's Laplace
    num = _central(lambda v: one.laplace(v)[0], x)
    assert np.max(np.abs(grad - num)) < 1e-6 * max(1.0, np.max(np.abs(grad)))

    def profiled(v):
        m = one.modes_at(v)
        return m.ll.sum() - 0.5 * np.sum(m.u ** 2)

    num_h = _central(lambda v: _central(profiled, v, 1e-4), x, 1e-4)
    assert np.max(np.abs(Hp - num_h)) < 1e-5 * np.max(np.abs(num_h))

    def logdet(t):      # −½ Σ log|I + ΛᵀAΛ| at the modes' A
        lam = model.terms[0].lam(t)
        return -0.5 * np.linalg.slogdet(np.eye(one.k) + np.einsum("ba,gbc,cd->gad", lam, m.A, lam))[1].sum()

    num_c = _central(lambda t: _central(logdet, t, 1e-4), theta, 1e-4)
    k = model.p + model.n_extra
    assert np.max(np.abs(curv[k:, k:] - num_c)) < 1e-5 * max(1.0, np.max(np.abs(num_c)))
    assert not np.any(curv[:k]) and not np.any(curv[:, :k])


@pytest.mark.parametrize("cmd,dataset,fam", CASES, ids=[c[0].split("||")[0] + c[0].split(",")[-1] for c in CASES])
def test_fixed_node_quadrature_derivatives(cmd, dataset, fam):
    model, one, x = _setup(cmd, dataset, fam)
    integ = GroupIntegrator(model.terms[0], 5)
    gm = one.modes_at(x)
    C, logdet = integ.root(gm.Hinv, model.terms[0].lam(x[model.p + model.n_extra:]))
    args = (integ.nodes, integ.logw, gm.u, C, logdet)
    _, grad, H, _, _ = one.quadrature(x, *args)
    assert np.max(np.abs(grad - _central(lambda v: one.quadrature(v, *args, derivatives=0)[0], x))) \
        < 1e-6 * max(1.0, np.max(np.abs(grad)))
    # h = 1e-4: the gradient's rounding noise (~1e-11 |g|) divided by h = 1e-5 reached the tolerance
    num_h = _central(lambda v: one.quadrature(v, *args, derivatives=1)[1], x, 1e-4)
    assert np.max(np.abs(H - num_h)) < 1e-5 * np.max(np.abs(H))
