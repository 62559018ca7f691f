"""Stata's text output, checked at fixed parameters so the optimizer cannot make it flaky.

The reference is Stata's own printed output for ``mixed weight week || id:``
([ME] mixed, Remarks and examples, pig data).  Stata stops its iterations a
little before the exact ML optimum (var(_cons) 14.817513 instead of
14.817493); evaluated at Stata's stopping point, every digit Stata prints is
reproduced.  Layout: Stata 17.
"""
from __future__ import annotations

import numpy as np
import pytest

from multilevel.design import build
from multilevel.lmm.fit import results_at
from multilevel.lmm.model import LinearMixedModel
from multilevel.optimize import OptSummary
from multilevel.spec import parse

PIG_STATA = """\
Mixed-effects ML regression                     Number of obs     =        432
Group variable: id                              Number of groups  =         48
                                                Obs per group:
                                                              min =          9
                                                              avg =        9.0
                                                              max =          9

                                                Wald chi2(1)      =   25337.49
Log likelihood = -1014.9268                     Prob > chi2       =     0.0000

------------------------------------------------------------------------------
      weight | Coefficient  Std. err.      z    P>|z|     [95% conf. interval]
-------------+----------------------------------------------------------------
        week |   6.209896   .0390124   159.18   0.000     6.133433    6.286359
       _cons |   19.35561   .5974059    32.40   0.000     18.18472    20.52651
------------------------------------------------------------------------------

------------------------------------------------------------------------------
  Random-effects parameters  |   Estimate   Std. err.     [95% conf. interval]
-----------------------------+------------------------------------------------
id: Identity                 |
                  var(_cons) |   14.81751   3.124226      9.801716    22.40002
-----------------------------+------------------------------------------------
               var(Residual) |   4.383264   .3163348      3.805112     5.04926
------------------------------------------------------------------------------
LR test vs. linear model: chibar2(01) = 472.65        Prob >= chibar2 = 0.0000
"""


def results_at_theta(command, data, theta, reml=False):
    model = LinearMixedModel(build(parse(command), data), reml=reml)
    theta = np.asarray(theta, dtype=float)
    opt = OptSummary("fixed", theta, theta, model.objective(theta), converged=True)
    return results_at(model, opt)


@pytest.fixture(scope="module")
def pig_at_stata_point(pig):
    # Stata's stopping point: var(_cons) = 14.817513, var(Residual) = 4.383264
    return results_at_theta("mixed weight week || id:", pig, [np.sqrt(14.817513 / 4.383264)])


def test_pig_table_matches_stata_text(pig_at_stata_point):
    assert str(pig_at_stata_point) == PIG_STATA


def test_every_number_stata_prints_is_in_the_table(pig_at_stata_point):
    text = str(pig_at_stata_point)
    for number in ["-1014.9268", "6.209896", ".0390124", "159.18", "6.133433", "6.286359", "19.35561",
                   ".5974059", "32.40", "18.18472", "20.52651", "14.81751", "3.124226", "9.801716",
                   "22.40002", "4.383264", ".3163348", "3.805112", "5.04926", "25337.49", "472.65"]:
        assert number in text


def test_exact_optimum_prints_the_exact_digits(pig):
    """At the exact ML optimum (documented difference from Stata's early stop)."""
    import multilevel as ml

    text = str(ml.mixed("weight week || id:", data=pig))
    assert "14.81749" in text and ".5974055" in text and "-1014.9268" in text


def test_stddeviations_display(pig_at_stata_point):
    text = pig_at_stata_point.table(stddeviations=True)
    assert "sd(_cons)" in text and "sd(Residual)" in text
    assert f"{np.sqrt(14.817513):.6f}"[:7] in text  # 3.849352


def test_reporting_options(pig_at_stata_point):
    res = pig_at_stata_point
    assert "Mixed-effects" not in res.table(noheader=True)
    assert "Coefficient" not in res.table(nofetable=True)
    assert "Random-effects parameters" not in res.table(noretable=True)


def test_level_changes_ci(pig):
    import multilevel as ml

    res = ml.mixed("weight week || id:", data=pig, level=90)
    assert "[90% conf. interval]" in str(res)
    fe = res.fixed_effects
    assert fe.loc["week", "ci_upper"] - fe.loc["week", "estimate"] == pytest.approx(1.6448536 * fe.loc["week", "se"])


def test_html_has_the_same_numbers(pig_at_stata_point):
    html = pig_at_stata_point._repr_html_()
    for number in ["6.209896", ".0390124", "14.81751", "3.124226", "4.383264"]:
        assert number in html


def test_multilevel_header_lists_groups():
    from tests.conftest import load_data
    import multilevel as ml

    text = str(ml.fit("mixed yield nitro || block: || variety:, reml", data=load_data("oats.csv")))
    assert "Mixed-effects REML regression" in text
    assert " Group variable |     groups    Minimum    Average    Maximum" in text
    assert "          block |          6         12       12.0         12" in text
    assert "        variety |         18          4        4.0          4" in text
    assert "LR test vs. linear model: chi2(2) =" in text
    assert "Note: LR test is conservative and provided only for reference." in text


def test_factor_variables_are_grouped_as_stata():
    from tests.conftest import load_data
    import multilevel as ml

    text = str(ml.fit("mixed distance age i.male i.male#c.age || subject:", data=load_data("orthodont.csv")))
    assert "        male |\n          1  |" in text
    assert "  male#c.age |\n          1  |" in text


def test_iteration_log(pig):
    import multilevel as ml

    log = ml.mixed("weight week || id:", data=pig).iteration_log().splitlines()
    assert log[0].startswith("Iteration 0:  log likelihood = ")
    assert log[-1].endswith("-1014.9268")
