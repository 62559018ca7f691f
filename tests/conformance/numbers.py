"""One check per reported number of a reference case (SCHEMA.md tolerances).

``checks(case)`` yields (label, reference, tolerance, getter) for the log
likelihood, every coefficient and SE, every random-effects variance,
covariance and SE, the residual variance, and every number in ``extra``
(scalars, dicts of numbers, matrices), where ``getter(to_dict())`` picks our
number.  Keys that dedicated tests check (DF, BLUPs) are left out.
"""
from __future__ import annotations

import functools

import pytest

SKIP_EXTRA = ("df_", "se_kenwardroger", "blups", "n_groups", "nobs", "N", "residual_t_levels", "checks")


def checks(case: dict):
    ref, tol = case["results"], case["tolerance"]
    vmax = _vmax(ref)
    yield "loglik", ref["loglik"], tol["loglik_abs"], lambda g: g["loglik"]
    fx = ref["fixed"]
    for i, name in enumerate(fx["names"]):
        se = fx["se"][i]
        yield f"coef {name}", fx["coef"][i], tol["coef_rel"] * max(abs(fx["coef"][i]), se), \
            lambda g, n=name: g["fixed"]["coef"][g["fixed"]["names"].index(n)]
        yield f"se {name}", se, tol["se_rel"] * abs(se), \
            lambda g, n=name: g["fixed"]["se"][g["fixed"]["names"].index(n)]
    for j, r in enumerate(ref.get("random") or []):
        for a, ta in enumerate(r["terms"]):
            for b in range(a, len(r["terms"])):
                tb = r["terms"][b]
                pick = functools.partial(_random_entry, level=r["level"], terms=r["terms"], ordinal=j, ta=ta, tb=tb)
                v = r["cov"][a][b]
                if v is not None:
                    yield f"cov[{r['level']}]({ta},{tb})", v, tol["var_rel"] * max(abs(v), vmax * 1e-3), \
                        functools.partial(pick, key="cov")
                se = (r.get("se") or [[None] * 9] * 9)[a][b]
                if se is not None:
                    yield f"se cov[{r['level']}]({ta},{tb})", se, tol["se_rel"] * abs(se), \
                        functools.partial(pick, key="se")
    res = ref.get("residual") or {}
    if res.get("var") is not None:
        yield "residual var", res["var"], tol["var_rel"] * max(abs(res["var"]), vmax * 1e-3), \
            lambda g: g["residual"]["var"]
    if res.get("se") is not None:
        yield "residual se", res["se"], tol["se_rel"] * abs(res["se"]), lambda g: g["residual"]["se"]
    for key, value in ref["extra"].items():
        if key.startswith(SKIP_EXTRA) or key in SKIP_EXTRA:
            continue
        yield from _extra(key, value, tol, vmax)


def _extra(key, value, tol, vmax):
    def tolerance(v):
        if key.endswith("_se"):
            return tol["se_rel"] * abs(v)
        if "var" in key or "cov" in key:
            return tol["var_rel"] * max(abs(v), vmax * 1e-3)
        return (tol.get("extra") or {}).get(key, tol["coef_rel"] * max(abs(v), 1.0))
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        yield f"extra {key}", value, tolerance(value), lambda g: g["extra"][key]
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (int, float)):
                yield f"extra {key}[{k}]", v, tolerance(v), lambda g, k=k: g["extra"][key][k]
    elif isinstance(value, list) and value and isinstance(value[0], list):
        for i, row in enumerate(value):
            for j, v in enumerate(row):
                if isinstance(v, (int, float)):
                    yield f"extra {key}[{i}][{j}]", v, tolerance(v), \
                        lambda g, i=i, j=j: g["extra"][key][i][j]


def _vmax(ref: dict) -> float:
    values = [r["cov"][i][i] for r in ref.get("random") or [] for i in range(len(r["cov"]))]
    values.append((ref.get("residual") or {}).get("var") or 0.0)
    extra = ref["extra"]
    values += [v for v in (extra.get("residual_var_by") or {}).values()]
    values += [v for row in extra.get("residual_cov_matrix") or [] for v in row if v is not None]
    return max(values)


def _random_entry(got: dict, level: str, terms: list, ordinal: int, ta: str, tb: str, key: str) -> float:
    matches = [g for g in got["random"] if g["level"].lower() == level.lower() and set(g["terms"]) == set(terms)]
    g = matches[0] if len(matches) == 1 else got["random"][ordinal]
    return g[key][g["terms"].index(ta)][g["terms"].index(tb)]


def params(cases: list[dict], known_bad: dict | None = None) -> list:
    """pytest params (case id, label, reference, tolerance, getter), one per number; entries of
    ``known_bad`` ({(case id, label): reason}) are strict expected failures."""
    known_bad = known_bad or {}
    return [pytest.param(c["id"], label, ref, tol, get, id=f"{c['id']}::{label}",
                         marks=[pytest.mark.xfail(strict=True, reason=known_bad[(c["id"], label)])]
                         if (c["id"], label) in known_bad else [])
            for c in cases for label, ref, tol, get in checks(c)]
