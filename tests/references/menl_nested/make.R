## Reference fit for menl's nested random effects {T0[farm>tree]} with nlme::nlme.
## Run from the repository root:  Rscript tests/references/menl_nested/make.R
##
## Simulated logistic growth (seed 20261205): 8 farms x 4 trees x 7 ages,
##   circumf = (b1 + F_farm + T_farm,tree) / (1 + exp(-(age - b2)/b3)) + e,
## with tree numbered 1..4 within each farm (so the tree groups are farm x tree).
## nlme: random = list(farm = pdDiag(b1 ~ 1), tree = pdDiag(b1 ~ 1)), groups ~farm/tree, ML.
## Log likelihood, coefficients, fixed-effect SEs and the variances are nlme's; nlme's apVar
## (a coarse numerical Hessian) is not used for variance SEs, which are left out (null).

source("tests/references/common.R")
suppressPackageStartupMessages(library(nlme))

OUT <- file.path(REF_ROOT, "menl_nested")
VERS <- pkg_version_string(c("nlme", "jsonlite"))

set.seed(20261205)
ages <- c(118, 484, 664, 1004, 1231, 1372, 1582)
d <- expand.grid(age = ages, tree = 1:4, farm = 1:8)[, c("farm", "tree", "age")]
farm_eff <- rnorm(8, 0, 25)
tree_eff <- rnorm(32, 0, 15)
asym <- 190 + farm_eff[d$farm] + tree_eff[(d$farm - 1) * 4 + d$tree]
d$circumf <- round(asym / (1 + exp(-(d$age - 720) / 350)) + rnorm(nrow(d), 0, 6), 2)
d$t <- match(d$age, ages)                                   # occasion 1..7
write.csv(d, file.path(OUT, "nested_growth.csv"), row.names = FALSE)

ctl <- nlmeControl(maxIter = 500, pnlsMaxIter = 50, msMaxIter = 500, tolerance = 1e-8, pnlsTol = 1e-6,
                   minScale = 1e-10)
f <- nlme(circumf ~ b1 / (1 + exp(-(age - b2) / b3)), data = d, fixed = b1 + b2 + b3 ~ 1,
          random = list(farm = pdDiag(b1 ~ 1), tree = pdDiag(b1 ~ 1)), groups = ~farm / tree,
          start = c(b1 = 190, b2 = 720, b3 = 350), method = "ML", control = ctl)
## one case: nlme's estimates (variance SEs left out)
nested_case <- function(id, fit, stata, nlme_call, random, extra, notes) {
  b <- fixef(fit)
  x <- list(
    id = id, class = "nlme", dataset = "menl_nested/nested_growth.csv",
    dataset_origin = "simulated by tests/references/menl_nested/make.R (seed 20261205)", subset = NULL,
    stata = stata, lme4 = NULL,
    reference = paste0("nlme::nlme(circumf ~ b1/(1+exp(-(age-b2)/b3)), fixed = b1+b2+b3 ~ 1, ", nlme_call,
                       ", method = 'ML') (", VERS, ")"),
    options = list(method = "ml", family = "gaussian", link = "identity", intpoints = NULL,
                   intmethod = NULL, residuals = NULL),
    results = list(
      loglik = as.numeric(logLik(fit)),
      fixed = list(names = I(names(b)), coef = I(unname(b)), se = I(unname(sqrt(diag(vcov(fit)))))),
      random = random, residual = list(var = fit$sigma^2, se = NULL),
      extra = c(list(k = attr(logLik(fit), "df"), N = nrow(d)), extra)),
    tolerance = default_tolerance(), notes = notes,
    checks = list(nlme_iterations = fit$numIter, true_values = list(b1 = 190, b2 = 720, b3 = 350, sd_farm = 25,
                                                                 sd_tree = 15, sd_e = 6)))
  write_case(x, file.path(OUT, paste0(id, ".json")))
  cat(id, "loglik", x$results$loglik, "\n")
}
re_entry <- function(level, term, v) list(level = level, terms = I(term), cov = mat1(v), se = mat1(NA))

vc <- VarCorr(f)
nested_case("menl_nested_growth_ml", f,
            "menl circumf = ({b1}+{F0[farm]}+{T0[farm>tree]})/(1+exp(-(age-{b2})/{b3}))",
            "random = list(farm = pdDiag(b1 ~ 1), tree = pdDiag(b1 ~ 1)), groups = ~farm/tree",
            list(re_entry("farm", "F0", as.numeric(vc[which(rownames(vc) == "farm =") + 1, "Variance"])),
                 re_entry("farm>tree", "T0", as.numeric(vc[which(rownames(vc) == "tree =") + 1, "Variance"]))),
            list(), "Stata's level label for the trees nested in farms is farm>tree; variance SEs not given")

## ---- group(): residual AR(1) within the trees, random effects of the farms only --------------
## menl ..., rescorrelation(ar 1, t(t) group(tree)) = nlme correlation = corAR1(form = ~t | farm/tree)
g <- nlme(circumf ~ b1 / (1 + exp(-(age - b2) / b3)), data = d, fixed = b1 + b2 + b3 ~ 1,
          random = pdDiag(b1 ~ 1), groups = ~farm, correlation = corAR1(form = ~t | farm / tree),
          start = c(b1 = 190, b2 = 720, b3 = 350), method = "ML", control = ctl)
nested_case("menl_nested_growth_group_ar1_ml", g,
            "menl circumf = ({b1}+{F0[farm]})/(1+exp(-(age-{b2})/{b3})), rescorrelation(ar 1, t(t) group(tree))",
            "random = b1 ~ 1 | farm, correlation = corAR1(form = ~t | farm/tree)",
            list(re_entry("farm", "F0", as.numeric(VarCorr(g)["b1", "Variance"]))),
            list(ar1_rho = coef(g$modelStruct$corStruct, unconstrained = FALSE)[[1]]),
            "errors AR(1) within the trees (group(tree), nested in farm); random effects at the farm level only")
