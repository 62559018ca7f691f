"""Data larger than memory: a dask DataFrame (or parquet files) with several partitions gives
the same fit as the in-memory DataFrame."""
from __future__ import annotations

import numpy as np
import pytest

import multilevel as ml

dd = pytest.importorskip("dask.dataframe")


@pytest.mark.parametrize("command", [
    "mixed weight week || id:",
    "mixed weight week || id: week, covariance(unstructured)",
    "mixed weight week || id: week, reml",
])
def test_dask_partitions_give_the_in_memory_fit(pig, command):
    shuffled = pig.sample(frac=1.0, random_state=3).reset_index(drop=True)
    ddf = dd.from_pandas(shuffled, npartitions=5)
    a = ml.fit(command, data=ddf)
    b = ml.fit(command, data=pig)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)
    np.testing.assert_allclose(a.fixed.coef, b.fixed.coef, rtol=1e-9)
    np.testing.assert_allclose(a.fixed.se, b.fixed.se, rtol=1e-5)
    # the optimizer stops within ~1e-5 of the (flat) optimum; summation order moves its path
    np.testing.assert_allclose(a.equations[0].cov, b.equations[0].cov, rtol=1e-4, atol=1e-4)
    assert a.residual_se == pytest.approx(b.residual_se, rel=1e-4)
    assert a.nobs == b.nobs and a.equations[0].obs_per_group == b.equations[0].obs_per_group
    assert str(a).splitlines()[:8] == str(b).splitlines()[:8]


def test_parquet_path_with_missing_values(pig, tmp_path):
    df = pig.copy()
    df.loc[[3, 50, 99], "weight"] = np.nan
    dd.from_pandas(df, npartitions=3).to_parquet(tmp_path / "pig")
    a = ml.fit("mixed weight week || id:", data=str(tmp_path / "pig"))
    b = ml.fit("mixed weight week || id:", data=df)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8) and a.nobs == b.nobs == len(pig) - 3


def test_streamed_scope_is_checked(pig):
    ddf = dd.from_pandas(pig, npartitions=2)
    with pytest.raises(ml.SpecError, match="plain numeric"):
        ml.fit("mixed weight i.week || id:", data=ddf)
    with pytest.raises(ml.DataError, match="not found"):
        ml.fit("mixed weight wk || id:", data=ddf)
