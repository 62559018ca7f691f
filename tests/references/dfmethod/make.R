## Small-sample inference references for `mixed ..., reml dfmethod(satterthwaite|kroger)`.
## Run from the repository root:  Rscript tests/references/dfmethod/make.R
##
## For each REML model:
##  * lme4 lmer fit (best REML criterion over bobyqa / Nelder_Mead / nloptwrap);
##  * Satterthwaite DFs
##      - "oim": lmerTest 3.x (numerical Hessian of the REML deviance, i.e. the
##        observed information; = Stata dfmethod(satterthwaite, oim)), cross-checked by
##        an own dense implementation with the analytic observed information;
##      - "eim": own dense implementation with the expected information of the
##        REML criterion, I_ij = 0.5 tr(P V_i P V_j) (Stata's default
##        dfmethod(satterthwaite), believed to use eim);
##  * Kenward-Roger DFs, adjusted SEs and F tests from pbkrtest (get_Lb_ddf,
##    vcovAdj, KRmodcomp), cross-checked against lmerTest's ddf = "Kenward-Roger".
## Multi-coefficient F tests: lmerTest::contest (Satterthwaite, Fai-Cornelius style
## eigen-decomposition, ddf = 2E/(E-q)) and pbkrtest::KRmodcomp (KR, scaled F).
## The same Satterthwaite multi-df formula is applied with the eim variances.

source("tests/references/common.R")
suppressPackageStartupMessages({
  library(lme4); library(lmerTest); library(pbkrtest)
})
OUT <- file.path(REF_ROOT, "dfmethod")
VERS <- pkg_version_string(c("lme4", "lmerTest", "pbkrtest", "Matrix", "numDeriv", "jsonlite"))

best_lmer <- function(formula, data) {
  ctrl <- list(bobyqa = list(rhoend = 1e-11, maxfun = 1e5),
               Nelder_Mead = list(FtolAbs = 1e-14, FtolRel = 1e-15, XtolRel = 1e-12, maxfun = 1e5),
               nloptwrap = list(ftol_abs = 1e-14, ftol_rel = 1e-15, xtol_abs = 1e-12,
                                xtol_rel = 1e-12, maxeval = 1e5))
  fits <- lapply(names(ctrl), function(o)
    lmerTest::lmer(formula, data = data, REML = TRUE,
                   control = lmerControl(optimizer = o, optCtrl = ctrl[[o]], calc.derivs = FALSE)))
  crit <- sapply(fits, function(f) deviance(f, REML = TRUE))
  fits[[which.min(crit)]]
}

## dense variance-parameter machinery: lmer_var_components() / lmm_dense() in common.R
dense_info <- function(m) lmm_dense(m, reml = TRUE)

satt_df <- function(Lrow, info, A) {
  v <- drop(t(Lrow) %*% info$Phi %*% Lrow)
  g <- sapply(info$dPhi, function(D) drop(t(Lrow) %*% D %*% Lrow))
  2 * v^2 / drop(t(g) %*% A %*% g)
}

## Satterthwaite F for L beta = 0 (lmerTest's contestMD algorithm)
satt_F <- function(L, beta, info, A) {
  VL <- L %*% info$Phi %*% t(L)
  e <- eigen(VL, symmetric = TRUE)
  q <- nrow(L)
  PtL <- t(e$vectors) %*% L
  t2 <- drop(PtL %*% beta)^2 / e$values
  Fv <- sum(t2) / q
  nu <- apply(PtL, 1, function(r) satt_df(r, info, A))
  ddf <- if (q == 1) nu else if (all(abs(nu - nu[1]) < 1e-8)) nu[1] else {
    E <- sum(nu / (nu - 2)); if (any(nu <= 2)) 2 else 2 * E / (E - q)
  }
  list(F = Fv, ndf = q, ddf = ddf, p = pf(Fv, q, ddf, lower.tail = FALSE))
}

## ---- one model ---------------------------------------------------------------
run_model <- function(id_base, data_name, origin, formula, stata_base, stata_names,
                      lme4_order, random_spec, ftests, n_groups, notes_model) {
  d <- read_data(data_name)
  m <- best_lmer(formula, d)
  beta_l <- fixef(m)
  ord <- match(lme4_order, names(beta_l))
  beta <- unname(beta_l[ord])
  Phi_l <- as.matrix(vcov(m))
  se <- sqrt(diag(Phi_l))[ord]
  p <- length(beta)
  info <- dense_info(m)
  A_eim <- solve(info$EIM); A_oim <- solve(info$OIM)
  E <- diag(length(beta_l))
  df_eim <- sapply(ord, function(i) satt_df(E[i, ], info, A_eim))
  df_oim_own <- sapply(ord, function(i) satt_df(E[i, ], info, A_oim))
  st <- summary(m, ddf = "Satterthwaite")$coefficients
  df_lmertest <- unname(st[ord, "df"])
  ## Kenward-Roger
  Vkr <- as.matrix(vcovAdj(m))
  se_kr <- sqrt(diag(Vkr))[ord]
  df_kr <- sapply(ord, function(i) get_Lb_ddf(m, matrix(E[i, ], nrow = 1)))
  skr <- summary(m, ddf = "Kenward-Roger")$coefficients
  ## variance-component SEs (REML observed information, natural parameters)
  vc_se <- sqrt(diag(A_oim)); names(vc_se) <- info$comps$labels
  vc_val <- info$comps$values; names(vc_val) <- info$comps$labels
  random <- lapply(random_spec, function(r) {
    q <- length(r$terms)
    C <- matrix(NA_real_, q, q); S <- matrix(NA_real_, q, q)
    for (a in 1:q) for (b in 1:q) {
      key <- r$keys[[paste(min(a, b), max(a, b))]]
      C[a, b] <- vc_val[[key]]; S[a, b] <- vc_se[[key]]
    }
    list(level = r$level, terms = I(r$terms), cov = C, se = S)
  })
  ll <- as.numeric(logLik(m)); k <- p + length(vc_val); N <- nobs(m)
  ## F tests
  ft_s <- list(); ft_k <- list()
  for (ft in ftests) {
    L <- matrix(0, length(ft$terms), length(beta_l))
    for (i in seq_along(ft$terms)) L[i, ord[match(ft$terms[i], stata_names)]] <- 1
    s_eim <- satt_F(L, beta_l, info, A_eim)
    s_oim_own <- satt_F(L, beta_l, info, A_oim)
    s_lt <- lmerTest::contest(m, L, ddf = "Satterthwaite", joint = TRUE)
    kr <- KRmodcomp(m, L)
    krs <- kr$stats
    kr_lt <- lmerTest::contest(m, L, ddf = "Kenward-Roger", joint = TRUE)
    ft_s[[length(ft_s) + 1]] <- list(
      stata = ft$stata, terms = I(ft$terms),
      F = s_eim$F, ndf = s_eim$ndf, ddf = s_eim$ddf, p = s_eim$p,
      ddf_oim = s_lt$DenDF, p_oim = s_lt[["Pr(>F)"]],
      checks = list(own_oim_ddf_minus_lmerTest = s_oim_own$ddf - s_lt$DenDF,
                    own_F_minus_lmerTest = s_eim$F - s_lt[["F value"]]))
    ft_k[[length(ft_k) + 1]] <- list(
      stata = ft$stata, terms = I(ft$terms),
      F = krs$Fstat, ndf = krs$ndf, ddf = krs$ddf, p = krs$p.value,
      F_scaling = krs$F.scaling, F_unscaled = krs$FstatU, p_unscaled = krs$p.valueU,
      checks = list(lmerTest_KR_F_minus_pbkrtest_scaled = kr_lt[["F value"]] - krs$Fstat,
                    lmerTest_KR_ddf_minus_pbkrtest = kr_lt$DenDF - krs$ddf))
  }
  base_extra <- list(AIC = -2 * ll + 2 * k, BIC = -2 * ll + k * log(N), k = k, N = N,
                     n_groups = n_groups)
  common <- function(method_stata, reference) list(
    id = NULL, class = "lmm", dataset = data_name, dataset_origin = origin, subset = NULL,
    stata = sprintf("%s dfmethod(%s)", stata_base, method_stata),
    lme4 = paste(deparse(formula, width.cutoff = 200), collapse = ""),
    reference = paste0(reference, " (", VERS, ")"),
    options = list(method = "reml", family = "gaussian", link = "identity",
                   intpoints = NULL, intmethod = NULL, residuals = NULL,
                   dfmethod = method_stata))
  ## Satterthwaite case
  t_s <- beta / se
  xs <- common("satterthwaite",
               "lme4 lmer(REML=TRUE, best of bobyqa/Nelder_Mead/nloptwrap with tight tolerances); Satterthwaite df: own dense EIM computation (default) and lmerTest (OIM)")
  xs$id <- paste0(id_base, "_satterthwaite")
  xs$results <- list(
    loglik = ll, fixed = list(names = I(stata_names), coef = beta, se = unname(se)),
    random = random, residual = list(var = sigma(m)^2, se = unname(vc_se["residual"])),
    extra = c(base_extra, list(
      df = unname(df_eim), t = unname(t_s), p = unname(2 * pt(-abs(t_s), df_eim)),
      df_oim = df_lmertest, p_oim = unname(2 * pt(-abs(t_s), df_lmertest)),
      ftests = ft_s)))
  xs$tolerance <- default_tolerance()
  xs$notes <- paste(
    "extra.df / t / p: per coefficient (order of fixed.names), Satterthwaite with the expected information of the REML criterion",
    "(believed to be Stata's default dfmethod(satterthwaite), i.e. eim); extra.df_oim / p_oim: observed information (lmerTest; Stata",
    "dfmethod(satterthwaite, oim)). t = coef/se with the unadjusted se. extra.ftests: Wald F = (Lb)'(L Phi L')^-1(Lb)/q with",
    "ddf from the Satterthwaite approximation of each eigen-contrast combined as 2E/(E-q) (lmerTest contestMD; Fai & Cornelius 1996),",
    "with eim variances (ddf, p) and lmerTest's oim (ddf_oim, p_oim); how Stata combines multi-df Satterthwaite is not verified here.",
    "random[].se / residual.se: sqrt(diag(inverse observed information of the REML criterion)) in the variance/covariance metric.",
    notes_model)
  xs$checks <- list(max_abs_reml_score_natural = max(abs(info$score)),
                    own_oim_df_minus_lmerTest = unname(df_oim_own - df_lmertest),
                    lmerTest_t_minus_own = unname(st[ord, "t value"] - t_s))
  write_case(xs, file.path(OUT, paste0(xs$id, ".json")))
  ## Kenward-Roger case
  t_k <- beta / se_kr
  xk <- common("kroger", "lme4 lmer(REML=TRUE, best of bobyqa/Nelder_Mead/nloptwrap with tight tolerances); Kenward-Roger: pbkrtest vcovAdj / get_Lb_ddf / KRmodcomp")
  xk$id <- paste0(id_base, "_kroger")
  xk$results <- list(
    loglik = ll, fixed = list(names = I(stata_names), coef = beta, se = unname(se_kr)),
    random = random, residual = list(var = sigma(m)^2, se = unname(vc_se["residual"])),
    extra = c(base_extra, list(
      df = unname(df_kr), t = unname(t_k), p = unname(2 * pt(-abs(t_k), df_kr)),
      se_unadjusted = unname(se), ftests = ft_k)))
  xk$tolerance <- default_tolerance()
  xk$notes <- paste(
    "fixed.se are the Kenward-Roger adjusted SEs (sqrt diag of pbkrtest::vcovAdj; Stata dfmethod(kroger) reports these);",
    "extra.se_unadjusted = sqrt(diag((X'V^-1X)^-1)). extra.df / t / p: per coefficient KR df (pbkrtest get_Lb_ddf), t = coef/se_KR.",
    "extra.ftests: pbkrtest KRmodcomp: F = scaled KR F statistic (F_scaling * F_unscaled, F_unscaled = Wald/q with the adjusted",
    "covariance), ndf, ddf, p; p_unscaled uses F_unscaled with the same ddf.",
    "random[].se / residual.se: sqrt(diag(inverse observed information of the REML criterion)) in the variance/covariance metric.",
    notes_model)
  xk$checks <- list(lmerTest_KR_df_minus_pbkrtest = unname(skr[ord, "df"] - df_kr),
                    lmerTest_KR_se_minus_pbkrtest = unname(skr[ord, "Std. Error"] - se_kr))
  write_case(xk, file.path(OUT, paste0(xk$id, ".json")))
  cat(sprintf("%-32s ll=%.6f df_eim=%s df_oim=%s df_kr=%s\n", id_base, ll,
              paste(signif(df_eim, 7), collapse = ","), paste(signif(df_lmertest, 7), collapse = ","),
              paste(signif(df_kr, 7), collapse = ",")))
  invisible(list(m = m, info = info))
}

SLEEP <- "R lme4::sleepstudy"
OATS <- "R nlme::Oats (Yates split-plot); block I..VI -> 1..6, variety alphabetical -> 1..3 (labels kept)"
PEN <- "R lme4::Penicillin; plate a..x -> 1..24, sample A..F -> 1..6 (labels kept)"

## A. sleepstudy random slopes, unstructured
run_model("dfm_sleepstudy_rs_un_reml", "sleepstudy.csv", SLEEP,
          Reaction ~ Days + (Days | Subject),
          "mixed Reaction Days || Subject: Days, covariance(unstructured) reml",
          c("Days", "_cons"), c("Days", "(Intercept)"),
          list(list(level = "Subject", terms = c("Days", "_cons"),
                    keys = list(`1 1` = "Subject:Days,Days", `1 2` = "Subject:(Intercept),Days",
                                `2 2` = "Subject:(Intercept),(Intercept)"))),
          list(list(stata = "test Days", terms = "Days"),
               list(stata = "test Days _cons", terms = c("Days", "_cons"))),
          list(Subject = 18), "")

## B. oats nested
run_model("dfm_oats_nested_reml", "oats.csv", OATS,
          yield ~ nitro + (1 | block/variety),
          "mixed yield nitro || block: || variety:, reml",
          c("nitro", "_cons"), c("nitro", "(Intercept)"),
          list(list(level = "block", terms = "_cons", keys = list(`1 1` = "block:(Intercept),(Intercept)")),
               list(level = "variety", terms = "_cons", keys = list(`1 1` = "variety:block:(Intercept),(Intercept)"))),
          list(list(stata = "test nitro", terms = "nitro"),
               list(stata = "test nitro _cons", terms = c("nitro", "_cons"))),
          list(block = 6, variety = 18), "")

## C. penicillin crossed
run_model("dfm_penicillin_crossed_reml", "penicillin.csv", PEN,
          diameter ~ 1 + (1 | plate) + (1 | sample),
          "mixed diameter || _all: R.plate || _all: R.sample, reml",
          c("_cons"), c("(Intercept)"),
          list(list(level = "_all", terms = "R.plate", keys = list(`1 1` = "plate:(Intercept),(Intercept)")),
               list(level = "_all", terms = "R.sample", keys = list(`1 1` = "sample:(Intercept),(Intercept)"))),
          list(list(stata = "test _cons", terms = "_cons")),
          list(plate = 24, sample = 6),
          "Crossed random effects; n_groups per crossed factor (Stata's group table shows _all with 1 group).")

## D. sleepstudy, Days as a factor (base Days = 0), random intercept
run_model("dfm_sleepstudy_idays_ri_reml", "sleepstudy.csv", SLEEP,
          Reaction ~ factor(Days) + (1 | Subject),
          "mixed Reaction i.Days || Subject:, reml",
          c(paste0(1:9, ".Days"), "_cons"), c(paste0("factor(Days)", 1:9), "(Intercept)"),
          list(list(level = "Subject", terms = "_cons", keys = list(`1 1` = "Subject:(Intercept),(Intercept)"))),
          list(list(stata = "testparm i.Days", terms = paste0(1:9, ".Days")),
               list(stata = "test 1.Days", terms = "1.Days")),
          list(Subject = 18),
          "Balanced design: Satterthwaite and KR df are exact (153 for within-subject contrasts).")

## E. oats split plot with variety as a fixed factor (whole-plot factor) + nitro
run_model("dfm_oats_variety_nested_reml", "oats.csv", OATS,
          yield ~ nitro + factor(variety) + (1 | block/variety),
          "mixed yield nitro i.variety || block: || variety:, reml",
          c("nitro", "2.variety", "3.variety", "_cons"),
          c("nitro", "factor(variety)2", "factor(variety)3", "(Intercept)"),
          list(list(level = "block", terms = "_cons", keys = list(`1 1` = "block:(Intercept),(Intercept)")),
               list(level = "variety", terms = "_cons", keys = list(`1 1` = "variety:block:(Intercept),(Intercept)"))),
          list(list(stata = "testparm i.variety", terms = c("2.variety", "3.variety")),
               list(stata = "test nitro", terms = "nitro"),
               list(stata = "test nitro 2.variety 3.variety", terms = c("nitro", "2.variety", "3.variety"))),
          list(block = 6, variety = 18),
          "Split plot: variety is the whole-plot factor, tested against block:variety (classical df 10), nitro against the residual (df 53).")
