"""``dfmethod(repeated)`` and ``dfmethod(anova)``: DF from ranks of the design.

Balanced designs are checked against the classical ANOVA strata of R's aov() in
tests/references/dfmethod/*_repeated.json / *_anova.json (run by test_dfmethod.py).
Here, unbalanced designs are checked against a direct count written from the
definitions ([ME] mixed, "Small-sample inference for fixed effects"; SAS
DDFM=BETWITHIN / DDFM=CONTAIN) with explicit dummy matrices and numpy's matrix_rank:

- repeated: between DF = rank([X S]) − rank(X), within DF = n − rank([X S]), S the
  subject indicators; a coefficient constant within subjects takes the between DF.
- anova: random effects in the order written (an equation's slopes, then its
  intercept), each the slope variable times the group indicators; DF of a
  coefficient = smallest rank contribution rank([X Z_1..Z_k]) − rank([X Z_1..Z_k-1])
  of the effects containing it, else n − rank([X Z]).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.inference.small_sample import ftest
from tests.conftest import load_data


def _dummies(codes) -> np.ndarray:
    return pd.get_dummies(pd.Series(codes).astype(str)).to_numpy(dtype=float)


def _contributions(X: np.ndarray, blocks: list[np.ndarray]) -> tuple[list[int], int]:
    ranks = [np.linalg.matrix_rank(X)]
    stacked = X
    for B in blocks:
        stacked = np.hstack([stacked, B])
        ranks.append(np.linalg.matrix_rank(stacked))
    return list(np.diff(ranks)), ranks[-1]


@pytest.fixture(scope="module")
def sleep_unbalanced():
    d = load_data("sleepstudy.csv")
    d = d[(d.Subject * 7 + d.Days * 3) % 5 != 0].reset_index(drop=True)   # 36 of 180 rows dropped
    d["older"] = (d.Subject % 3) * 0.1 + 0.37                           # a between-subject covariate
    return d


def test_repeated_matches_direct_count_unbalanced(sleep_unbalanced):
    d = sleep_unbalanced
    res = ml.fit("mixed Reaction Days older || Subject: Days, reml dfmethod(repeated)", data=d)
    X = np.column_stack([d.Days, d.older, np.ones(len(d))])
    r_x = np.linalg.matrix_rank(X)
    r_xs = np.linalg.matrix_rank(np.hstack([X, _dummies(d.Subject)]))
    expected = [len(d) - r_xs, r_xs - r_x, r_xs - r_x]                   # Days within; older, _cons between
    assert list(res.df) == expected and expected == [len(d) - 18 - 1, 16, 16]
    assert res.df_method == "repeated" and res.to_dict()["extra"]["df_repeated"] == expected


def test_anova_matches_direct_count_random_slope_unbalanced(sleep_unbalanced):
    d = sleep_unbalanced
    res = ml.fit("mixed Reaction Days older || Subject: Days, reml dfmethod(anova)", data=d)
    X = np.column_stack([d.Days, d.older, np.ones(len(d))])
    S = _dummies(d.Subject)
    (c_slope, c_int), r_all = _contributions(X, [S * d.Days.to_numpy()[:, None], S])
    # Days is contained in the Days-by-Subject slopes, _cons in both, older in neither
    assert list(res.df) == [c_slope, len(d) - r_all, min(c_slope, c_int)]


def test_anova_matches_direct_count_three_level_unbalanced():
    d = load_data("oats.csv")
    d = d.drop(index=[0, 5, 17, 30, 31, 50, 66]).reset_index(drop=True)
    res = ml.fit("mixed yield nitro i.variety || block: || variety:, reml dfmethod(anova)", data=d)
    X = np.column_stack([d.nitro, d.variety == 2, d.variety == 3, np.ones(len(d))]).astype(float)
    plots = d.block.astype(str) + "/" + d.variety.astype(str)
    (c_block, c_plot), r_all = _contributions(X, [_dummies(d.block), _dummies(plots)])
    # variety is contained in the block-by-variety plots (its grouping variables), _cons in both levels
    assert list(res.fixed.names) == ["nitro", "2.variety", "3.variety", "_cons"]
    assert list(res.df) == [len(d) - r_all, c_plot, c_plot, min(c_block, c_plot)]


@pytest.mark.parametrize("method", ["repeated", "anova"])
def test_ml_fits_are_allowed(method):
    reml = ml.fit(f"mixed weight week || id:, reml dfmethod({method})", data=load_data("pig.csv"))
    mle = ml.fit(f"mixed weight week || id:, dfmethod({method})", data=load_data("pig.csv"))
    assert mle.method != "reml" and mle.df == reml.df


def test_unequal_df_leave_the_f_test_without_denominator_df():
    res = ml.fit("mixed distance age i.male || subject:, reml dfmethod(repeated)", data=load_data("orthodont.csv"))
    joint = ftest(res, ["age", "1.male"])
    assert np.isnan(joint["ddf"]) and np.isnan(joint["p"]) and joint["ndf"] == 2
    assert np.isnan(res.wald.df2)
    text = str(res)
    assert "DF method: Repeated" in text
    assert f"{'':48}F(2,      .  )    =     ." in text
    assert "Prob > F          =     ." in text


def test_ftest_under_residual_uses_n_minus_p():
    res = ml.fit("mixed weight week || id:, dfmethod(residual)", data=load_data("pig.csv"))
    got = ftest(res, ["week"])
    assert got["ddf"] == 430 and got["F"] == pytest.approx(res.fixed_effects.loc["week", "t"] ** 2)


@pytest.mark.parametrize("command, dataset, message", [
    ("mixed yield nitro || block: || variety:, dfmethod(repeated)", "oats.csv", "two-level"),
    ("mixed diameter || _all: R.plate || _all: R.sample, dfmethod(repeated)", "penicillin.csv", "_all"),
    ("mixed weight week, dfmethod(anova)", "pig.csv", "linear regression"),
    ("mixed weight week || id:, dfmethod(anova, eim)", "pig.csv", "takes no options"),
])
def test_stata_refusals(command, dataset, message):
    with pytest.raises(ml.SpecError, match=message):
        ml.fit(command, data=load_data(dataset))
