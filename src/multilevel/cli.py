"""Command line: ``multilevel "mixed weight week || id:" --data pig.csv``.

``--predict fitted,residuals --out pred.csv`` writes the data with the
predictions as new columns (Stata's ``predict``; NaN outside the estimation
sample), ``--html report.html`` the HTML table, ``--style lme4`` prints
lme4's summary instead of Stata's table.
"""
from __future__ import annotations

import argparse
import sys

from . import fit, mixed
from .spec import DataError, SpecError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="multilevel", description="Fit a multilevel model and print "
                                     "Stata's table.")
    parser.add_argument("command", help="a Stata command ('mixed y x || id:') or an lme4 formula")
    parser.add_argument("--data", required=True, help="CSV file with the data")
    parser.add_argument("--reml", action="store_true", help="REML instead of ML (lme4 formulas)")
    parser.add_argument("--stset", metavar="'stset time, failure(d)'",
                        help="survival-time settings for mestreg, as Stata's stset")
    parser.add_argument("--nolog", action="store_true", help="do not print the iteration log")
    parser.add_argument("--style", choices=("stata", "lme4"), default="stata",
                        help="print Stata's table (default) or lme4's summary")
    parser.add_argument("--predict", metavar="KIND", help="predictions to write with --out: xb, stdp, fitted, "
                        "residuals, rstandard, reffects, reses (several: fitted,residuals)")
    parser.add_argument("--out", metavar="FILE.csv", help="CSV file for the data and the --predict columns "
                        "('-': standard output)")
    parser.add_argument("--html", metavar="FILE.html", help="also write the results table as an HTML page")
    args = parser.parse_args(argv)
    if bool(args.predict) != bool(args.out):
        parser.error("--predict and --out go together")
    import pandas as pd

    try:
        data = pd.read_csv(args.data)
        if "~" in args.command:
            res = mixed(args.command, data=data, reml=args.reml or None)
        else:
            from .spec.stata import COMMANDS

            known = args.command.split()[0].lower() in COMMANDS
            cmd = args.command if known else "mixed " + args.command
            res = fit(cmd, data=data, stset=args.stset)
    except (SpecError, DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.predict:
            _write_predictions(res, data, args.predict, args.out)
        if args.html:
            _write_html(res, args.html)
    except (SpecError, DataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out == "-":
        return 0
    if not (args.nolog or getattr(res, "options", {}).get("nolog")) and hasattr(res, "iteration_log"):
        print(res.iteration_log() + "\n")
    print(res.summary(style=args.style) if hasattr(res, "summary") else res)
    return 0


def _write_predictions(res, data, kinds: str, out: str) -> None:
    """The data with one column per prediction (``reffects``/``reses``: one per random effect)."""
    import pandas as pd

    columns = []
    for kind in (k.strip() for k in kinds.split(",") if k.strip()):
        pred = res.predict(kind)
        frame = pred.to_frame() if isinstance(pred, pd.Series) else pred.add_prefix(f"{kind}_")
        columns.append(frame)                 # indexed by the positions of the rows in data
    merged = data.join(pd.concat(columns, axis=1), how="left")
    merged.to_csv(sys.stdout if out == "-" else out, index=False)


def _write_html(res, path: str) -> None:
    from html import escape

    page = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{escape(res.title)}</title></head>\n"
            f"<body>\n{res._repr_html_()}\n</body></html>\n")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)


if __name__ == "__main__":
    sys.exit(main())
