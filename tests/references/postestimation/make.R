## Postestimation references: estat icc, estat ic (AIC/BIC), lrtest, predict
## (reffects / reses, xb, stdp, fitted, residuals, rstandard).
## Run from the repository root:  Rscript tests/references/postestimation/make.R
##
## Fits: lme4 lmer (best of bobyqa / Nelder_Mead / nloptwrap with tight tolerances).
## Everything else is computed densely from the fit (common.R: lmm_dense):
##  * variance-component SEs: inverse observed information of the ML / REML log
##    likelihood in the variance/covariance metric (Stata's delta-method SEs);
##  * ICC (Stata estat icc): level ICC = sum of the variances at that level and
##    above / (all variances + residual); SE by the delta method from the covariance
##    of the variance components; CI back-transformed from logit(ICC) +- z*SE/(ICC(1-ICC))
##    (estat icc's default, per StataCorp on Statalist, 2012);
##  * AIC = -2ll + 2k, BIC = -2ll + k ln(N), N = number of observations, k = fixed +
##    covariance parameters (also for REML, as lme4 and Stata's estat ic do);
##  * LR tests: lme4 anova() (ML fits; refit = FALSE for REML fits with the same fixed part);
##  * BLUPs: lme4 ranef(condVar = TRUE): conditional modes and sqrt(diag Var(u | y))
##    with beta known; also the "comparative" SEs sqrt(diag(G - G Z'PZ G)) that also
##    account for estimating beta;
##  * predictions for the first 10 rows of the data file (file order).

source("tests/references/common.R")
suppressPackageStartupMessages(library(lme4))
OUT <- file.path(REF_ROOT, "postestimation")
VERS <- pkg_version_string(c("lme4", "Matrix", "jsonlite"))

CTRL <- list(bobyqa = list(rhoend = 1e-11, maxfun = 1e5),
             Nelder_Mead = list(FtolAbs = 1e-14, FtolRel = 1e-15, XtolRel = 1e-12, maxfun = 1e5),
             nloptwrap = list(ftol_abs = 1e-14, ftol_rel = 1e-15, xtol_abs = 1e-12,
                              xtol_rel = 1e-12, maxeval = 1e5))
best_lmer <- function(formula, data, REML) {
  fits <- lapply(names(CTRL), function(o)
    lmer(formula, data = data, REML = REML,
         control = lmerControl(optimizer = o, optCtrl = CTRL[[o]], calc.derivs = FALSE)))
  crit <- sapply(fits, function(f) as.numeric(logLik(f)))
  fits[[which.max(crit)]]
}

reml_ll_lm <- function(y, X) {            # restricted loglik of the linear regression
  f <- lm.fit(X, y); n <- length(y); p <- ncol(X)
  s2 <- sum(f$residuals^2) / (n - p)
  -0.5 * ((n - p) * (log(2 * pi * s2) + 1)) - sum(log(abs(diag(f$qr$qr)[1:p])))
}

icc_entry <- function(level, num_idx, vals, Vc, z = qnorm(0.975)) {
  tot <- sum(vals); num <- sum(vals[num_idx])
  icc <- num / tot
  g <- -num / tot^2 + ifelse(seq_along(vals) %in% num_idx, 1 / tot, 0)
  se <- sqrt(drop(t(g) %*% Vc %*% g))
  lg <- qlogis(icc); sl <- se / (icc * (1 - icc))
  list(level = level, icc = icc, se = se, ci = I(plogis(c(lg - z * sl, lg + z * sl))))
}

## BLUPs and both SE flavours for one random-effects term
blup_entry <- function(m, info, k, level, group_vars, stata_terms, lme4_terms, group_key, n = 5) {
  re <- ranef(m, condVar = TRUE)
  fac <- names(getME(m, "cnms"))[k]
  r <- re[[fac]]
  pv <- attr(r, "postVar")
  ## dense G, Z for the comparative SEs
  Z <- as.matrix(getME(m, "Z"))
  Lam <- getME(m, "Lambda")
  G <- as.matrix(sigma(m)^2 * Lam %*% t(Lam))
  Gp <- getME(m, "Gp")
  cols <- (Gp[k] + 1):Gp[k + 1]
  GZ <- G %*% t(Z)
  Vcmp <- G - GZ %*% info$P %*% t(GZ)     # Var(u_hat - u)
  Vcnd <- G - GZ %*% info$Vinv %*% t(GZ)  # Var(u | y), beta known (= lme4 condVar)
  q <- length(lme4_terms)
  lev <- rownames(r)
  key <- group_key(lev)                    # Stata-style group label, e.g. "1" or "1:2"
  ord <- order(sapply(strsplit(key, ":"), function(s) sum(as.numeric(s) * 1000^(rev(seq_along(s)) - 1))))
  ord <- ord[seq_len(min(n, length(ord)))]
  ti <- match(lme4_terms, colnames(r))
  blup <- as.matrix(r[ord, ti, drop = FALSE])
  csd <- t(sapply(ord, function(g) sqrt(diag(pv[, , g, drop = TRUE] %>% as.matrix))[ti]))
  cmp <- t(sapply(ord, function(g) sqrt(diag(Vcmp)[cols[(g - 1) * q + seq_len(q)]])[ti]))
  dnd <- t(sapply(ord, function(g) sqrt(diag(Vcnd)[cols[(g - 1) * q + seq_len(q)]])[ti]))
  if (q == 1) { csd <- t(csd); cmp <- t(cmp); dnd <- t(dnd) }
  list(entry = list(level = level, group_vars = I(group_vars), groups = I(key[ord]),
                    terms = I(stata_terms), blup = unname(blup), cond_sd = unname(csd),
                    se_comparative = unname(cmp)),
       check = max(abs(csd - dnd)))
}
`%>%` <- function(x, f) f(x)

predictions <- function(m, info, rows = 1:10) {
  X <- info$X; y <- info$y
  xb <- drop(X %*% fixef(m))
  stdp <- sqrt(rowSums((X %*% info$Phi) * X))
  fitted <- fitted(m)
  res <- y - fitted
  list(rows = I(rows), xb = unname(xb[rows]), stdp = unname(stdp[rows]),
       fitted = unname(fitted[rows]), residuals = unname(res[rows]),
       rstandard = unname(res[rows] / sigma(m)))
}

lr_entry <- function(stata, m0, m1, refit) {
  a <- anova(m0, m1, refit = refit)
  chi <- a$Chisq[2]; df <- a$Df[2]
  list(stata = stata, ll0 = as.numeric(logLik(m0)), ll1 = as.numeric(logLik(m1)),
       chi2 = chi, df = df, p = a[["Pr(>Chisq)"]][2],
       p_chibar_halfdf = if (df == 1) 0.5 * pchisq(chi, 1, lower.tail = FALSE) else NULL)
}

make_case <- function(id, data_name, origin, formula, REML, stata, stata_fixed, lme4_fixed,
                      random_spec, icc_spec, blup_spec, lrtests, n_groups, notes) {
  d <- read_data(data_name)
  m <- best_lmer(formula, d, REML)
  info <- lmm_dense(m, reml = REML)
  Vc <- solve(info$OIM)
  vals <- info$comps$values; names(vals) <- info$comps$labels
  ses <- sqrt(diag(Vc)); names(ses) <- info$comps$labels
  ord <- match(lme4_fixed, names(fixef(m)))
  beta <- unname(fixef(m)[ord]); se <- unname(sqrt(diag(as.matrix(vcov(m))))[ord])
  random <- lapply(random_spec, function(r) {
    q <- length(r$terms); C <- S <- matrix(NA_real_, q, q)
    for (a in 1:q) for (b in 1:q) {
      key <- r$keys[[paste(min(a, b), max(a, b))]]
      C[a, b] <- vals[[key]]; S[a, b] <- ses[[key]]
    }
    list(level = r$level, terms = I(r$terms), cov = C, se = S)
  })
  ll <- as.numeric(logLik(m)); k <- length(beta) + length(vals); N <- nobs(m)
  X <- info$X; y <- info$y
  ll_lin <- if (REML) reml_ll_lm(y, X) else ols_loglik_ml(y, X)
  iccs <- lapply(icc_spec, function(s) icc_entry(s$level, match(s$keys, names(vals)),
                                                 unname(vals), unname(Vc)))
  bl <- lapply(blup_spec, function(b) blup_entry(m, info, b$k, b$level, b$group_vars,
                                                 b$terms, b$lme4_terms, b$group_key))
  lrs <- lapply(lrtests, function(t) lr_entry(t$stata, t$m0(d), t$m1(d), t$refit))
  nb <- length(beta)
  wald <- if (nb > 1) { i <- seq_len(nb - 1); drop(t(beta[i]) %*% solve(as.matrix(vcov(m))[ord, ord][i, i, drop = FALSE]) %*% beta[i]) } else NULL
  extra <- list(AIC = -2 * ll + 2 * k, BIC = -2 * ll + k * log(N), k = k, N = N,
                n_groups = n_groups, wald_chi2 = wald, wald_df = nb - 1,
                lr_chi2 = 2 * (ll - ll_lin), lr_df = length(vals) - 1,
                icc = iccs, lrtests = lrs, blups = lapply(bl, `[[`, "entry"),
                predictions = predictions(m, info))
  x <- list(id = id, class = "lmm", dataset = data_name, dataset_origin = origin, subset = NULL,
            stata = stata, lme4 = paste(deparse(formula, width.cutoff = 200), collapse = ""),
            reference = paste0("lme4 lmer(REML=", REML, "), best of bobyqa/Nelder_Mead/nloptwrap with tight tolerances; postestimation quantities computed densely from the fit (", VERS, ")"),
            options = list(method = if (REML) "reml" else "ml", family = "gaussian", link = "identity",
                           intpoints = NULL, intmethod = NULL, residuals = NULL),
            results = list(loglik = ll, fixed = list(names = I(stata_fixed), coef = beta, se = se),
                           random = random,
                           residual = list(var = sigma(m)^2, se = unname(ses["residual"])),
                           extra = extra),
            tolerance = default_tolerance(), notes = notes,
            checks = list(max_abs_score_natural = max(abs(info$score)),
                          lme4_condVar_minus_dense_cond_sd = max(sapply(bl, `[[`, "check"))))
  write_case(x, file.path(OUT, paste0(id, ".json")))
  cat(sprintf("%-36s ll = %.6f  icc = %s\n", id, ll,
              paste(sapply(iccs, function(i) signif(i$icc, 6)), collapse = ", ")))
  invisible(m)
}

PIG <- "Diggle, Liang & Zeger (1994) Table 3.1 pig weights (R package cv, data(Pigs)); = Stata pig.dta"
SLEEP <- "R lme4::sleepstudy"
OATS <- "R nlme::Oats (Yates split-plot); block I..VI -> 1..6, variety alphabetical -> 1..3 (labels kept)"
COMMON_NOTES <- paste(
  "extra.icc: Stata estat icc (level, icc, se, 95% ci from the logit transform);",
  "extra.lrtests: lrtest between the named models (chi2, df, naive p; p_chibar_halfdf = 0.5*P(chi2_1 > chi2) for a single variance on the boundary);",
  "extra.lr_chi2: the 'LR test vs. linear model' of the estimation header (ML: vs OLS; REML: vs the restricted loglik of the linear regression);",
  "extra.blups: first 5 groups (sorted by id) per level; rows = groups, columns = terms; blup = conditional modes (predict, reffects);",
  "cond_sd = sqrt(diag Var(u|y)) with beta treated as known (lme4 condVar); se_comparative = sqrt(diag(G - G Z'PZ G)) which also",
  "accounts for estimating beta; which one Stata's predict, reses gives should be checked against Stata.",
  "extra.predictions: rows = 1-based row numbers of the data file; xb = X b (predict, xb); stdp = sqrt(diag(X Var(b) X'));",
  "fitted = xb + Z u_hat (predict, fitted); residuals = y - fitted (predict, residuals); rstandard = residuals / sigma_e (predict, rstandard).")
one <- function(s) setNames(list(s), "1 1")
id_key <- function(lev) lev

## ---- pig, random intercept, ML and REML -------------------------------------
pig_lr <- list(
  list(stata = "mixed weight week || id: (m0) vs mixed weight week || id: week (m1, independent)",
       m0 = function(d) best_lmer(weight ~ week + (1 | id), d, FALSE),
       m1 = function(d) best_lmer(weight ~ week + (1 | id) + (0 + week | id), d, FALSE), refit = FALSE),
  list(stata = "mixed weight week || id: (m0) vs mixed weight week || id: week, covariance(unstructured) (m1)",
       m0 = function(d) best_lmer(weight ~ week + (1 | id), d, FALSE),
       m1 = function(d) best_lmer(weight ~ week + (week | id), d, FALSE), refit = FALSE),
  list(stata = "mixed weight week || id: week (m0, independent) vs mixed weight week || id: week, covariance(unstructured) (m1)",
       m0 = function(d) best_lmer(weight ~ week + (1 | id) + (0 + week | id), d, FALSE),
       m1 = function(d) best_lmer(weight ~ week + (week | id), d, FALSE), refit = FALSE))
for (reml in c(FALSE, TRUE)) {
  make_case(if (reml) "post_pig_ri_reml" else "post_pig_ri_ml", "pig.csv", PIG,
            weight ~ week + (1 | id), reml,
            if (reml) "mixed weight week || id:, reml" else "mixed weight week || id:",
            c("week", "_cons"), c("week", "(Intercept)"),
            list(list(level = "id", terms = "_cons", keys = one("id:(Intercept),(Intercept)"))),
            list(list(level = "id", keys = "id:(Intercept),(Intercept)")),
            list(list(k = 1, level = "id", group_vars = "id", terms = "_cons",
                      lme4_terms = "(Intercept)", group_key = id_key)),
            if (reml) list() else pig_lr,
            list(id = 48),
            paste(COMMON_NOTES, if (!reml) "LR tests are between ML fits (Stata: estimates store, lrtest)." else ""))
}

## ---- sleepstudy random slopes, unstructured, ML --------------------------------
ss_lr <- list(
  list(stata = "mixed Reaction Days || Subject: (m0) vs mixed Reaction Days || Subject: Days, covariance(unstructured) (m1)",
       m0 = function(d) best_lmer(Reaction ~ Days + (1 | Subject), d, FALSE),
       m1 = function(d) best_lmer(Reaction ~ Days + (Days | Subject), d, FALSE), refit = FALSE),
  list(stata = "mixed Reaction Days || Subject: Days (m0, independent) vs mixed Reaction Days || Subject: Days, covariance(unstructured) (m1)",
       m0 = function(d) best_lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), d, FALSE),
       m1 = function(d) best_lmer(Reaction ~ Days + (Days | Subject), d, FALSE), refit = FALSE),
  list(stata = "mixed Reaction Days || Subject: (m0) vs mixed Reaction Days || Subject: Days (m1, independent)",
       m0 = function(d) best_lmer(Reaction ~ Days + (1 | Subject), d, FALSE),
       m1 = function(d) best_lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), d, FALSE), refit = FALSE))
make_case("post_sleepstudy_rs_un_ml", "sleepstudy.csv", SLEEP,
          Reaction ~ Days + (Days | Subject), FALSE,
          "mixed Reaction Days || Subject: Days, covariance(unstructured)",
          c("Days", "_cons"), c("Days", "(Intercept)"),
          list(list(level = "Subject", terms = c("Days", "_cons"),
                    keys = list(`1 1` = "Subject:Days,Days", `1 2` = "Subject:(Intercept),Days",
                                `2 2` = "Subject:(Intercept),(Intercept)"))),
          list(list(level = "Subject", keys = "Subject:(Intercept),(Intercept)")),
          list(list(k = 1, level = "Subject", group_vars = "Subject", terms = c("Days", "_cons"),
                    lme4_terms = c("Days", "(Intercept)"), group_key = id_key)),
          ss_lr, list(Subject = 18),
          paste(COMMON_NOTES,
                "estat icc after a random-coefficient model is conditional on the random-effects covariates being 0:",
                "icc = var(_cons) / (var(_cons) + var(Residual)), i.e. at Days = 0 (the covariance term does not enter)."))

## ---- oats nested, REML --------------------------------------------------------
oats_lr <- list(
  list(stata = "mixed yield nitro || block:, reml (m0) vs mixed yield nitro || block: || variety:, reml (m1)",
       m0 = function(d) best_lmer(yield ~ nitro + (1 | block), d, TRUE),
       m1 = function(d) best_lmer(yield ~ nitro + (1 | block/variety), d, TRUE), refit = FALSE))
oats_key <- function(lev) {                       # lme4 "variety:block" -> Stata "block:variety"
  if (!grepl(":", lev[1])) return(lev)
  s <- strsplit(lev, ":"); sapply(s, function(v) paste(v[2], v[1], sep = ":"))
}
make_case("post_oats_nested_reml", "oats.csv", OATS,
          yield ~ nitro + (1 | block/variety), TRUE,
          "mixed yield nitro || block: || variety:, reml",
          c("nitro", "_cons"), c("nitro", "(Intercept)"),
          list(list(level = "block", terms = "_cons", keys = one("block:(Intercept),(Intercept)")),
               list(level = "variety", terms = "_cons", keys = one("variety:block:(Intercept),(Intercept)"))),
          list(list(level = "block", keys = "block:(Intercept),(Intercept)"),
               list(level = "variety|block", keys = c("block:(Intercept),(Intercept)",
                                                      "variety:block:(Intercept),(Intercept)"))),
          list(list(k = 2, level = "block", group_vars = "block", terms = "_cons",
                    lme4_terms = "(Intercept)", group_key = oats_key),
               list(k = 1, level = "variety", group_vars = c("block", "variety"), terms = "_cons",
                    lme4_terms = "(Intercept)", group_key = oats_key)),
          oats_lr, list(block = 6, variety = 18),
          paste(COMMON_NOTES,
                "ICCs as estat icc prints them for a three-level model: level 'block' = v_block/(v_block+v_variety+v_res)",
                "(same block, different variety); level 'variety|block' = (v_block+v_variety)/(total) (same block and variety).",
                "The LR test between REML fits is valid here because the fixed part is the same (lme4 anova(refit = FALSE)).",
                "blups for level variety: groups 'block:variety'."))
