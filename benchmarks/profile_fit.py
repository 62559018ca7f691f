#!/usr/bin/env python3
"""Profile a benchmark fit with cProfile and say where the time goes.

Usage (from the repository root)::

    .venv/bin/python benchmarks/profile_fit.py B4_1e6 B3          # warm fit (after one unprofiled fit)
    .venv/bin/python benchmarks/profile_fit.py B1 --cold          # the first call (lazy imports)
    .venv/bin/python benchmarks/profile_fit.py B3 --top 30 --save benchmarks/profiles
    .venv/bin/python benchmarks/profile_fit.py B3 --lines multilevel.lmm.model:LinearMixedModel.factor

For each problem it prints

1. wall time with and without the profiler, objective evaluations
   (``res.optsummary.n_evals``) and time per evaluation;
2. multilevel's functions by cumulative time (% of the profiled fit,
   calls, time per call): the pipeline stages (parse, design, model setup,
   optimizer, objective, post-fit inference) show up here;
3. the functions with the most *self* time anywhere (numpy, scipy, ...),
   each attributed to the multilevel functions that call it;
4. with ``--lines MODULE:QUALNAME``: seconds per source line of that
   function over one more fit (a small sys.settrace line profiler; callees
   are charged to the calling line).  C code called through operators
   (``@``, ``-``) or f2py LAPACK wrappers never appears in cProfile, only as
   "self time" of the calling function; the line timer splits it up.

``--save DIR`` writes ``DIR/PROBLEM.prof`` (open with ``snakeviz`` or
``python -m pstats``).  cProfile adds overhead per Python call, so the
percentages of Python-heavy code are overstated a little; compare with
the unprofiled time printed first.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import PROBLEMS, load_data  # noqa: E402


def _is_ours(func) -> bool:
    return f"{os.sep}multilevel{os.sep}" in func[0]


def _name(func) -> str:
    path, line, name = func
    if path == "~":
        return name  # C builtins: "<method 'dot' of ...>"
    parts = path.split(os.sep)
    if "multilevel" in parts:
        short = "/".join(parts[parts.index("multilevel"):])
    elif "site-packages" in parts:
        short = "/".join(parts[parts.index("site-packages") + 1:])
    else:
        short = "/".join(parts[-2:])
    return f"{short}:{line}({name})"


def _attribute(stats, func, amount: float, out: dict, depth: int = 0, seen=()) -> None:
    """Spread ``amount`` of func's self time over its nearest multilevel ancestors."""
    callers = stats[func][4]
    total = sum(v[3] for v in callers.values())
    if not callers or total <= 0 or depth > 8:
        out["(other)"] = out.get("(other)", 0.0) + amount
        return
    for c, v in callers.items():
        share = amount * v[3] / total
        if _is_ours(c):
            out[c] = out.get(c, 0.0) + share
        elif c in seen or c not in stats:
            out["(other)"] = out.get("(other)", 0.0) + share
        else:
            _attribute(stats, c, share, out, depth + 1, seen + (func,))


class LineTimer:
    """Minimal line profiler (sys.settrace) for a few functions: time per source line.

    Time spent in callees is charged to the calling line, so a line that calls
    numpy/scipy shows the cost of that call.  Overhead is a few µs per traced
    line and per Python call, negligible against the ms-scale lines of a fit.
    """

    def __init__(self, targets: list[str]):
        import importlib
        import inspect

        self.codes = {}
        self.source: dict = {}
        for t in targets:
            mod, _, qual = t.partition(":")
            obj = importlib.import_module(mod)
            for part in qual.split("."):
                obj = getattr(obj, part)
            obj = inspect.unwrap(obj)
            self.codes[obj.__code__] = t
            # snapshot the source now: the file may be edited while we run
            src, first = inspect.getsourcelines(obj)
            self.source[obj.__code__] = {first + i: ln for i, ln in enumerate(src)}
        self.times: dict = {}
        self.hits: dict = {}
        self.calls: dict = {}

    def _global(self, frame, event, arg):
        if event == "call" and frame.f_code in self.codes:
            code = frame.f_code
            self.calls[code] = self.calls.get(code, 0) + 1
            state = [frame.f_lineno, time.perf_counter()]

            def local(frame, event, arg, code=code, state=state):
                now = time.perf_counter()
                key = (code, state[0])
                self.times[key] = self.times.get(key, 0.0) + now - state[1]
                if event == "line":
                    self.hits[(code, frame.f_lineno)] = self.hits.get((code, frame.f_lineno), 0) + 1
                state[0] = frame.f_lineno
                state[1] = time.perf_counter()
                return local
            return local
        return None

    def run(self, fn):
        sys.settrace(self._global)
        try:
            return fn()
        finally:
            sys.settrace(None)

    def report(self, wall: float) -> None:
        import linecache

        for code, name in self.codes.items():
            rows = [(ln, t) for (c, ln), t in self.times.items() if c is code]
            tot = sum(t for _, t in rows)
            print(f"\n-- line times in {name} ({self.calls.get(code, 0)} calls, {tot:.3f} s = "
                  f"{100 * tot / wall:.1f}% of the traced fit) --")
            print(f"{'s':>8} {'%fn':>5} {'hits':>6}  line")
            for ln, t in sorted(rows):
                if t < 0.001 * max(tot, 1e-9):
                    continue
                src = self.source[code].get(ln) or linecache.getline(code.co_filename, ln)
                print(f"{t:8.3f} {100 * t / max(tot, 1e-12):5.1f} {self.hits.get((code, ln), 0):6d}  "
                      f"{ln:4d} {src.strip()[:110]}")


def profile_problem(problem: str, top: int, cold: bool, save: str | None,
                    lines: list[str] | None = None) -> None:
    P = PROBLEMS[problem]
    dat = load_data(P["data"])
    import multilevel as ml

    call = (lambda: ml.fit(P["text"], dat)) if P["call"] == "fit" else (lambda: ml.mixed(P["text"], dat))
    warnings.simplefilter("ignore")
    if not cold:
        t0 = time.perf_counter()
        call()                       # warm-up (lazy imports), not profiled
        t_first = time.perf_counter() - t0
        gc.collect()
        t0 = time.perf_counter()
        res = call()
        t_plain = time.perf_counter() - t0
    else:
        t_first = t_plain = None
    gc.collect()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    res = call()
    prof.disable()
    t_prof = time.perf_counter() - t0
    if save:
        os.makedirs(save, exist_ok=True)
        prof.dump_stats(os.path.join(save, f"{problem}{'_cold' if cold else ''}.prof"))

    st = pstats.Stats(prof)
    stats = st.stats  # func -> (cc, nc, tt, ct, callers)
    total = max(v[3] for v in stats.values())  # the outermost call's cumulative time
    n_evals = getattr(getattr(res, "optsummary", None), "n_evals", None)
    print(f"\n=== {problem}: {P['text']}  ({len(dat):,} rows){'  [cold: first call]' if cold else ''}")
    if t_plain is not None:
        print(f"first call {t_first:.3f} s · warm fit {t_plain:.3f} s (unprofiled) · profiled {t_prof:.3f} s")
    else:
        print(f"first call, profiled: {t_prof:.3f} s")
    if n_evals:
        obj = [(f, v) for f, v in stats.items() if _is_ours(f) and f[2] == "objective"]
        per = f" · objective: {obj[0][1][3]:.3f} s cumulative over {obj[0][1][1]} calls" \
              f" = {1e3 * obj[0][1][3] / max(obj[0][1][1], 1):.2f} ms/eval" if obj else ""
        print(f"objective evaluations (optsummary.n_evals): {n_evals}{per}")

    print(f"\n-- multilevel functions by cumulative time (% of {total:.3f} s profiled) --")
    print(f"{'cum s':>8} {'%':>5} {'self s':>7} {'calls':>7} {'ms/call':>8}  function")
    ours = sorted(((f, v) for f, v in stats.items() if _is_ours(f)), key=lambda kv: -kv[1][3])
    for f, (cc, nc, tt, ct, _) in ours[:top]:
        print(f"{ct:8.3f} {100 * ct / total:5.1f} {tt:7.3f} {nc:7d} {1e3 * ct / max(nc, 1):8.3f}  {_name(f)}")

    print("\n-- most self time anywhere, with the multilevel callers that spend it --")
    print(f"{'self s':>8} {'%':>5} {'calls':>8}  function  <- nearest multilevel callers (share of self s)")
    selfs = sorted(stats.items(), key=lambda kv: -kv[1][2])
    for f, (cc, nc, tt, ct, callers) in selfs[:top]:
        if _is_ours(f):
            who = "(multilevel itself)"
        else:
            att: dict = {}
            _attribute(stats, f, tt, att)
            cl = sorted(att.items(), key=lambda x: -x[1])[:3]
            who = ", ".join(f"{c if isinstance(c, str) else _name(c)} {t:.3f}" for c, t in cl)
        print(f"{tt:8.3f} {100 * tt / total:5.1f} {nc:8d}  {_name(f)}  <- {who}")

    if lines:
        lt = LineTimer(lines)
        gc.collect()
        t0 = time.perf_counter()
        lt.run(call)
        wall = time.perf_counter() - t0
        print(f"\n(line timing: one more fit under sys.settrace, {wall:.3f} s)")
        lt.report(wall)


def main() -> None:
    ap = argparse.ArgumentParser(description="cProfile a benchmark fit")
    ap.add_argument("problems", nargs="+", help=", ".join(PROBLEMS))
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--cold", action="store_true", help="profile the first call (no warm-up)")
    ap.add_argument("--save", metavar="DIR", help="write DIR/PROBLEM.prof")
    ap.add_argument("--lines", action="append", metavar="MODULE:QUALNAME",
                    help="also time each source line of this function, e.g. "
                    "multilevel.lmm.model:LinearMixedModel.factor (repeatable)")
    args = ap.parse_args()
    for p in args.problems:
        if p not in PROBLEMS:
            raise SystemExit(f"unknown problem {p}; choose from {', '.join(PROBLEMS)}")
    if args.cold and len(args.problems) > 1:
        raise SystemExit("--cold profiles one problem per process")
    for p in args.problems:
        profile_problem(p, args.top, args.cold, args.save, args.lines)


if __name__ == "__main__":
    main()
