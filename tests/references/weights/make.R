## Reference values for sampling weights at three levels (tests/test_weights_multilevel.py).
## Run from the repository root:  Rscript tests/references/weights/make.R
## WeMix::mix() maximizes the same multilevel pseudo-likelihood as Stata's mixed with
## pweights at every level (Rabe-Hesketh & Skrondal 2006); cWeights = TRUE: conditional
## weights, as Stata's.  Its robust SEs of the fixed effects are Stata's (see README.md).
source("tests/references/common.R")
suppressPackageStartupMessages({ library(lme4); library(WeMix) })
OUT <- file.path(REF_ROOT, "weights")

## --- a small 3-level survey: schools, classes in schools, pupils in classes ----------
set.seed(20261125)
rows <- list()
for (s in 1:25) {
  u_s <- rnorm(1, 0, 1.0); v_s <- rnorm(1, 0, 0.4)
  w3 <- runif(1, 1, 5)
  for (c in 1:sample(2:4, 1)) {
    u_c <- rnorm(1, 0, 0.6)
    w2 <- runif(1, 1, 3)
    n <- sample(3:9, 1)
    x <- rnorm(n)
    y <- 2 + 0.5 * x + u_s + v_s * x + u_c + rnorm(n)
    rows[[length(rows) + 1]] <- data.frame(school = s, class = 100 * s + c, x = round(x, 4),
                                           y = round(y, 4), w1 = round(runif(n, 0.5, 3), 3),
                                           w2 = round(w2, 3), w3 = round(w3, 3))
  }
}
d <- do.call(rbind, rows)
write.csv(d, file.path(OUT, "survey3.csv"), row.names = FALSE)

wemix_case <- function(id, formula, stata, data) {
  m <- mix(formula, data = data, weights = c("w1", "w2", "w3"), cWeights = TRUE)
  vd <- m$varDF
  list(id = id, dataset = "tests/references/weights/survey3.csv", stata = stata,
       reference = pkg_version_string(c("WeMix", "lme4", "Matrix")),
       results = list(loglik = m$lnl,
                      fixed = list(names = I(names(m$coef)), coef = I(unname(m$coef)),
                                   robust_se = I(unname(m$SE))),
                      vc = list(grp = I(vd$grp), var1 = I(vd$var1), var2 = I(vd$var2),
                                estimate = I(vd$vcov), wemix_se = I(vd$SEvcov))),
       notes = paste("WeMix mix(..., cWeights = TRUE); robust_se: WeMix's sandwich for the fixed",
                     "effects (Stata's); wemix_se of the variance components is WeMix's own per-level",
                     "sandwich, not a target"),
       tolerance = list(loglik_abs = 1e-4, coef_rel = 1e-5, se_rel = 1e-4, var_rel = 1e-4))
}

write_case(wemix_case("wemix_survey3_ri", y ~ x + (1 | school) + (1 | class),
                      "mixed y x [pw=w1] || school:, pweight(w3) || class:, pweight(w2)", d),
           file.path(OUT, "wemix_survey3_ri.json"))
write_case(wemix_case("wemix_survey3_slope", y ~ x + (1 + x | school) + (1 | class),
                      "mixed y x [pw=w1] || school: x, covariance(unstructured) pweight(w3) || class:, pweight(w2)", d),
           file.path(OUT, "wemix_survey3_slope.json"))

## --- Stata's own numbers: sleepstudy in 4 groups with integer pweights at 3 levels -------
## Printed by Stata's mixed, quoted in WeMix's tests/testthat/test-1-main.R ("compare against
## mixed stata results"); WeMix's fit of the same model for comparison.
ss <- sleepstudy
ss$Group <- 1
ss$Group <- ifelse(ss$Subject %in% c("310", "309", "349", "335"), 2, ss$Group)
ss$Group <- ifelse(ss$Subject %in% c("330", "352", "337", "369"), 3, ss$Group)
ss$Group <- ifelse(ss$Subject %in% c("331", "332", "334", "372"), 4, ss$Group)
ss$w1 <- 1; ss$w1[1:4] <- 2
ss$w2 <- ifelse(ss$Subject == "308", 2, 1)
ss$w3 <- ifelse(ss$Subject %in% c("308", "333", "350", "351", "370", "371"), 2, 1)
m <- mix(Reaction ~ Days + (1 | Subject) + (1 | Group), data = ss, weights = c("w1", "w2", "w3"),
         cWeights = TRUE)
write_case(list(
  id = "stata_sleepstudy3_pw", dataset = "tests/data/sleepstudy.csv",
  stata = "mixed Reaction Days [pw=w1] || Group:, pweight(w3) || Subject:, pweight(w2)",
  data_steps = paste("Group = 2 for Subjects 309 310 335 349, 3 for 330 337 352 369, 4 for 331 332 334 372,",
                     "else 1; w1 = 2 for the first 4 rows (Subject 308, Days 0-3), else 1;",
                     "w2 = 2 for Subject 308; w3 = 2 for Group 1"),
  reference = "Stata mixed (printed output quoted in WeMix 4.0.3 tests/testthat/test-1-main.R)",
  results = list(loglik = -1389.0983, fixed = list(names = I(c("_cons", "Days")),
                                                   coef = I(c(243.6831, 12.67954)),
                                                   robust_se = I(c(11.68881, 2.468474))),
                 vc = list(names = I(c("var(_cons) Subject", "var(_cons) Group", "var(Residual)")),
                           estimate = I(c(360.97, 756.5857, 1153.704)))),
  wemix = list(version = as.character(packageVersion("WeMix")), loglik = m$lnl,
               coef = I(unname(m$coef)), robust_se = I(unname(m$SE)), vc = I(unname(m$vars))),
  notes = "Stata's printed precision; Group has 4 clusters, var(Group) is flat (Stata stopped early)",
  tolerance = list(loglik_abs = 1e-4, coef_rel = 1e-6, se_rel = 5e-6, var_rel = 1e-4)),
  file.path(OUT, "stata_sleepstudy3_pw.json"))
