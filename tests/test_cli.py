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


def test_cli_runs_mestreg_with_stset_and_menl():
    data = pathlib.Path(__file__).parent / "data"
    out = run("mestreg x z || cluster:, distribution(weibull)", "--data", str(data / "surv_weibull_sim7.csv"),
              "--stset", "stset time, failure(died)", "--nolog")
    assert out.returncode == 0, out.stderr
    assert "Mixed-effects Weibull PH regression" in out.stdout and "Haz. ratio" in out.stdout
    out = run("mestreg x z || cluster:, distribution(weibull)", "--data", str(data / "surv_weibull_sim7.csv"))
    assert out.returncode == 2 and "stset" in out.stderr
    out = run("menl circumf = ({b1}+{U1[tree]})/(1+exp(-(age-{b2})/{b3}))", "--data", str(data / "orange.csv"),
              "--nolog")
    assert out.returncode == 0, out.stderr
    assert "Mixed-effects ML nonlinear regression" in out.stdout and "Log likelihood = -131.58458" in out.stdout
