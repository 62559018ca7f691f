## Reference output for tests/test_lme4_summary.py: lme4's printed summary() of
## fits of the test data, and R's format()/abbreviate() on assorted vectors.
## Run from the repository root:  Rscript tests/references/presentation/make.R
## Writes the *.txt summaries and r_format.json in this folder (committed; the
## tests never need R).
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
options(width = 80, digits = 7)
out_dir <- file.path("tests", "references", "presentation")
read_data <- function(name) read.csv(file.path("tests", "data", name), stringsAsFactors = FALSE)

## bobyqa with a tight tolerance: lme4's default (nloptwrap) stops a little short of
## the optimum (sleepstudy ML: var(Intercept) 565.48 where the optimum is 565.52);
## the tests skip the "Data:" and "Control:" lines.
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5, rhoend = 1e-10))
fit_and_print <- function(name, formula, data_name, REML) {
  m <- eval(bquote(lmer(.(formula), data = .(as.name(data_name)), REML = .(REML), control = ctrl)))
  txt <- capture.output(print(summary(m)))
  writeLines(txt, file.path(out_dir, paste0(name, ".txt")))
}

pig <- read_data("pig.csv")
sleepstudy <- read_data("sleepstudy.csv")
pastes <- read_data("pastes.csv")
penicillin <- read_data("penicillin.csv")
pastes$batch <- factor(pastes$batch); pastes$cask <- factor(pastes$cask)
penicillin$plate <- factor(penicillin$plate); penicillin$sample <- factor(penicillin$sample)

fit_and_print("lme4_pig_ri_ml", weight ~ week + (1 | id), "pig", REML = FALSE)
fit_and_print("lme4_pig_ri_reml", weight ~ week + (1 | id), "pig", REML = TRUE)
fit_and_print("lme4_sleepstudy_rs_reml", Reaction ~ Days + (Days | Subject), "sleepstudy", REML = TRUE)
fit_and_print("lme4_sleepstudy_rs_ml", Reaction ~ Days + (Days | Subject), "sleepstudy", REML = FALSE)
fit_and_print("lme4_sleepstudy_ind_reml", Reaction ~ Days + (Days || Subject), "sleepstudy", REML = TRUE)
fit_and_print("lme4_pastes_nested_ml", strength ~ 1 + (1 | batch/cask), "pastes", REML = FALSE)
fit_and_print("lme4_penicillin_crossed_reml", diameter ~ 1 + (1 | plate) + (1 | sample), "penicillin", REML = TRUE)

## format(x, digits) and abbreviate() on vectors that exercise R's rules
set.seed(20240501)
vecs <- list(c(14.81749, 4.383264), c(612.10016, 35.07171, 654.94001), c(24.740658, 5.922138, 25.591796),
             c(19.35561, 6.2099, 0.59741, 0.03901), c(-3.7449, -0.5464, 0.0183, 0.5135, 3.9372),
             c(9996, 1.5), c(0.99996, 2), c(1e-10, 2), c(123456789, 1.5), c(0.00001234, 1), c(0, 0),
             c(-0.327, 1), c(2037.9, 2054.1, -1014.9, 2029.9, 428), c(1e5, 1e-5), c(99.5, 0.05),
             c(0.1 + 0.2, 1/3), c(1e15, 1), c(-1e-300, 5))
for (i in 1:40) vecs[[length(vecs) + 1]] <- signif(rnorm(sample(1:5, 1)) * 10^sample(-6:6, 1), sample(3:9, 1))
cases <- lapply(vecs, function(v) lapply(c(3, 4, 5, 7), function(d)
  list(x = I(v), digits = d, out = I(format(v, digits = d)))))
abbr <- c("(Intercept)", "week", "Days", "age:male", "i.f#c.x", "2.treatment", "c.age#c.age",
          "ConditionA", "ConditionB", "x1", "educ_years")
json <- toJSON(list(provenance = paste0("R ", getRversion(), ", lme4 ", packageVersion("lme4")),
                format = unlist(cases, recursive = FALSE),
                abbreviate = list(names = abbr, min6 = I(unname(abbreviate(abbr, 6))),
                                  min11 = I(unname(abbreviate(abbr, 11))),
                                  min4 = I(unname(abbreviate(abbr, 4))))),
               auto_unbox = TRUE, digits = NA, pretty = TRUE)
writeLines(json, file.path(out_dir, "r_format.json"))
