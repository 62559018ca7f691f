"""Plots render headless (Agg); the tests check what is drawn.

Where a test checks numbers they come from outside: lme4's ``ranef``/``condVar``
(the conformance case's ``extra.blups``), lme4's ``fitted``/``residuals``
(``tests/references/postestimation/lme4_refs.json``), lme4's printed scaled
residuals (``tests/references/presentation``) and the standard library's
normal quantiles.
"""
from __future__ import annotations

import json
import pathlib
import statistics
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import multilevel as ml  # noqa: E402
from multilevel import plots  # noqa: E402
from multilevel.spec import DataError, SpecError  # noqa: E402

HERE = pathlib.Path(__file__).parent
LME4 = json.loads((HERE / "references" / "postestimation" / "lme4_refs.json").read_text())["pig_ri_ml"]
CASE = json.loads((HERE / "conformance" / "cases" / "lmm_pig_ri_ml.json").read_text())
Z95 = statistics.NormalDist().inv_cdf(0.975)


@pytest.fixture(scope="module")
def ri(pig):
    return ml.mixed("weight week || id:", data=pig)


@pytest.fixture(scope="module")
def rs(pig):
    return ml.mixed("weight week || id: week", data=pig)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_caterpillar_draws_each_blup_with_its_interval(ri):
    ax = plots.caterpillar(ri)
    (bars,) = ax.containers
    x, y = bars.lines[0].get_data()
    assert len(x) == 48 and list(y) == list(range(48)) and np.all(np.diff(x) >= 0)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(labels, key=int) == [str(i) for i in range(1, 49)]
    segments = bars.lines[2][0].get_segments()
    ref = CASE["results"]["extra"]["blups"][0]        # lme4 ranef and condVar, groups 1..5
    for group, blup, sd in zip(ref["groups"], ref["blup"], ref["cond_sd"]):
        i = labels.index(group)
        assert x[i] == pytest.approx(blup[0], abs=1e-5)
        (lo, _), (hi, _) = segments[i]
        assert (hi - lo) / 2 == pytest.approx(Z95 * sd[0], rel=1e-5)   # ML: Stata's reses is the conditional SD
    assert ax.get_ylabel() == "id" and "_cons" in ax.get_xlabel() and "95%" in ax.get_xlabel()


def test_caterpillar_level_and_term(rs):
    ax = plots.caterpillar(rs, level="id", term="week", ci=90)
    assert "week" in ax.get_title() and "90%" in ax.get_xlabel()
    assert len(ax.containers[0].lines[0].get_xdata()) == 48
    with pytest.raises(SpecError, match="level 'school'"):
        plots.caterpillar(rs, level="school")
    with pytest.raises(SpecError, match="term 'age'"):
        plots.caterpillar(rs, term="age")


def test_residuals_vs_fitted(ri):
    ax = plots.residuals_vs_fitted(ri)
    points = ax.collections[0].get_offsets()
    assert len(points) == 432
    np.testing.assert_allclose(points[:5, 0], LME4["fitted_first5"], atol=1e-5)
    np.testing.assert_allclose(points[:5, 1], LME4["resid_first5"], atol=1e-5)
    assert ax.get_xlabel().startswith("Fitted") and ax.get_ylabel() == "Residuals"


def test_qq_of_standardized_residuals(ri):
    ax = plots.qq(ri)
    points = ax.collections[0].get_offsets()
    assert len(points) == 432
    normal = statistics.NormalDist()
    assert points[0, 0] == pytest.approx(normal.inv_cdf(1 / 433)) and points[-1, 0] == pytest.approx(normal.inv_cdf(432 / 433))
    # lme4's printed scaled residuals: Min -3.7449, Max 3.9372
    assert points[0, 1] == pytest.approx(-3.7449, abs=1e-4) and points[-1, 1] == pytest.approx(3.9372, abs=1e-4)
    assert len(ax.lines) == 1 and ax.get_xlabel() == "Inverse normal"


def test_qq_of_blups(rs):
    ax = plots.qq(rs, which="reffects", term="week")
    assert len(ax.collections[0].get_offsets()) == 48 and "week" in ax.get_ylabel()
    with pytest.raises(ValueError, match="which"):
        plots.qq(rs, which="fitted")


def test_trajectories_of_a_fit(ri):
    ax = plots.trajectories(ri, "week", "id")          # twoway connected weight week if id<=10, plus fits
    fitted = [ln for ln in ax.lines if not ln.get_label().startswith("_")]
    observed = [ln for ln in ax.lines if ln.get_label().startswith("_")]
    assert [ln.get_label() for ln in fitted] == [str(i) for i in range(1, 11)]
    assert len(observed) == 10 and all(len(ln.get_xdata()) == 9 for ln in observed)
    np.testing.assert_allclose(fitted[0].get_ydata()[:5], LME4["fitted_first5"], atol=1e-5)
    assert observed[0].get_color() == fitted[0].get_color() and observed[0].get_linestyle() == "None"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("week", "weight")


def test_trajectories_of_data_and_all_groups(pig):
    ax = plots.trajectories(pig, "week", "id", y="weight", n=None)
    assert len(ax.lines) == 48 and ax.lines[0].get_marker() == "o"
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), pig.loc[pig.id == 1, "weight"])
    with pytest.raises(DataError, match="y="):
        plots.trajectories(pig, "week", "id")
    with pytest.raises(DataError, match="wk"):
        plots.trajectories(pig, "wk", "id", y="weight")


def test_trajectories_need_data_for_variables_outside_the_model(pig):
    res = ml.mixed("weight week2 || id:", data=pig.assign(week2=pig.week))
    with pytest.raises(DataError, match="pass the data"):
        plots.trajectories(res, "week", "id")
    ax = plots.trajectories(res, "week", "id", data=pig, n=3)
    assert len(ax.lines) == 6


def test_results_plot_method_and_given_axes(ri):
    fig, ax = plt.subplots()
    assert ri.plot("qq", ax=ax) is ax
    assert ri.plot("trajectories", time="week", group="id", n=2).get_xlabel() == "week"
    with pytest.raises(ValueError, match="unknown plot"):
        ri.plot("pie")


def test_import_does_not_load_matplotlib():
    code = "import sys, multilevel, multilevel.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
