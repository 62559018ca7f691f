## REML fits with AR(1) residuals within groups (the O(groups) Markov path of
## lmm/rside.py and its analytic gradient in lmm/markov_gradient.py).
## Run from the repository root:  Rscript tests/references/markov/make.R
## nlme lme(..., correlation = corAR1(form = ~ time | mare), method = "REML") on the
## ovary data (tests/data/ovary.csv; time = 1..n_j within mare, no gaps) and on the same
## data with every 7th row dropped (time gaps of 2), which exercises the multi-gap statistics.
## Stata's and nlme's REML criteria are the same restricted likelihood of y (no |X'X| term).

source("tests/references/common.R")
suppressPackageStartupMessages(library(nlme))

OUT <- file.path(REF_ROOT, "markov")
VERS <- pkg_version_string(c("nlme", "jsonlite"))

ov <- read_data("ovary.csv")
ov <- ov[order(ov$mare, ov$time), ]

fit_one <- function(d, random, id, stata, subset) {
  m <- lme(follicles ~ sin1 + cos1, random = random, data = d,
           correlation = corAR1(form = ~ time | mare), method = "REML",
           control = lmeControl(msMaxIter = 500, msTol = 1e-12, tolerance = 1e-10))
  vc <- unclass(getVarCov(m)); attributes(vc) <- list(dim = dim(vc))
  stata_order <- c(seq_len(ncol(vc))[-1], 1)   # Stata lists the slopes first, _cons last
  vc <- vc[stata_order, stata_order, drop = FALSE]
  rho <- as.numeric(coef(m$modelStruct$corStruct, unconstrained = FALSE))
  fe <- fixef(m)
  write_case(list(
    id = id, dataset = "ovary.csv", subset = subset, stata = stata,
    reference = sprintf("nlme lme(follicles ~ sin1 + cos1, random = %s, correlation = corAR1(form = ~ time | mare), method = 'REML') (%s), %s",
                        deparse(random), VERS, format(Sys.Date())),
    results = list(loglik = as.numeric(logLik(m)),
                   coef = list(sin1 = unname(fe["sin1"]), cos1 = unname(fe["cos1"]), `_cons` = unname(fe["(Intercept)"])),
                   re_cov = vc, residual_var = m$sigma^2, ar1_rho = rho)),
    file.path(OUT, paste0(id, ".json")))
}

fit_one(ov, ~ 1 | mare, "ovary_ar1_reml",
        "mixed follicles sin1 cos1 || mare:, residuals(ar 1, t(time)) reml", NULL)
fit_one(ov, ~ sin1 | mare, "ovary_ar1_slope_reml",
        "mixed follicles sin1 cos1 || mare: sin1, covariance(unstructured) residuals(ar 1, t(time)) reml", NULL)
gap <- ov[-seq(1, nrow(ov), by = 7), ]
fit_one(gap, ~ 1 | mare, "ovary_gaps_ar1_reml",
        "mixed follicles sin1 cos1 || mare:, residuals(ar 1, t(time)) reml", "every 7th row (1st, 8th, ...) of ovary.csv dropped")
