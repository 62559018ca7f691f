#!/usr/bin/env python3
"""Time multilevel's user-facing fit calls on the benchmark problems B1-B6.

Usage (from the repository root)::

    .venv/bin/python benchmarks/run.py              # B1, B2, B3, B4 (1e5, 1e6 rows), B5, B6
    .venv/bin/python benchmarks/run.py --quick      # fewer repeats (smoke test, ~1-2 min)
    .venv/bin/python benchmarks/run.py --scale      # also B4 at 1e7 rows
    .venv/bin/python benchmarks/run.py --peers      # also statsmodels (installed into the venv
                                                    # on demand), mixedlm if importable, lme4 if
                                                    # Rscript exists
    .venv/bin/python benchmarks/run.py --only B1,B4_1e6   # a subset; merged into the results
    .venv/bin/python benchmarks/run.py --peers-only       # peers only, merged into the results

Writes ``benchmarks/results.md`` (table) and ``benchmarks/results.json`` (raw).

Protocol (as the peer kit in shared/bench):

* every problem (and every peer) runs in its own fresh subprocess
  (``run.py --worker PROBLEM``), so peak RSS is per problem;
* timed: the user-facing call ``multilevel.fit("mixed ...", data)`` /
  ``multilevel.mixed("y ~ ...", data)`` (parse -> design -> optimizer ->
  results object); not timed: interpreter start, reading the data;
* ``import multilevel`` is timed on its own (pandas is already imported, as
  it is for anyone holding a DataFrame), then the *first call*, then the
  warm repeats; "median" is over the warm repeats (the first call when
  there is only one fit);
* B1 cold start = import multilevel + first fit, median over several fresh
  processes;
* peak memory: ``ru_maxrss`` of the worker process (interpreter + data + all
  fits) and, from one extra fit under ``tracemalloc``, the peak of memory
  allocated during a fit (numpy buffers included);
* repeats stop early once the warm fits of a problem exceed a time budget.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "tests", "data")
sys.path.insert(0, HERE)

GiB = 1024 ** 3
MiB = 1024 ** 2

# --------------------------------------------------------------------------- problems
# kind: how the user calls it; text: the model; data: file or gen_data name
PROBLEMS = {
    "B1": dict(title="pig, random intercept, ML", call="fit", text="mixed weight week || id:",
               data="pig", reps=300, quick=50, ref_loglik=-1014.9268, peer_key="B1"),
    "B2": dict(title="sleepstudy, random slope, unstructured, REML", call="fit",
               text="mixed Reaction Days || Subject: Days, covariance(unstructured) reml",
               data="sleepstudy", reps=100, quick=20, ref_loglik=-871.8141, peer_key="B2"),
    "B3": dict(title="crossed s × d × dept:service (InstEval-sized, simulated), ML", call="mixed",
               text="y ~ 1 + service + (1|s) + (1|d) + (1|dept:service)",
               data="b3", reps=3, quick=1, ref_loglik=None, peer_key="B3"),
    "B4_1e5": dict(title="2-level, (1 + x1 | g) unstructured, ML, 2,000 groups", call="mixed",
                   text="y ~ x1 + x2 + x3 + x4 + x5 + (1 + x1 | g)",
                   data="b4_1e5", reps=5, quick=2, ref_loglik=None, peer_key=None),
    "B4_1e6": dict(title="2-level, (1 + x1 | g) unstructured, ML, 20,000 groups", call="mixed",
                   text="y ~ x1 + x2 + x3 + x4 + x5 + (1 + x1 | g)",
                   data="b4_1e6", reps=3, quick=1, ref_loglik=-2151505.6340, peer_key="B4"),
    "B4_1e7": dict(title="2-level, (1 + x1 | g) unstructured, ML, 200,000 groups", call="mixed",
                   text="y ~ x1 + x2 + x3 + x4 + x5 + (1 + x1 | g)",
                   data="b4_1e7", reps=3, quick=1, ref_loglik=None, peer_key=None),
    "B4_ar1": dict(title="B4 1e6 with AR(1) residuals within groups (issue 4: < 3× B4_1e6)", call="fit",
                   text="mixed y x1 x2 x3 x4 x5 || g: x1, covariance(unstructured) residuals(ar 1, t(t))",
                   data="b4_1e6_t", reps=3, quick=1, ref_loglik=None, peer_key=None),
    # GLMMs; reference logliks: tests/references/glmm_bench (lme4 polished; own mean-variance AGQ)
    "B5a_lap": dict(title="Contraception logistic, 60 districts, Laplace", call="fit",
                    text="melogit c_use urban age age2 child1 child2 child3 || district:, intmethod(laplace)",
                    data="bangladesh", reps=30, quick=10, ref_loglik=-1186.3643, peer_key="B5a"),
    "B5a_agq7": dict(title="Contraception logistic, 60 districts, mvaghermite 7 points", call="fit",
                     text="melogit c_use urban age age2 child1 child2 child3 || district:",
                     data="bangladesh", reps=30, quick=10, ref_loglik=-1186.2294, peer_key="B5a"),
    "B5b_lap": dict(title="200,000-row logistic, 2,000 groups, Laplace", call="fit",
                    text="melogit y x1 x2 x3 || g:, intmethod(laplace)",
                    data="b5b", reps=5, quick=2, ref_loglik=-114905.5389, peer_key="B5b"),
    "B5b_agq7": dict(title="200,000-row logistic, 2,000 groups, mvaghermite 7 points", call="fit",
                     text="melogit y x1 x2 x3 || g:",
                     data="b5b", reps=5, quick=2, ref_loglik=-114900.2536, peer_key="B5b"),
    "B6": dict(title="grouseticks Poisson, crossed brood × location, Laplace", call="fit",
               text="mepoisson ticks i.year height_s || _all: R.brood || location:, intmethod(laplace)",
               data="grouseticks", reps=40, quick=10, ref_loglik=-987.9382, peer_key="B6"),
}
GLMM = ["B5a_lap", "B5a_agq7", "B5b_lap", "B5b_agq7", "B6"]
DEFAULT = ["B1", "B2", "B3", "B4_1e5", "B4_1e6", "B4_ar1"] + GLMM

# Targets from the issues: (seconds for the warm median, text)
TARGETS = {
    "B1": (0.001, "warm < 1 ms; import + first fit < 0.5 s (issue 7)"),
    "B2": (None, "— (peers: mixedlm 3.8 ms, lme4 15 ms)"),
    "B3": (1.0, "< 1 s"),
    "B4_1e5": (None, "linear growth"),
    "B4_1e6": (1.0, "< 1 s (stretch 0.5 s); peak < 1.5 GiB"),
    "B4_ar1": (None, "< 3× B4_1e6"),
    "B4_1e7": (None, "linear growth"),
    "B5a_lap": (0.1, "< 0.1 s"),
    "B5a_agq7": (0.1, "< 0.1 s"),
    "B5b_lap": (1.0, "< 1 s"),
    "B5b_agq7": (1.0, "< 1 s (fastest peer 2.8 s, lme4 30 s)"),
    "B6": (0.1, "< 0.1 s"),
}
COLD_TARGET_S = 0.5
B4_MEM_TARGET = 1.5 * GiB

# Recorded peers, shared/design/PEERS.md (2026-11-24, this machine): median seconds.
# B3 there is the real lme4::InstEval (here: simulated data of the same size).
RECORDED_PEERS = {
    "B1": "mixedlm 3.9 ms · nlme 7 ms · lme4 14 ms · statsmodels 44 ms",
    "B2": "mixedlm 3.8 ms · nlme 9 ms · lme4 15 ms · statsmodels 52 ms",
    "B3": "real InstEval: mixedlm 3.2 s · lme4 20.8 s (6.9 s OpenBLAS) · floor 0.06 s",
    "B4_1e6": "mixedlm 2.4 s · nlme 16.6 s · lme4 17.6 s · statsmodels 41.9 s · floor 0.066 s",
    "B5a_lap": "mixedlm 0.26 s · glmmTMB 0.41 s · lme4 0.49 s",
    "B5a_agq7": "mixedlm 0.37 s · lme4 0.71 s (both mode-curvature AGQ-7)",
    "B5b_lap": "mixedlm 2.8 s · glmmTMB 29 s · lme4 30 s (ΔLL −1.8e-3) · statsmodels VB > 600 s",
    "B6": "glmmTMB 0.23 s · mixedlm 0.25 s · lme4 0.27 s",
}

# Peers per problem (run with --peers)
PEER_PROBLEMS = {
    "statsmodels": ["B1", "B2", "B4_1e5", "B4_1e6"],
    "mixedlm": ["B1", "B2", "B3", "B4_1e5", "B4_1e6"],
    "lme4": ["B1", "B2", "B3", "B4_1e5", "B4_1e6"] + GLMM,
}
PEER_REPS = {"B1": 10, "B2": 10, "B3": 1, "B4_1e5": 2, "B4_1e6": 1, "B4_1e7": 1,
             "B5a_lap": 10, "B5a_agq7": 10, "B5b_lap": 1, "B5b_agq7": 1, "B6": 10}
IN_TESTS = ("pig", "sleepstudy", "grouseticks")   # data files in tests/data


# --------------------------------------------------------------------------- data
def load_data(name: str):
    import pandas as pd

    if name in IN_TESTS:
        return pd.read_csv(os.path.join(DATA, f"{name}.csv"))
    if name == "bangladesh":  # = mlmRev::Contraception (age centred)
        df = pd.read_csv(os.path.join(DATA, "bangladesh.csv"))
        return df.assign(age2=df["age"] ** 2)
    import gen_data

    if name == "b4_1e6_t":  # B4 with a time index within each group
        df = gen_data.load("b4_1e6")
        return df.assign(t=df.groupby("g").cumcount())
    return gen_data.load(name)


def _rss_now() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _maxrss() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


# --------------------------------------------------------------------------- worker
def _fit_closure(problem: str, peer: str, dat):
    P = PROBLEMS[problem]
    if peer == "multilevel":
        import multilevel as ml

        if P["call"] == "fit":
            return lambda: ml.fit(P["text"], dat)
        return lambda: ml.mixed(P["text"], dat)
    if peer == "statsmodels":
        import statsmodels.formula.api as smf

        if problem == "B1":
            return lambda: smf.mixedlm("weight ~ week", dat, groups=dat["id"]).fit(reml=False)
        if problem == "B2":
            return lambda: smf.mixedlm("Reaction ~ Days", dat, groups=dat["Subject"],
                                       re_formula="~Days").fit(reml=True)
        if problem.startswith("B4"):
            return lambda: smf.mixedlm("y ~ x1 + x2 + x3 + x4 + x5", dat, groups=dat["g"],
                                       re_formula="~x1").fit(reml=False)
    if peer == "mixedlm":
        import mixedlm as mlm

        f = {"B1": ("weight ~ week + (1|id)", False), "B2": ("Reaction ~ Days + (Days|Subject)", True),
             "B3": ("y ~ 1 + service + (1|s) + (1|d) + (1|dept_service)", False)}.get(
            problem, ("y ~ x1 + x2 + x3 + x4 + x5 + (1 + x1|g)", False))
        if problem == "B3":
            dat["dept_service"] = dat["dept"].astype(str) + ":" + dat["service"].astype(str)
        return lambda: mlm.lmer(f[0], dat, REML=f[1])
    raise SystemExit(f"{peer} cannot fit {problem}")


def _summary(peer: str, res) -> dict:
    out: dict = {}
    try:
        if peer == "multilevel":
            out["loglik"] = float(res.loglik)
            opt = res.optsummary
            out["n_evals"] = int(opt.n_evals)
            out["converged"] = bool(opt.converged)
            out["optimizer"] = f"{opt.backend} {opt.return_code}"
        elif peer == "statsmodels":
            out["loglik"] = float(res.llf)
            out["converged"] = bool(res.converged)
        elif peer == "mixedlm":
            out["loglik"] = float(res.logLik().value)
    except Exception as exc:  # the API is moving; never lose the timing over a summary
        out["summary_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return out


def worker(problem: str, peer: str, reps: int, budget: float, trace: bool) -> dict:
    import warnings

    import numpy as np  # noqa: F401  (loaded with pandas anyway; not part of the timings)

    t_load = time.perf_counter()
    dat = load_data(PROBLEMS[problem]["data"])
    out = {"problem": problem, "peer": peer, "rows": int(len(dat)),
           "load_s": time.perf_counter() - t_load,
           "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}
    gc.collect()
    t0 = time.perf_counter()
    fitf = _fit_closure(problem, peer, dat)   # imports the library
    out["import_s"] = time.perf_counter() - t0
    out["rss_before_fit"] = _rss_now()
    out["maxrss_before_fit"] = _maxrss()
    times, cpu, res = [], [], None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()
        for r in range(max(reps, 1)):  # back to back, as timeit (a gc.collect() before each call
            t0, c0 = time.perf_counter(), time.process_time()  # left B1 with cold caches: 2x)
            res = fitf()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            if r >= 1 and sum(times[1:]) > budget:
                break
        out["first_s"] = times[0]
        out["times"] = times
        out["cpu"] = cpu
        warm = times[1:] or times[:1]
        out["median_s"] = statistics.median(warm)
        out["min_s"], out["max_s"] = min(warm), max(warm)
        out["n_warm"] = len(times) - 1
        out["cpu_per_wall"] = sum(cpu) / max(sum(times), 1e-12)
        out["peak_rss"] = _maxrss()
        out.update(_summary(peer, res))
        del res
        if trace:
            import tracemalloc

            gc.collect()
            tracemalloc.start()
            t0 = time.perf_counter()
            r2 = fitf()
            out["traced_fit_s"] = time.perf_counter() - t0
            out["traced_peak"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            del r2
    return out


def _versions(peer: str) -> dict:
    import numpy
    import scipy

    v = {"python": sys.version.split()[0], "numpy": numpy.__version__, "scipy": scipy.__version__}
    try:
        import importlib.metadata as md

        v[peer] = md.version(peer)
    except Exception:
        pass
    return v


def worker_main(args) -> None:
    try:
        out = worker(args.worker, args.peer, args.reps, args.budget, not args.no_trace)
        out["status"] = "ok"
        out["versions"] = _versions(args.peer)
    except Exception as exc:
        import traceback

        out = {"problem": args.worker, "peer": args.peer, "status": "error",
               "error": f"{type(exc).__name__}: {exc}"[:500], "traceback": traceback.format_exc()[-2000:]}
    print("RESULT " + json.dumps(out, default=float), flush=True)


# --------------------------------------------------------------------------- runner
THREADS: int | None = None  # set from --threads


def worker_env() -> dict:
    """Environment of a worker: bytecode cached outside src/ (as an installed package has
    its .pyc files; this machine sets PYTHONDONTWRITEBYTECODE), optional BLAS thread cap."""
    import gen_data

    env = dict(os.environ, PYTHONWARNINGS="ignore",
               PYTHONPYCACHEPREFIX=os.path.join(gen_data.CACHE, "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if THREADS:
        for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = str(THREADS)
    return env


def run_worker(problem: str, peer: str, reps: int, budget: float, timeout: float,
               trace: bool = True) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", problem, "--peer", peer,
           "--reps", str(reps), "--budget", str(budget)]
    if not trace:
        cmd.append("--no-trace")
    env = worker_env()
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"problem": problem, "peer": peer, "status": "timeout",
                "error": f"worker exceeded {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            out = json.loads(line[7:])
            out["process_wall_s"] = wall
            return out
    return {"problem": problem, "peer": peer, "status": "error",
            "error": (p.stderr or p.stdout)[-1500:]}


def cold_start(n: int, timeout: float) -> dict:
    """import multilevel + first pig fit, each in a fresh process (B1's cold target)."""
    vals, walls = [], []
    for _ in range(n):
        r = run_worker("B1", "multilevel", 1, 0.0, timeout, trace=False)
        if r.get("status") != "ok":
            return {"status": r.get("status"), "error": r.get("error")}
        vals.append(r["import_s"] + r["first_s"])
        walls.append(r["process_wall_s"])
    return {"status": "ok", "import_plus_first_s": vals, "median_s": statistics.median(vals),
            "process_wall_s": walls}


def ensure_statsmodels() -> str | None:
    try:
        import statsmodels  # noqa: F401
        return None
    except ImportError:
        pass
    print("installing statsmodels into the venv (peer comparison only) ...", file=sys.stderr)
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "statsmodels"],
                       capture_output=True, text=True)
    return None if p.returncode == 0 else ("pip install statsmodels failed: " + p.stderr[-300:])


def importable(mod: str) -> bool:
    p = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True)
    return p.returncode == 0


def run_lme4(problems: list[str], timeout: float) -> list[dict]:
    """lme4 via Rscript on CSV copies of the same data (skipped when R is absent)."""
    rscript = shutil.which("Rscript")
    if not rscript:
        return [{"problem": pr, "peer": "lme4", "status": "skipped", "error": "Rscript not found"}
                for pr in problems]
    import gen_data

    csv_dir = os.path.join(gen_data.CACHE, "csv")
    os.makedirs(csv_dir, exist_ok=True)
    out = []
    for pr in problems:
        src = PROBLEMS[pr]["data"]
        path = os.path.join(DATA, f"{src}.csv") if src in IN_TESTS else os.path.join(csv_dir, f"{src}.csv")
        if not os.path.exists(path):
            load_data(src).to_csv(path, index=False, float_format="%.17g")
        cmd = [rscript, os.path.join(HERE, "peers_lme4.R"), pr, path, str(PEER_REPS.get(pr, 1))]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
            r = json.loads(line[7:]) if line else {"problem": pr, "peer": "lme4", "status": "error",
                                                   "error": (p.stderr or p.stdout)[-800:]}
        except subprocess.TimeoutExpired:
            r = {"problem": pr, "peer": "lme4", "status": "timeout"}
        out.append(r)
    return out


# --------------------------------------------------------------------------- report
def _fmt_t(s) -> str:
    if s is None:
        return "—"
    if s < 0.1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def _fmt_mib(b) -> str:
    if b is None:
        return "—"
    if b < 10 * MiB:
        return f"{b / MiB:.2f} MiB"
    return f"{b / MiB:,.0f} MiB"


def _git() -> dict:
    def g(*a):
        try:
            return subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT).stdout.strip()
        except OSError:
            return ""
    return {"commit": g("rev-parse", "--short", "HEAD"),
            "dirty_src": bool(g("status", "--porcelain", "--", "src"))}


def _machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return {"cpu": cpu, "ncpu": os.cpu_count(), "mem_gib": round(mem / GiB, 1),
            "platform": platform.platform(), "blas_threads": THREADS or "default",
            "loadavg_start": _loadavg()}


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _verdict(pr: str, r: dict, cold: dict | None) -> str:
    target, text = TARGETS.get(pr, (None, "—"))
    if r.get("status") != "ok":
        return text
    marks = []
    if target is not None:
        marks.append(("time ✅" if r["median_s"] < target else "time ❌"))
    if pr == "B1" and cold and cold.get("status") == "ok":
        marks.append(("cold ✅" if cold["median_s"] < COLD_TARGET_S else "cold ❌"))
    if pr == "B4_1e6":
        marks.append(("mem ✅" if r["peak_rss"] < B4_MEM_TARGET else "mem ❌"))
    return text + (" — " + ", ".join(marks) if marks else "")


def scaling_plot(b4: list[tuple[int, float, str]], path: str) -> str | None:
    """B4's median time against rows on log-log axes, with the line of linear growth through the
    10⁶-row point (or the smallest); the file name, or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [n for n, _, _ in b4]
    secs = [t for _, t, _ in b4]
    n0, t0 = next(((n, t) for n, t, p in b4 if p == "B4_1e6"), (rows[0], secs[0]))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.loglog(rows, secs, "o-", label="multilevel (median of warm fits)")
    ax.loglog(rows, [t0 * n / n0 for n in rows], "--", color="grey", label="linear growth")
    for n, t, _ in b4:
        ax.annotate(f"{t:.3g} s", (n, t), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_xlabel("rows (groups = rows / 50)")
    ax.set_ylabel("seconds")
    ax.set_title("B4: y ~ x1+...+x5 + (1 + x1 | g), ML")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return os.path.basename(path)


def write_report(doc: dict, path_md: str) -> str:
    ours = {r["problem"]: r for r in doc["results"] if r.get("peer") == "multilevel"}
    peers: dict[str, list[dict]] = {}
    for r in doc["results"]:
        if r.get("peer") != "multilevel":
            peers.setdefault(r["problem"], []).append(r)
    cold = doc.get("cold_start")
    lines = [
        "# multilevel benchmarks",
        "",
        f"Run {doc['date']} · multilevel commit `{doc['git']['commit']}`"
        + (" (+ uncommitted changes in src/)" if doc["git"].get("dirty_src") else "")
        + f" · {doc['machine']['cpu']} × {doc['machine']['ncpu']}, {doc['machine']['mem_gib']} GiB"
        + f" · Python {doc['versions'].get('python', '?')}, numpy {doc['versions'].get('numpy', '?')},"
        + f" scipy {doc['versions'].get('scipy', '?')}"
        + f" · BLAS threads: {doc['machine'].get('blas_threads')}"
        + f" · load average {doc['machine'].get('loadavg_start')} at start, "
        + f"{doc['machine'].get('loadavg_end')} at end" + (" · **--quick**" if doc.get("quick") else "")
        + (f" · peers run {doc['peers_date']}" if doc.get("peers_date") else ""),
        "",
        "Time = wall clock of the user-facing call (`multilevel.fit(\"mixed ...\")` / "
        "`multilevel.mixed(\"y ~ ...\")`: parse → design → optimizer → results), data already "
        "in a DataFrame. *median* = median of the warm repeats (n), *first* = first call in a "
        "fresh process after `import multilevel`. *peak RSS* = whole worker process "
        "(interpreter + data + all fits); *fit peak* = peak traced allocation (tracemalloc) "
        "during one fit. *evals* = objective evaluations (`res.optsummary.n_evals`). "
        "*peer ÷ ours* > 1 means we are faster. How to run and what each problem is: "
        "`benchmarks/README.md`.",
        "",
        "| problem | rows | median (n) | first call | peak RSS | fit peak | evals | loglik (Δ ref) "
        "| target | peers measured here (peer ÷ ours) | recorded peers (PEERS.md) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    order = [p for p in PROBLEMS if p in ours or p in peers]
    for pr in order:
        r = ours.get(pr, {"status": "not run"})
        P = PROBLEMS[pr]
        if r.get("status") == "ok":
            med = f"{_fmt_t(r['median_s'])} ({r['n_warm']})"
            first = _fmt_t(r["first_s"])
            if pr == "B1":
                first += f" (+ import {_fmt_t(r['import_s'])})"
            ll = r.get("loglik")
            lls = "—" if ll is None else f"{ll:.4f}"
            if ll is not None and P["ref_loglik"] is not None:
                d = ll - P["ref_loglik"]
                lls += f" ({d:+.1e})" if abs(d) > 1e-3 else " (ok)"
            row = [med, first, _fmt_mib(r.get("peak_rss")), _fmt_mib(r.get("traced_peak")),
                   str(r.get("n_evals", "—")), lls]
        else:
            err = str(r.get("error") or "").strip().splitlines()
            row = [f"{r.get('status')}" + (f": {err[-1][:80]}" if err else ""), "", "", "", "", ""]
        ptxt = []
        for q in peers.get(pr, []):
            if q.get("status") == "ok":
                t = f"{q['peer']} {_fmt_t(q['median_s'])}" + (" [1 fit]" if not q.get("n_warm") else "")
                if r.get("status") == "ok":
                    t += f" ({q['median_s'] / r['median_s']:.1f}×)"
                if r.get("status") == "ok" and q.get("loglik") is not None and r.get("loglik") is not None:
                    dll = q["loglik"] - r["loglik"]
                    if abs(dll) > 1e-3:
                        t += f" ΔLL {dll:+.2g}"
                ptxt.append(t)
            else:
                ptxt.append(f"{q['peer']}: {q.get('status')}")
        rows = r.get("rows") or next((q.get("rows") for q in peers.get(pr, []) if q.get("rows")), None)
        cells = [f"**{pr}** {P['title']}", f"{rows:,}" if rows else "—", *row,
                 _verdict(pr, r, cold), "; ".join(ptxt) or "—", RECORDED_PEERS.get(pr, "—")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    if cold:
        if cold.get("status") == "ok":
            lines.append(f"**Cold start (B1)**: `import multilevel` + first pig fit in a fresh process, "
                         f"median of {len(cold['import_plus_first_s'])}: **{_fmt_t(cold['median_s'])}** "
                         f"(each: {', '.join(_fmt_t(v) for v in cold['import_plus_first_s'])}; whole "
                         f"process incl. interpreter, pandas and CSV: "
                         f"{', '.join(_fmt_t(v) for v in cold['process_wall_s'])}). Target < {_fmt_t(COLD_TARGET_S)}.")
        else:
            lines.append(f"**Cold start (B1)**: {cold.get('status')}: {cold.get('error')}")
        lines.append("")
    b4 = [(ours[p]["rows"], ours[p]["median_s"], p) for p in ("B4_1e5", "B4_1e6", "B4_1e7")
          if ours.get(p, {}).get("status") == "ok"]
    if len(b4) >= 2:
        lines.append("**B4 scaling** (time per million rows; flat = linear growth): "
                     + " · ".join(f"{p[3:]}: {_fmt_t(t)} → {t / (n / 1e6):.3g} s per 10⁶ rows"
                                  for n, t, p in b4))
        lines.append("")
        png = scaling_plot(b4, os.path.join(os.path.dirname(path_md), "scaling.png"))
        if png:
            lines.append(f"![B4 time against rows, log-log, with the line of linear growth]({png})")
            lines.append("")
    extra = [r for r in ours.values() if r.get("status") == "ok"]
    if extra:
        lines.append("Details: " + " · ".join(
            f"{r['problem']}: first {_fmt_t(r['first_s'])}, min–max {_fmt_t(r['min_s'])}–{_fmt_t(r['max_s'])}, "
            f"CPU/wall {r['cpu_per_wall']:.2f}, warm CPU median {_fmt_t(statistics.median(r['cpu'][1:] or r['cpu']))}, BLAS threads {r.get('blas_threads', '?')}, {r.get('optimizer', '')}"
            + ("" if r.get("converged", True) else " **not converged**") for r in extra))
        lines.append("")
    text = "\n".join(lines)
    with open(path_md, "w") as fh:
        fh.write(text)
    return text


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description="multilevel benchmarks (B1-B6)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller budgets")
    ap.add_argument("--scale", action="store_true", help="also B4 at 10,000,000 rows")
    ap.add_argument("--peers", action="store_true", help="also statsmodels / mixedlm / lme4")
    ap.add_argument("--peers-only", action="store_true",
                    help="run only the peers and merge them into the existing results.json")
    ap.add_argument("--only", help="comma-separated problems (B1,B2,B3,B4_1e5,B4_1e6,B4_1e7,B5a_lap,...); "
                    "results are merged into the existing results.json")
    ap.add_argument("--reps", type=int, help="override the number of fits per problem")
    ap.add_argument("--budget", type=float, help="seconds of warm fits per problem before stopping")
    ap.add_argument("--timeout", type=float, default=580.0, help="seconds per worker process")
    ap.add_argument("--cold", type=int, default=5, help="fresh processes for the B1 cold start")
    ap.add_argument("--out", default=HERE, help="directory for results.md / results.json")
    ap.add_argument("--threads", type=int, help="cap BLAS threads in the workers (OPENBLAS_NUM_THREADS)")
    # internal: one problem in this process
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--peer", default="multilevel", help=argparse.SUPPRESS)
    ap.add_argument("--no-trace", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        if args.budget is None:
            args.budget = 60.0
        if args.reps is None:
            args.reps = PROBLEMS[args.worker]["reps"]
        return worker_main(args)

    global THREADS
    THREADS = args.threads
    machine = _machine()
    problems = args.only.split(",") if args.only else DEFAULT + (["B4_1e7"] if args.scale else [])
    for p in problems:
        if p not in PROBLEMS:
            raise SystemExit(f"unknown problem {p}; choose from {', '.join(PROBLEMS)}")
    budget = args.budget if args.budget is not None else (15.0 if args.quick else 90.0)

    import gen_data

    for p in problems:  # generate data up front (not timed)
        src = PROBLEMS[p]["data"]
        if src not in IN_TESTS + ("bangladesh",):
            gen_data.ensure(src.removesuffix("_t"))

    results = []
    cold = None
    for p in ([] if args.peers_only else problems):
        reps = args.reps or PROBLEMS[p]["quick" if args.quick else "reps"]
        print(f"[{time.strftime('%H:%M:%S')}] {p}: multilevel, up to {reps} fits ...", file=sys.stderr, flush=True)
        r = run_worker(p, "multilevel", reps, budget, args.timeout)
        _echo(r)
        results.append(r)
        if p == "B1" and args.cold > 0:
            cold = cold_start(2 if args.quick else args.cold, args.timeout)
            print(f"    cold start: {cold}", file=sys.stderr)

    if args.peers or args.peers_only:
        note = ensure_statsmodels() if set(problems) & set(PEER_PROBLEMS["statsmodels"]) else None
        for peer in ("statsmodels", "mixedlm"):
            if peer == "statsmodels" and note:
                results += [{"problem": p, "peer": peer, "status": "skipped", "error": note}
                            for p in problems if p in PEER_PROBLEMS[peer]]
                continue
            if peer == "mixedlm" and not importable("mixedlm"):
                print("    mixedlm not importable: skipped (not installed by run.py)", file=sys.stderr)
                continue
            for p in problems:
                if p not in PEER_PROBLEMS[peer]:
                    continue
                print(f"[{time.strftime('%H:%M:%S')}] {p}: {peer} ...", file=sys.stderr, flush=True)
                r = run_worker(p, peer, 1 if args.quick else PEER_REPS.get(p, 1), budget, args.timeout,
                               trace=False)
                _echo(r)
                results.append(r)
        lme = run_lme4([p for p in problems if p in PEER_PROBLEMS["lme4"]], args.timeout)
        if lme and lme[0].get("status") == "skipped":
            print("    lme4: Rscript not found, skipped", file=sys.stderr)
        else:
            results += lme

    path_json = os.path.join(args.out, "results.json")
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    for r in results:
        r.setdefault("date", now)
    old = None
    if (args.only or args.peers_only) and os.path.exists(path_json):  # merge into the previous run
        with open(path_json) as fh:
            old = json.load(fh)
        keep = [r for r in old.get("results", [])
                if (r["problem"], r.get("peer")) not in {(x["problem"], x.get("peer")) for x in results}]
        results = keep + results
        if cold is None:
            cold = old.get("cold_start")
    order = list(PROBLEMS)
    results.sort(key=lambda r: (order.index(r["problem"]), r.get("peer") != "multilevel", r.get("peer", "")))
    versions = next((r["versions"] for r in results if r.get("peer") == "multilevel" and r.get("versions")), {})
    doc = {"date": now, "quick": args.quick, "git": _git(),
           "machine": dict(machine, loadavg_end=_loadavg()), "versions": versions, "cold_start": cold,
           "results": results}
    if args.peers_only and old:  # the header describes the run that timed multilevel
        doc.update({k: old[k] for k in ("date", "quick", "git", "machine", "versions") if k in old})
        doc["peers_date"] = now
    with open(path_json, "w") as fh:
        json.dump(doc, fh, indent=1, default=float)
    text = write_report(doc, os.path.join(args.out, "results.md"))
    print(text)


def _echo(r: dict) -> None:
    if r.get("status") == "ok":
        print(f"    median {_fmt_t(r['median_s'])} (n={r['n_warm']}), first {_fmt_t(r['first_s'])}, "
              f"import {_fmt_t(r['import_s'])}, peak RSS {_fmt_mib(r['peak_rss'])}, "
              f"fit peak {_fmt_mib(r.get('traced_peak'))}, loglik {r.get('loglik')}, evals {r.get('n_evals')}",
              file=sys.stderr, flush=True)
    else:
        print(f"    {r.get('status')}: {str(r.get('error'))[:300]}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
