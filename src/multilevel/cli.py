"""Command line: ``multilevel "mixed weight week || id:" --data pig.csv``."""
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
    parser.add_argument("--nolog", action="store_true", help="do not print the iteration log")
    args = parser.parse_args(argv)
    import pandas as pd

    try:
        data = pd.read_csv(args.data)
        if "~" in args.command:
            res = mixed(args.command, data=data, reml=args.reml or None)
        else:
            cmd = args.command if args.command.split()[0] in ("mixed", "xtmixed") else "mixed " + args.command
            res = fit(cmd, data=data)
    except (SpecError, DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not (args.nolog or res.options.get("nolog")):
        print(res.iteration_log() + "\n")
    print(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
