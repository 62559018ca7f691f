"""Every ``lmm`` conformance case (reference fits from lme4/nlme) through the contract
``multilevel.fit(stata_command, data).to_dict()``, one test per reported number,
with the tolerances of SCHEMA.md."""
from __future__ import annotations

import functools

import pytest

import multilevel
from tests.conftest import load_cases, load_data

SUPPORTED = load_cases("lmm")


@functools.lru_cache(maxsize=None)
def fitted(case_id: str) -> dict:
    case = next(c for c in SUPPORTED if c["id"] == case_id)
    df = load_data(case["dataset"])
    if case.get("subset"):
        df = df.query(case["subset"]).reset_index(drop=True)
    return multilevel.fit(case["stata"], data=df).to_dict()


def _checks(case: dict):
    ref, tol = case["results"], case["tolerance"]
    vmax = max([r["cov"][i][i] for r in ref["random"] for i in range(len(r["cov"]))]
               + [ref["residual"]["var"] or 0.0])
    vmax = max(vmax, *(v for v in _residual_numbers(ref["extra"])))
    yield "loglik", ref["loglik"], tol["loglik_abs"], lambda g: g["loglik"]
    fx = ref["fixed"]
    for i, name in enumerate(fx["names"]):
        se = fx["se"][i]
        yield f"coef {name}", fx["coef"][i], tol["coef_rel"] * max(abs(fx["coef"][i]), se), \
            lambda g, n=name: g["fixed"]["coef"][g["fixed"]["names"].index(n)]
        yield f"se {name}", se, tol["se_rel"] * abs(se), \
            lambda g, n=name: g["fixed"]["se"][g["fixed"]["names"].index(n)]
    for j, r in enumerate(ref["random"]):
        for a, ta in enumerate(r["terms"]):
            for b in range(a, len(r["terms"])):
                tb = r["terms"][b]
                pick = functools.partial(_random_entry, level=r["level"], terms=r["terms"], ordinal=j, ta=ta, tb=tb)
                v = r["cov"][a][b]
                yield f"cov[{r['level']}]({ta},{tb})", v, tol["var_rel"] * max(abs(v), vmax * 1e-3), \
                    functools.partial(pick, key="cov")
                se = (r.get("se") or [[None] * 9] * 9)[a][b]
                if se is not None:
                    yield f"se cov[{r['level']}]({ta},{tb})", se, tol["se_rel"] * abs(se), \
                        functools.partial(pick, key="se")
    res = ref["residual"]
    if res["var"] is not None:
        yield "residual var", res["var"], tol["var_rel"] * max(abs(res["var"]), vmax * 1e-3), \
            lambda g: g["residual"]["var"]
        yield "residual se", res["se"], tol["se_rel"] * abs(res["se"]), lambda g: g["residual"]["se"]
    for key, v in ref["extra"].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not key.startswith(("df_", "se_")):
            yield f"extra {key}", v, tol["coef_rel"] * max(abs(v), 1.0), lambda g, k=key: g["extra"][k]
    for key in ("residual_cov_matrix", "residual_cov_matrix_se"):  # unstructured residuals, as matrices
        for i, row in enumerate(ref["extra"].get(key) or []):
            for j, v in enumerate(row):
                rel = tol["se_rel"] if key.endswith("_se") else tol["var_rel"]
                yield f"extra {key}[{i}][{j}]", v, rel * max(abs(v), vmax * 1e-3), \
                    lambda g, k=key, i=i, j=j: g["extra"][k][i][j]
    for key in ("residual_var_by", "residual_var_by_se"):  # by() variances, as dicts
        for level, v in (ref["extra"].get(key) or {}).items():
            rel = tol["se_rel"] if key.endswith("_se") else tol["var_rel"]
            yield f"extra {key}[{level}]", v, rel * abs(v), lambda g, k=key, lv=level: g["extra"][k][lv]


def _residual_numbers(extra: dict):
    yield 0.0
    yield from (extra.get("residual_var_by") or {}).values()
    for row in extra.get("residual_cov_matrix") or []:
        yield from row


def _random_entry(got: dict, level: str, terms: list, ordinal: int, ta: str, tb: str, key: str) -> float:
    matches = [g for g in got["random"] if g["level"].lower() == level.lower() and set(g["terms"]) == set(terms)]
    g = matches[0] if len(matches) == 1 else got["random"][ordinal]
    return g[key][g["terms"].index(ta)][g["terms"].index(tb)]


PARAMS = [pytest.param(c["id"], label, ref, tol, get, id=f"{c['id']}::{label}")
          for c in SUPPORTED for label, ref, tol, get in _checks(c)]


@pytest.mark.parametrize("case_id,label,reference,tolerance,getter", PARAMS)
def test_number(case_id, label, reference, tolerance, getter):
    got = getter(fitted(case_id))
    assert got == pytest.approx(reference, abs=tolerance), f"{label}: {got} vs reference {reference}"


def test_shared_checker_passes_all_supported_cases():
    """The shared tool's own comparison (SCHEMA.md) finds nothing wrong."""
    from tests.conformance.conformance_check import compare

    for case in SUPPORTED:
        assert compare(case, fitted(case["id"])) == [], case["id"]
