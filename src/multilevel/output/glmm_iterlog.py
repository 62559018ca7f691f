"""The iteration log of a GLMM fit, in Stata's layout ([ME] meglm, "Fitting full model").

What the fit records: the log likelihood of the model without random effects
(Stata's "Fitting fixed-effects model", shown at its converged value) and
every evaluation of the joint optimization, of which the improvements are
listed (:func:`multilevel.output.iterlog.iteration_log`).  The Laplace stage
that starts the variances is counted in the evaluations but not logged.
"""
from __future__ import annotations

from .iterlog import iteration_log as _improvements
from .stata_fmt import fmt_g


def iteration_log(res) -> str:
    opt = res.optsummary
    lines = ["Fitting fixed-effects model:", "",
             f"Iteration 0:  log likelihood = {fmt_g(res.ll_fixed_only, 10).strip()}", "",
             "Fitting full model:", ""]
    lines += _improvements(opt)
    lines += ["", f"({opt.n_evals} evaluations of the log likelihood; optimizer {opt.backend}, "
                  f"{opt.return_code or 'done'})"]
    return "\n".join(lines) + "\n"
