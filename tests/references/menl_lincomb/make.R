## Reference fit for menl's linear combinations {phi1: x i.female U1[tree]} with nlme::nlme.
## Run from the repository root:  Rscript tests/references/menl_lincomb/make.R
##
## Simulated logistic growth (seed 20261206): 12 trees x 7 ages, a tree-level covariate x and a
## 0/1 factor female, the asymptote a linear combination
##   circumf = (a0 + a1 x + a2 female + U_tree) / (1 + exp(-(age - b2)/b3)) + e.
## nlme: fixed = list(A ~ x + factor(female), b2 + b3 ~ 1), random = A ~ 1 | tree, ML.
## Second case, a random slope inside the combination: an observation-level covariate z and
##   circumf2 = (a0 + a1 z + U1_tree + U2_tree z) / (1 + exp(-(age - b2)/b3)) + e,
## menl {phi1: z U1[tree] c.z#U2[tree]}; nlme: fixed = list(A ~ z, b2 + b3 ~ 1),
## random = pdDiag(A ~ z) | tree (independent intercept and slope), ML.
## The coefficient names are written in menl's to_dict() convention (phi1:x, phi1:1.female,
## phi1:_cons). Log likelihood, coefficients, fixed-effect SEs and the variances are nlme's;
## nlme's apVar (a coarse numerical Hessian) is not used for variance SEs, which are left out (null).

source("tests/references/common.R")
suppressPackageStartupMessages(library(nlme))

OUT <- file.path(REF_ROOT, "menl_lincomb")
VERS <- pkg_version_string(c("nlme", "jsonlite"))

set.seed(20261206)
ages <- c(118, 484, 664, 1004, 1231, 1372, 1582)
trees <- data.frame(tree = 1:12, x = round(rnorm(12, 0, 1), 2), female = rep(0:1, 6))
d <- merge(expand.grid(age = ages, tree = 1:12), trees, by = "tree")[, c("tree", "age", "x", "female")]
d <- d[order(d$tree, d$age), ]
asym <- 180 + 20 * d$x + 30 * d$female + rnorm(12, 0, 15)[d$tree]
d$circumf <- round(asym / (1 + exp(-(d$age - 720) / 350)) + rnorm(nrow(d), 0, 6), 2)
d$z <- round(runif(nrow(d), -1, 1), 2)
asym2 <- 180 + rnorm(12, 0, 15)[d$tree] + (20 + rnorm(12, 0, 10)[d$tree]) * d$z
d$circumf2 <- round(asym2 / (1 + exp(-(d$age - 720) / 350)) + rnorm(nrow(d), 0, 4), 2)
write.csv(d, file.path(OUT, "lincomb_growth.csv"), row.names = FALSE)

ctl <- nlmeControl(maxIter = 500, pnlsMaxIter = 50, msMaxIter = 500, tolerance = 1e-8, pnlsTol = 1e-6,
                   minScale = 1e-10)
## one case: nlme's estimates (variance SEs left out); names: nlme's -> menl's to_dict()
lincomb_case <- function(id, fit, stata, nlme_call, ours, terms, variances, notes, truth) {
  b <- fixef(fit)
  stopifnot(all(names(b) %in% names(ours)))
  x <- list(
    id = id, class = "nlme", dataset = "menl_lincomb/lincomb_growth.csv",
    dataset_origin = "simulated by tests/references/menl_lincomb/make.R (seed 20261206)", subset = NULL,
    stata = stata, lme4 = NULL,
    reference = paste0("nlme::nlme(", nlme_call, ", method = 'ML') (", VERS, ")"),
    options = list(method = "ml", family = "gaussian", link = "identity", intpoints = NULL,
                   intmethod = NULL, residuals = NULL),
    results = list(
      loglik = as.numeric(logLik(fit)),
      fixed = list(names = I(unname(ours[names(b)])), coef = I(unname(b)), se = I(unname(sqrt(diag(vcov(fit)))))),
      random = list(list(level = "tree", terms = I(terms), cov = diag(variances, length(variances)),
                         se = matrix(NA, length(variances), length(variances)))),
      residual = list(var = fit$sigma^2, se = NULL),
      extra = list(k = attr(logLik(fit), "df"), N = nrow(d))),
    tolerance = default_tolerance(), notes = notes,
    checks = list(nlme_iterations = fit$numIter, true_values = truth))
  write_case(x, file.path(OUT, paste0(id, ".json")))
  cat(id, "loglik", x$results$loglik, "\n")
  print(summary(fit)$tTable)
}

f <- nlme(circumf ~ A / (1 + exp(-(age - b2) / b3)), data = d,
          fixed = list(A ~ x + factor(female), b2 + b3 ~ 1), random = A ~ 1 | tree,
          start = c(180, 20, 30, 720, 350), method = "ML", control = ctl)
lincomb_case("menl_lincomb_growth_ml", f,
             "menl circumf = {phi1: x i.female U1[tree]}/(1+exp(-(age-{b2})/{b3}))",
             "circumf ~ A/(1+exp(-(age-b2)/b3)), fixed = list(A ~ x + factor(female), b2 + b3 ~ 1), random = A ~ 1 | tree",
             c("A.(Intercept)" = "phi1:_cons", "A.x" = "phi1:x", "A.factor(female)1" = "phi1:1.female",
               b2 = "b2", b3 = "b3"),
             "U1", as.numeric(VarCorr(f)["A.(Intercept)", "Variance"]),
             "asymptote a linear combination of x and i.female with a random intercept per tree; variance SEs not given",
             list(a0 = 180, a1 = 20, a2 = 30, b2 = 720, b3 = 350, sd_tree = 15, sd_e = 6))

g <- nlme(circumf2 ~ A / (1 + exp(-(age - b2) / b3)), data = d,
          fixed = list(A ~ z, b2 + b3 ~ 1), random = list(tree = pdDiag(A ~ z)),
          start = c(180, 20, 720, 350), method = "ML", control = ctl)
vg <- VarCorr(g)
lincomb_case("menl_lincomb_random_slope_ml", g,
             "menl circumf2 = {phi1: z U1[tree] c.z#U2[tree]}/(1+exp(-(age-{b2})/{b3}))",
             "circumf2 ~ A/(1+exp(-(age-b2)/b3)), fixed = list(A ~ z, b2 + b3 ~ 1), random = list(tree = pdDiag(A ~ z))",
             c("A.(Intercept)" = "phi1:_cons", "A.z" = "phi1:z", b2 = "b2", b3 = "b3"),
             c("U1", "U2"), as.numeric(vg[c("A.(Intercept)", "A.z"), "Variance"]),
             "a random intercept and a random slope of z inside the linear combination (independent); variance SEs not given",
             list(a0 = 180, a1 = 20, b2 = 720, b3 = 350, sd_intercept = 15, sd_slope = 10, sd_e = 4))
