## Log likelihoods at given parameter values (no optimization) for `noestimate` / `from()`:
## lme4's deviance function (devFunOnly = TRUE) evaluated at fixed (theta, beta).
## Run from the repository root:  Rscript tests/references/glmm_start/make.R
source("tests/references/common.R")
suppressPackageStartupMessages(library(lme4))

out <- list(provenance = paste(pkg_version_string(c("lme4", "Matrix", "jsonlite")),
                               "; generated", format(Sys.Date())),
            points = list())

at <- function(id, stata, formula, data, family, nAGQ, beta, vars, intmethod) {
  ## lme4 orders the random-effects terms by decreasing number of groups; `vars` is named by
  ## lme4's term (cnms name) and reordered to match.
  gl <- glFormula(formula, data = data, family = family)
  terms <- names(gl$reTrms$cnms)
  theta <- sqrt(unlist(vars[terms]))
  dev <- glmer(formula, data = data, family = family, nAGQ = nAGQ, devFunOnly = TRUE,
               control = glmerControl(tolPwrss = 1e-12))   # modes converged fully
  b <- unlist(beta)
  value <- dev(c(theta, b))   # -2 log L (Laplace for nAGQ = 1, mode-curvature AGHQ for nAGQ > 1)
  list(id = id, stata = stata, intmethod = intmethod, beta = beta, vars = vars,
       lme4_terms = terms, theta = unname(theta), loglik = -0.5 * value)
}

bang <- read_data("bangladesh.csv")
bang$district <- factor(bang$district)
grouse <- read_data("grouseticks.csv")
grouse$expo <- exp(grouse$height_s / 3) + 0.5
grouse$location <- factor(grouse$location)
grouse$brood <- factor(grouse$brood)

beta_b <- list("(Intercept)" = -0.7, urban = 0.5, age = -0.01)
vars_b <- list(district = 0.3)
out$points[[1]] <- at("bangladesh_laplace", "melogit c_use urban age || district:, intmethod(laplace)",
                      c_use ~ urban + age + (1 | district), bang, binomial, 1, beta_b, vars_b, "laplace")
out$points[[2]] <- at("bangladesh_mcaghermite7", "melogit c_use urban age || district:, intmethod(mcaghermite)",
                      c_use ~ urban + age + (1 | district), bang, binomial, 7, beta_b, vars_b, "mcaghermite")
beta_g <- list("(Intercept)" = 0.2, height_s = -1.0)
vars_g <- list("brood:location" = 1.5, location = 0.2)
out$points[[3]] <- at("grouseticks_nested_laplace",
                      "mepoisson ticks height_s || location: || brood:, exposure(expo) intmethod(laplace)",
                      ticks ~ height_s + (1 | location/brood) + offset(log(expo)), grouse, poisson, 1,
                      beta_g, vars_g, "laplace")
write_case(out, "tests/references/glmm_start/glmm_start.json")
