# Reference values for mestreg's survival families (tests/test_survival.py):
# survival::survreg fits of the models without random effects (the fixed-only models that
# start mestreg and give its LR test) on tests/data/surv_weibull_sim7.csv.
# Run from the repository root:  Rscript tests/references/survival/make.R
library(survival)
library(jsonlite)
d <- read.csv("tests/data/surv_weibull_sim7.csv")
out <- list(provenance = list(R = R.version.string, survival = as.character(packageVersion("survival")),
                              date = as.character(Sys.Date()),
                              note = "survreg AFT coefficients; log-likelihood on the time scale (with the -log t Jacobian), as Stata's streg"))
for (dist in c("weibull", "exponential", "lognormal", "loglogistic")) {
  f <- survreg(Surv(time, died) ~ x + z, data = d, dist = dist)
  out[[dist]] <- list(coef = unname(coef(f)), names = names(coef(f)), loglik = f$loglik[2],
                      log_scale = log(f$scale), se = unname(sqrt(diag(vcov(f)))[1:3]))
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/references/survival/survreg.json")
