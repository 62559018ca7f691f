"""The console script and ``python -m multilevel`` print Stata's table."""
import pathlib
import subprocess
import sys

PIG = str(pathlib.Path(__file__).parent / "data" / "pig.csv")


def run(*args):
    return subprocess.run([sys.executable, "-m", "multilevel", *args], capture_output=True, text=True)


def test_cli_prints_log_and_table():
    out = run("mixed weight week || id:", "--data", PIG)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Iteration 0:  log likelihood = ")
    assert "Log likelihood = -1014.9268" in out.stdout and "chibar2(01) = 472.65" in out.stdout


def test_cli_lme4_formula_and_nolog():
    out = run("weight ~ week + (1 | id)", "--data", PIG, "--nolog")
    assert out.stdout.startswith("Mixed-effects ML regression")


def test_cli_reports_errors():
    out = run("mixed weight wek || id:", "--data", PIG)
    assert out.returncode == 2 and "not found" in out.stderr


def test_cli_runs_glmm_commands():
    data = str(pathlib.Path(__file__).parent / "data" / "bangladesh.csv")
    out = run("melogit c_use urban age || district:, intmethod(laplace)", "--data", data, "--nolog")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Mixed-effects logistic regression")
