## Reference fit for menl's linear combinations {phi1: x i.female U1[tree]} with nlme::nlme.
## Run from the repository root:  Rscript tests/references/menl_lincomb/make.R
##
## Simulated logistic growth (seed 20261206): 12 trees x 7 ages, a tree-level covariate x and a
## 0/1 factor female, the asymptote a linear combination
##   circumf = (a0 + a1 x + a2 female + U_tree) / (1 + exp(-(age - b2)/b3)) + e.
## nlme: fixed = list(A ~ x + factor(female), b2 + b3 ~ 1), random = A ~ 1 | tree, ML.
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
write.csv(d, file.path(OUT, "lincomb_growth.csv"), row.names = FALSE)

ctl <- nlmeControl(maxIter = 500, pnlsMaxIter = 50, msMaxIter = 500, tolerance = 1e-8, pnlsTol = 1e-6,
                   minScale = 1e-10)
f <- nlme(circumf ~ A / (1 + exp(-(age - b2) / b3)), data = d,
          fixed = list(A ~ x + factor(female), b2 + b3 ~ 1), random = A ~ 1 | tree,
          start = c(180, 20, 30, 720, 350), method = "ML", control = ctl)
b <- fixef(f)
ours <- c("A.(Intercept)" = "phi1:_cons", "A.x" = "phi1:x", "A.factor(female)1" = "phi1:1.female",
          b2 = "b2", b3 = "b3")
stopifnot(all(names(b) %in% names(ours)))
x <- list(
  id = "menl_lincomb_growth_ml", class = "nlme", dataset = "menl_lincomb/lincomb_growth.csv",
  dataset_origin = "simulated by tests/references/menl_lincomb/make.R (seed 20261206)", subset = NULL,
  stata = "menl circumf = {phi1: x i.female U1[tree]}/(1+exp(-(age-{b2})/{b3}))", lme4 = NULL,
  reference = paste0("nlme::nlme(circumf ~ A/(1+exp(-(age-b2)/b3)), fixed = list(A ~ x + factor(female), ",
                     "b2 + b3 ~ 1), random = A ~ 1 | tree, method = 'ML') (", VERS, ")"),
  options = list(method = "ml", family = "gaussian", link = "identity", intpoints = NULL,
                 intmethod = NULL, residuals = NULL),
  results = list(
    loglik = as.numeric(logLik(f)),
    fixed = list(names = I(unname(ours[names(b)])), coef = I(unname(b)), se = I(unname(sqrt(diag(vcov(f)))))),
    random = list(list(level = "tree", terms = I("U1"), cov = mat1(as.numeric(VarCorr(f)["A.(Intercept)", "Variance"])),
                       se = mat1(NA))),
    residual = list(var = f$sigma^2, se = NULL),
    extra = list(k = attr(logLik(f), "df"), N = nrow(d))),
  tolerance = default_tolerance(),
  notes = "asymptote a linear combination of x and i.female with a random intercept per tree; variance SEs not given",
  checks = list(nlme_iterations = f$numIter,
                true_values = list(a0 = 180, a1 = 20, a2 = 30, b2 = 720, b3 = 350, sd_tree = 15, sd_e = 6)))
write_case(x, file.path(OUT, paste0(x$id, ".json")))
cat(x$id, "loglik", x$results$loglik, "\n")
print(summary(f)$tTable)
