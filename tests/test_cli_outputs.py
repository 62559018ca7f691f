"""The CLI writes predictions with the data (``--predict --out``), an HTML page
(``--html``) and lme4's summary (``--style lme4``).

Numbers are checked against lme4 (``tests/references/postestimation/lme4_refs.json``,
the conformance case's ``extra.blups``) and Stata's printed pig table.
"""
import io
import json
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from multilevel.cli import main

HERE = pathlib.Path(__file__).parent
PIG = str(HERE / "data" / "pig.csv")
LME4 = json.loads((HERE / "references" / "postestimation" / "lme4_refs.json").read_text())["pig_ri_ml"]
BLUPS = json.loads((HERE / "conformance" / "cases" / "lmm_pig_ri_ml.json").read_text())["results"]["extra"]["blups"][0]


def run(*args):
    return subprocess.run([sys.executable, "-m", "multilevel", *args], capture_output=True, text=True)


def run_here(capsys, *args):
    """The CLI in this process (faster than a subprocess): (exit code, stdout, stderr)."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_writes_the_data_with_predictions(tmp_path):
    out, page = tmp_path / "pred.csv", tmp_path / "report.html"
    proc = run("mixed weight week || id:", "--data", PIG, "--nolog", "--predict", "fitted,residuals,reffects",
               "--out", str(out), "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Mixed-effects ML regression")
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("<table>") == 3
    assert "-1014.9268" in text and "6.209896" in text       # Stata's printed log likelihood and week
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["id", "week", "weight", "fitted", "residuals", "reffects_id:_cons"]
    assert len(pred) == 432
    np.testing.assert_allclose(pred["fitted"][:5], LME4["fitted_first5"], atol=1e-5)
    np.testing.assert_allclose(pred["residuals"][:5], LME4["resid_first5"], atol=1e-5)
    first = pred.groupby("id")["reffects_id:_cons"].first()
    np.testing.assert_allclose(first[[1, 2, 3, 4, 5]], [b[0] for b in BLUPS["blup"]], atol=1e-5)


def test_predict_outside_the_sample_is_missing_and_stdout(capsys):
    code, out, err = run_here(capsys, "mixed weight week if week > 1 || id:", "--data", PIG, "--predict", "xb",
                              "--out", "-")
    assert code == 0, err
    pred = pd.read_csv(io.StringIO(out))
    assert len(pred) == 432 and pred["xb"].isna().sum() == 48
    assert pred.loc[pred.week == 1, "xb"].isna().all() and pred.loc[pred.week > 1, "xb"].notna().all()


def test_predict_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["mixed weight week || id:", "--data", PIG, "--predict", "fitted"])
    assert exc.value.code == 2 and "--predict and --out go together" in capsys.readouterr().err
    code, _, err = run_here(capsys, "mixed weight week || id:", "--data", PIG, "--predict", "fitt3d", "--out", "-")
    assert code == 2 and "unknown prediction" in err


def test_lme4_style(capsys):
    code, out, err = run_here(capsys, "weight ~ week + (1 | id)", "--data", PIG, "--nolog", "--style", "lme4")
    assert code == 0, err
    ref = (HERE / "references" / "presentation" / "lme4_pig_ri_ml.txt").read_text()
    for line in ("week         6.20990    0.03901   159.2", " id       (Intercept) 14.817   3.849   "):
        assert line in ref and line in out
