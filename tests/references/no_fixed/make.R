# Reference for a linear mixed model with no fixed effects (Stata: mixed weight, nocons || id:),
# lme4 ML fit on the pig data.  Run from the repository root:
#   Rscript tests/references/no_fixed/make.R > tests/references/no_fixed/pig_nocons.json
suppressMessages(library(lme4))
d <- read.csv("tests/data/pig.csv")
m <- lmer(weight ~ 0 + (1 | id), d, REML = FALSE, control = lmerControl(optimizer = "bobyqa",
          optCtrl = list(rhobeg = 0.2, rhoend = 1e-12)))
vc <- as.data.frame(VarCorr(m))$vcov
cat(sprintf('{"source": "R %s, lme4 %s, %s", "model": "lmer(weight ~ 0 + (1 | id), REML = FALSE)",\n "loglik": %.10f, "var_id": %.10f, "var_residual": %.10f}\n',
            getRversion(), packageVersion("lme4"), Sys.Date(), as.numeric(logLik(m)), vc[1], vc[2]))
