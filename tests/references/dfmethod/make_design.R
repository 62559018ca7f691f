## References for `mixed ..., dfmethod(repeated)` and `dfmethod(anova)` on balanced designs.
## Run from the repository root:  Rscript tests/references/dfmethod/make_design.R
##
## Both methods assign each coefficient the error DF of a classical ANOVA stratum
## ([ME] mixed, "Small-sample inference for fixed effects": exact for balanced designs):
##  * repeated (between-within, Schluchter & Elashoff 1990): coefficients constant within
##    every subject (_cons too) get the between-subject error DF, the others the
##    within-subject error DF;
##  * anova (containment, SAS DDFM=CONTAIN): a coefficient contained in a random effect (its
##    variables among the effect's slope and grouping variables; _cons in every effect) gets
##    the smallest error DF of the strata of those effects, any other the residual DF.
## The stratum error DF come from R's aov() with an Error() term (classical multistratum
## ANOVA, independent of mixed-model software).  The F tests are the aov stratum F tests,
## which on these balanced designs equal the Wald F of the REML fit (the check
## `wald_F_minus_aov_F` uses lme4's REML estimates).  t = coef/se from lme4 REML, p from
## the t distribution with the reference DF.

source("tests/references/common.R")
suppressPackageStartupMessages(library(lme4))
OUT <- file.path(REF_ROOT, "dfmethod")
VERS <- pkg_version_string(c("lme4", "Matrix", "jsonlite"))

stratum_df <- function(s) {
  ## residual DF of each Error() stratum of summary(aov(...))
  sapply(s, function(tab) { tab <- tab[[1]]; tab[trimws(rownames(tab)) == "Residuals", "Df"] })
}
stratum_F <- function(s, stratum, term) {
  tab <- s[[paste0("Error: ", stratum)]][[1]]
  row <- tab[trimws(rownames(tab)) == term, ]
  c(F = row[["F value"]], ndf = row[["Df"]],
    ddf = tab[trimws(rownames(tab)) == "Residuals", "Df"])
}

run_case <- function(id, data_name, prep, stata, lme4_formula, aov_formula, names, lme4_names,
                     df_stratum, ftests, rule) {
  d <- prep(read_data(data_name))
  m <- lmer(lme4_formula, data = d, REML = TRUE,
            control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-11, maxfun = 1e5)))
  s <- summary(aov(aov_formula, data = d))
  names(s) <- sub("^Error: ", "Error: ", names(s))
  sdf <- stratum_df(s)
  names(sdf) <- sub("^Error: ", "", names(s))
  beta <- unname(fixef(m)[lme4_names])
  V <- as.matrix(vcov(m))[lme4_names, lme4_names, drop = FALSE]
  se <- sqrt(diag(V))
  df <- unname(sdf[unlist(df_stratum[names])])
  tval <- beta / se
  ft <- lapply(ftests, function(f) {
    ref <- stratum_F(s, f$stratum, f$aov_term)
    idx <- match(f$terms, names)
    b <- beta[idx]
    wald <- drop(t(b) %*% solve(V[idx, idx, drop = FALSE], b)) / length(idx)
    list(stata = f$stata, terms = I(f$terms), F = ref[["F"]], ndf = ref[["ndf"]], ddf = ref[["ddf"]],
         p = pf(ref[["F"]], ref[["ndf"]], ref[["ddf"]], lower.tail = FALSE),
         checks = list(wald_F_minus_aov_F = wald - ref[["F"]]))
  })
  case <- list(
    id = id, class = "lmm", dataset = data_name, subset = NULL, stata = stata,
    lme4 = deparse(lme4_formula), aov = deparse(aov_formula),
    reference = paste0("DF: residual DF of the aov() Error() strata (", rule, "); F tests: aov stratum F; ",
                       "coef/se: lme4 lmer REML (", VERS, "); generated ", format(Sys.Date())),
    options = list(method = "reml", dfmethod = sub(".*dfmethod\\(([a-z]+)\\).*", "\\1", stata)),
    results = list(
      loglik = as.numeric(logLik(m)),
      fixed = list(names = I(names), coef = I(beta), se = I(unname(se))),
      extra = list(df = I(df), t = I(tval), p = I(2 * pt(-abs(tval), df)),
                   df_stratum = df_stratum, strata_residual_df = as.list(sdf), ftests = ft)))
  write_case(case, file.path(OUT, paste0(id, ".json")))
}

as_factors <- function(...) { vars <- c(...); function(d) { for (v in vars) d[[v]] <- factor(d[[v]]); d } }

## Orthodont: 27 subjects x 4 ages; male is between-subject, age within-subject.
orth <- list("orthodont.csv", as_factors("subject"))
run_case("dfm_orthodont_ri_reml_repeated", orth[[1]], orth[[2]],
         "mixed distance age i.male || subject:, reml dfmethod(repeated)",
         distance ~ age + male + (1 | subject), distance ~ age + male + Error(subject),
         c("age", "1.male", "_cons"), c("age", "male", "(Intercept)"),
         list(age = "Within", "1.male" = "subject", "_cons" = "subject"),
         list(list(stata = "test age", terms = "age", stratum = "Within", aov_term = "age"),
              list(stata = "test 1.male", terms = "1.male", stratum = "subject", aov_term = "male")),
         "repeated: age varies within subjects -> Within; male and _cons constant within subjects -> subject")
run_case("dfm_orthodont_ri_reml_anova", orth[[1]], orth[[2]],
         "mixed distance age i.male || subject:, reml dfmethod(anova)",
         distance ~ age + male + (1 | subject), distance ~ age + male + Error(subject),
         c("age", "1.male", "_cons"), c("age", "male", "(Intercept)"),
         list(age = "Within", "1.male" = "Within", "_cons" = "subject"),
         list(list(stata = "test age", terms = "age", stratum = "Within", aov_term = "age")),
         "anova: only _cons is contained in the subject random intercept -> subject; age, male -> residual (Within)")

## Pig: 48 pigs x 9 weeks, random intercept and slope on week (unstructured).
run_case("dfm_pig_rs_un_reml_anova", "pig.csv", as_factors("id"),
         "mixed weight week || id: week, covariance(unstructured) reml dfmethod(anova)",
         weight ~ week + (week | id), weight ~ week + Error(id/week),
         c("week", "_cons"), c("week", "(Intercept)"),
         list(week = "id:week", "_cons" = "id"),
         list(list(stata = "test week", terms = "week", stratum = "id:week", aov_term = "week")),
         "anova: week contained in the week-by-id slopes -> id:week; _cons in the id intercepts -> id")

## Oats: split plot, 6 blocks / 3 varieties (whole plots) / 4 nitrogen levels (subplots).
oats <- as_factors("block", "variety")
run_case("dfm_oats_variety_nested_reml_anova", "oats.csv", oats,
         "mixed yield nitro i.variety || block: || variety:, reml dfmethod(anova)",
         yield ~ nitro + variety + (1 | block / variety), yield ~ nitro + variety + Error(block / variety),
         c("nitro", "2.variety", "3.variety", "_cons"), c("nitro", "variety2", "variety3", "(Intercept)"),
         list(nitro = "Within", "2.variety" = "block:variety", "3.variety" = "block:variety", "_cons" = "block"),
         list(list(stata = "test nitro", terms = "nitro", stratum = "Within", aov_term = "nitro"),
              list(stata = "testparm i.variety", terms = c("2.variety", "3.variety"),
                   stratum = "block:variety", aov_term = "variety")),
         paste("anova: variety contained in the block-by-variety plots -> block:variety;",
               "_cons contained in block and plots -> smaller, block; nitro -> residual (Within)"))

## Penicillin: 24 plates crossed with 6 samples.
run_case("dfm_penicillin_crossed_reml_anova", "penicillin.csv", as_factors("plate", "sample"),
         "mixed diameter || _all: R.plate || _all: R.sample, reml dfmethod(anova)",
         diameter ~ 1 + (1 | plate) + (1 | sample), diameter ~ 1 + Error(plate + sample),
         "_cons", "(Intercept)", list("_cons" = "sample"), list(),
         "anova: _cons contained in R.plate (23) and R.sample (5) -> smaller, sample")
