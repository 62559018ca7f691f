"""Fits run with one BLAS thread and leave the caller's setting as it was (multilevel/blas.py)."""
import pandas as pd
import scipy.linalg.lapack  # noqa: F401  (scipy's own OpenBLAS loaded before the limits below)
from threadpoolctl import threadpool_info, threadpool_limits

import multilevel as ml
from multilevel.blas import fitting_threads


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_one_thread_inside_and_the_callers_setting_after(monkeypatch):
    monkeypatch.delenv("MULTILEVEL_BLAS_THREADS", raising=False)
    with threadpool_limits(limits=2, user_api="blas"):
        inside = fitting_threads(_blas_threads)()
        assert inside and set(inside) == {1}
        assert set(_blas_threads()) == {2}


def test_environment_variable_sets_the_count_or_leaves_blas_alone(monkeypatch):
    with threadpool_limits(limits=2, user_api="blas"):
        monkeypatch.setenv("MULTILEVEL_BLAS_THREADS", "0")
        assert set(fitting_threads(_blas_threads)()) == {2}
        monkeypatch.setenv("MULTILEVEL_BLAS_THREADS", "2")
        assert set(fitting_threads(_blas_threads)()) == {2}


def test_restored_when_the_fit_fails(monkeypatch):
    monkeypatch.delenv("MULTILEVEL_BLAS_THREADS", raising=False)
    with threadpool_limits(limits=2, user_api="blas"):
        try:
            ml.fit("mixed weight nosuchvar || id:", data=pd.read_csv("tests/data/pig.csv"))
        except ml.DataError:
            pass
        assert set(_blas_threads()) == {2}
