"""Design building: group codes, fixed-effects columns."""
import numpy as np
import pandas as pd
import pytest


@pytest.mark.parametrize("values", [np.array([12, 3, 3, 7, -2]), np.arange(10**6, 10**6 + 5)[::-1],
                                    np.array([2**62, -2**62, 0]), np.array([5, 1, 2], dtype=np.uint64),
                                    np.array([True, False, True]), np.array([], dtype=int),
                                    np.array([7, 3, 7], dtype=np.int8)])
def test_integer_group_codes_equal_numpy_unique(values):
    from multilevel.design.random import _integer_codes

    uniques, codes = _integer_codes(values)
    ref_uniques, ref_codes = np.unique(values, return_inverse=True)
    assert uniques.dtype == ref_uniques.dtype
    np.testing.assert_array_equal(uniques, ref_uniques)
    np.testing.assert_array_equal(codes, ref_codes)


_FACTOR_DATA = pd.DataFrame({"year": np.random.default_rng(0).choice([95, 96, 97], 50),
                             "x": np.random.default_rng(1).standard_normal(50),
                             "g": np.random.default_rng(2).choice([1.0, 2.0, 3.0], 50),
                             "h": np.random.default_rng(3).integers(0, 4, 50)})


@pytest.mark.parametrize("formula", ["C(year) + x", "x + C(year)", "C(year, contr.treatment(base=96)) + x",
                                     "x + C(g) + C(year)", "C(h)", "x"])
def test_integer_factors_without_formulaic_equal_formulaic(formula):
    """Plain variables and integer-coded i.var are read directly; X, names and omissions are
    formulaic's (the reference here: its model matrix for the same formula)."""
    from formulaic import model_matrix

    from multilevel.design import fixed

    fast = fixed.build(formula, True, _FACTOR_DATA)
    mm = model_matrix(formula, fixed._categoricals_as_int(_FACTOR_DATA, formula))
    X, cols = fixed._cons_last(np.asarray(mm, dtype=float), [fixed.stata_name(c) for c in mm.columns])
    assert list(fast.columns) == cols
    np.testing.assert_array_equal(fast.X, X)
    np.testing.assert_array_equal(fast.matrix(_FACTOR_DATA), fast.X)


def test_new_data_with_a_level_the_fit_did_not_see_is_an_error():
    from multilevel.design import fixed
    from multilevel.spec.errors import DataError

    fx = fixed.build("C(year) + x", True, _FACTOR_DATA)
    part = _FACTOR_DATA[_FACTOR_DATA.year != 95].reset_index(drop=True)
    np.testing.assert_array_equal(fx.matrix(part)[:, :2], np.column_stack([part.year == 96, part.year == 97]))
    with pytest.raises(DataError, match="level"):
        fx.matrix(_FACTOR_DATA.assign(year=_FACTOR_DATA.year.replace(97, 98)))
    with pytest.raises(DataError, match="whole numbers"):
        fixed.build("C(g) + x", True, _FACTOR_DATA).matrix(_FACTOR_DATA.assign(g=_FACTOR_DATA.g + 0.5))


@pytest.mark.parametrize("formula", ["C(year) + x", "C(year):x + C(h)", "C(year)*C(h)"])
def test_factors_without_constant_keep_their_base_out(formula):
    """Stata's ``i.x`` omits its base level with or without ``_cons`` ([U] 11.4.3;
    ``regress mpg i.rep78, noconstant`` omits 1b.rep78): X is the constant model's X
    without the ``_cons`` column, also for new data; lme4's ``0 + factor(x)`` (R coding)
    codes the first factor in full."""
    from multilevel.design import fixed

    with_cons = fixed.build(formula, True, _FACTOR_DATA)
    without = fixed.build(formula, False, _FACTOR_DATA)
    assert list(without.names) == [c for c in with_cons.names if c != "_cons"]
    np.testing.assert_array_equal(without.X, with_cons.X[:, :-1])
    np.testing.assert_array_equal(without.matrix(_FACTOR_DATA), without.X)
    full = fixed.build("C(year) + x", False, _FACTOR_DATA, r_coding=True)
    assert full.names == ("95.year", "96.year", "97.year", "x")


def test_ordinal_factor_covariates_keep_their_base_out():
    """meologit has no _cons (the cutpoints take its place) but i.warm keeps 0.warm out:
    the same model and numbers as with the plain 0/1 variable."""
    import multilevel as ml
    from tests.conftest import load_data

    wine = load_data("wine.csv")
    a = ml.fit("meologit rating i.warm contact || judge:, intmethod(laplace)", data=wine).to_dict()
    b = ml.fit("meologit rating warm contact || judge:, intmethod(laplace)", data=wine).to_dict()
    assert a["fixed"]["names"] == ["1.warm", "contact"]
    np.testing.assert_allclose(a["fixed"]["coef"], b["fixed"]["coef"], rtol=1e-6)
    np.testing.assert_allclose(a["fixed"]["se"], b["fixed"]["se"], rtol=1e-4)
    assert a["loglik"] == pytest.approx(b["loglik"], abs=1e-8)
