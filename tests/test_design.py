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



_CELLS = pd.DataFrame({"a": np.random.default_rng(4).integers(0, 2, 300),
                       "b": np.random.default_rng(5).integers(0, 3, 300),
                       "c": np.random.default_rng(6).integers(0, 2, 300),
                       "x": np.random.default_rng(7).standard_normal(300)})
_CELLS["y"] = (np.random.default_rng(8).standard_normal(300) + 2 * _CELLS.a - _CELLS.b
               + _CELLS.a * _CELLS.b * _CELLS.c + _CELLS.x * _CELLS.b)


@pytest.mark.parametrize("formula, names", [
    ("C(a):C(b)", ["0.a#1.b", "0.a#2.b", "1.a#0.b", "1.a#1.b", "1.a#2.b"]),
    ("C(a):C(b):C(c)", [f"{i}.a#{j}.b#{k}.c" for i in (0, 1) for j in (0, 1, 2) for k in (0, 1)][1:]),
    ("C(a) + C(a):C(b)", ["1.a", "0.a#1.b", "1.a#1.b", "0.a#2.b", "1.a#2.b"]),
    ("x:C(b)", ["c.x#0.b", "c.x#1.b", "c.x#2.b"]),
    ("C(a) + C(b) + C(a):C(b)", ["1.a", "1.b", "2.b", "1.a#1.b", "1.a#2.b"])])
def test_interactions_without_main_effects_are_coded_as_stata(formula, names):
    """Stata codes ``i.a#i.b`` as "indicators for each combination of levels" ([U] 11.4.3, help fvvarlist),
    the cell with every factor at its base level being the base (``0b.a#0b.b``), with or without
    ``_cons``; ``sex#c.age`` is "two variables", one slope per level. Where the main effects are
    there (``i.a##i.b``, ``i.a i.a#i.b``) the names are formulaic's, as before."""
    from multilevel.design import fixed

    fx = fixed.build(formula, True, _CELLS)
    assert list(fx.names) == names + ["_cons"] and fx.omitted == ()
    np.testing.assert_array_equal(fx.matrix(_CELLS), fx.X)
    assert list(fixed.build(formula, False, _CELLS).names) == names


@pytest.mark.parametrize("formula", ["C(a):C(b)", "C(a):C(b):C(c)"])
def test_interaction_cells_estimate_differences_from_the_base_cell(formula):
    """The least-squares coefficient of each cell of ``i.a#i.b`` (``i.a#i.b#i.c``) is its mean
    minus the base cell's (``1.a#1.b`` = m11 - m00), the means computed directly."""
    from multilevel.design import fixed

    fx = fixed.build(formula, True, _CELLS)
    coef = dict(zip(fx.names, np.linalg.lstsq(fx.X, _CELLS.y.to_numpy(), rcond=None)[0]))
    factors = ["a", "b", "c"][:formula.count("C(")]
    means = _CELLS.y.groupby([_CELLS[f] for f in factors]).mean()
    assert len(means) == len(coef) and coef["_cons"] == pytest.approx(means.iloc[0], abs=1e-10)
    for cell, m in means.iloc[1:].items():
        assert coef["#".join(f"{lv}.{f}" for lv, f in zip(cell, factors))] == pytest.approx(
            m - means.iloc[0], abs=1e-10)


@pytest.mark.parametrize("cmd, data", [("mixed distance i.male#i.age || subject:", "orthodont.csv"),
                                       ("mixed distance i.male#i.age, noconstant || subject:", "orthodont.csv"),
                                       ("melogit c_use i.urban#i.child1 || district:", "bangladesh.csv")])
def test_interaction_cells_reparameterise_the_factorial_model(cmd, data):
    """``i.a#i.b`` spans what ``i.a##i.b`` spans: the same log likelihood (to 1e-8), and each
    cell's coefficient is the sum of the factorial model's coefficients that are on in that
    cell (``1.male#10.age`` = ``1.male + 10.age + 1.male#10.age``) -- Stata's cell coding."""
    import multilevel as ml
    from tests.conftest import load_data

    d = load_data(data)
    cells = ml.fit(cmd, data=d)
    factorial = ml.fit(cmd.replace("#", "##"), data=d)
    assert cells.loglik == pytest.approx(factorial.loglik, abs=1e-8)
    ff = dict(zip(factorial.fixed.names, factorial.fixed.coef))
    for name, coef in zip(cells.fixed.names, cells.fixed.coef):
        on = [name] if name == "_cons" else [name, *name.split("#")]
        assert coef == pytest.approx(sum(ff.get(n, 0.0) for n in on), rel=1e-5, abs=1e-6), name
    assert cells.fixed.names[0].startswith("0.") and not cells.fixed.omitted


def test_menl_linear_combination_codes_interaction_cells_as_mixed(pig):
    """menl's ``{phi: i.g#i.big}`` is built by the same code: Stata's cells."""
    from multilevel.nonlinear.fit import NonlinearModel
    from multilevel.nonlinear.expression import parse_menl

    d = pig.assign(g=pig["id"] % 3, big=(pig["id"] % 2))
    model = NonlinearModel(parse_menl("menl weight = {phi1: i.g#i.big U0[id]} + {b}"), d)
    assert model.names == ["phi1:0.g#1.big", "phi1:1.g#0.big", "phi1:1.g#1.big", "phi1:2.g#0.big",
                           "phi1:2.g#1.big", "phi1:_cons", "b"]


def test_collinear_interaction_cells_with_base_levels_are_the_ones_omitted():
    """With ``i.a`` in the model the cells of ``i.a#i.b#i.c`` span one column too many; the cell
    with the most factors at their base level goes (Stata's ``i.a##i.b`` likewise omits
    ``1o.a#0b.b``, not ``1.a#1.b``); the fit's X spans the cells and ``1.a``."""
    from multilevel.design import fixed

    d = _CELLS.assign(b=_CELLS.b % 2)
    fx = fixed.build("C(a) + C(a):C(b):C(c)", True, d)
    assert fx.omitted == ("1.a#0.b#0.c",) and fx.names[0] == "1.a" and len(fx.names) == 8
    assert np.linalg.matrix_rank(fx.X) == 8
