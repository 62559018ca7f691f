## Reference fits for Stata's `mixed ..., residuals(...)` structures.
## Run from the repository root:  Rscript tests/references/residuals/make.R
##
## Every case is fitted twice:
##  * with nlme (lme / gls) where nlme can express the model, and
##  * with a direct ML maximisation of the Gaussian marginal likelihood written
##    here (common.R: gls_loglik), parameterised exactly as Stata reports the
##    model (variances, covariances, correlations, AR/MA coefficients).
## The own likelihood is checked against nlme's logLik at nlme's estimates,
## then maximised from there; the reported optimum is the better of the two
## (they agree to ~1e-7 in every expressible case, see "checks").
## Models nlme cannot express (toeplitz, banded, ar 1 with by()) are fitted
## only by the direct maximisation and are labelled so in "reference".
## Standard errors of the covariance parameters are from the inverse of the
## numerical Hessian (observed information) of the ML log likelihood profiled
## over beta, in the reported parameterisation (Stata's delta-method SEs from
## the observed information equal these at an interior optimum).
## Fixed-effect SEs are sqrt(diag((X'V^-1X)^-1)) at the ML estimates.

source("tests/references/common.R")
suppressPackageStartupMessages(library(nlme))

OUT <- file.path(REF_ROOT, "residuals")
PKGS <- c("nlme", "numDeriv", "jsonlite")
VERS <- pkg_version_string(PKGS)

## ---- data --------------------------------------------------------------------
ov <- read_data("ovary.csv")
ov <- ov[order(ov$mare, ov$time), ]
orth <- read_data("orthodont.csv")
orth <- orth[order(orth$subject, orth$occ), ]

## ---- correlation builders ----------------------------------------------------
arp_acf <- function(phi, maxlag) {
  # autocorrelations of a stationary AR(p), p <= 2 (Yule-Walker)
  r <- numeric(maxlag + 1); r[1] <- 1
  if (length(phi) == 1) {
    r <- phi^(0:maxlag)
  } else {
    r[2] <- phi[1] / (1 - phi[2])
    if (maxlag >= 2) for (k in 3:(maxlag + 1)) r[k] <- phi[1] * r[k - 1] + phi[2] * r[k - 2]
  }
  r[seq_len(maxlag + 1)]
}
lagmat <- function(t) abs(outer(t, t, "-"))

## V_j = v0 * J + ve * R_j  (random intercept + homoskedastic correlated residuals)
make_ri_V <- function(times, corrfun, has_ri = TRUE) {
  L <- lapply(times, lagmat)
  function(par, j) {
    D <- L[[j]]
    R <- corrfun(par, D)
    ve <- par[2]
    V <- ve * R
    if (has_ri) V <- V + par[1]
    V
  }
}

## ---- generic case driver -----------------------------------------------------
fit_case <- function(d, yname, xnames, factor_terms, cluster, start_nat, to_nat, from_nat,
                     Vfun, nlme_ll = NULL, nlme_nat = NULL) {
  X <- cbind(as.matrix(d[, xnames, drop = FALSE]), `_cons` = 1)
  y_list <- split_by(d[[yname]], d[[cluster]])
  X_list <- split_rows(X, d[[cluster]])
  checks <- list()
  if (!is.null(nlme_nat)) {
    own_at_nlme <- gls_loglik(nlme_nat, y_list, X_list, Vfun)
    checks$own_loglik_at_nlme_estimates_minus_nlme <- own_at_nlme - nlme_ll
    start_nat <- c(list(nlme_nat), if (is.list(start_nat)) start_nat else NULL)
  }
  starts <- if (is.list(start_nat)) start_nat else list(start_nat)
  opt <- NULL
  for (st in starts) {
    o <- maximise_gls(st, to_nat, from_nat, y_list, X_list, Vfun)
    if (is.null(opt) || o$loglik > opt$loglik + 1e-9) opt <- o
  }
  if (length(starts) > 1) checks$n_starting_values <- length(starts)
  nat <- opt$nat
  if (!is.null(nlme_nat)) {
    checks$own_optimum_minus_nlme_loglik <- opt$loglik - nlme_ll
    checks$own_optimum_max_abs_diff_params_vs_nlme <- max(abs(nat - nlme_nat))
    if (nlme_ll > opt$loglik) {  # keep the better optimum
      nat <- nlme_nat
    }
  }
  det <- gls_loglik(nat, y_list, X_list, Vfun, details = TRUE)
  V <- nat_vcov(nat, y_list, X_list, Vfun)
  checks$max_abs_gradient_natural <- max(abs(nat_grad(nat, y_list, X_list, Vfun)))
  b <- det$beta; names(b) <- colnames(X)
  nb <- length(b)
  wald <- drop(t(b[-nb]) %*% solve(det$vcov[-nb, -nb, drop = FALSE]) %*% b[-nb])
  ll0 <- ols_loglik_ml(d[[yname]], X)
  list(nat = nat, se_nat = sqrt(diag(V)), vcov_nat = V, loglik = det$loglik,
       beta = b, se_beta = det$se, N = det$N, k = nb + length(nat),
       wald = wald, wald_df = nb - 1, ll_ols = ll0, checks = checks,
       n_groups = length(y_list))
}

case_json <- function(id, dataset, origin, stata, reference, residuals_opt, fit,
                      fixed_names, random, residual, extra_specific, notes,
                      tolerance = default_tolerance(), group_name) {
  ll <- fit$loglik; k <- fit$k; N <- fit$N
  extra <- c(list(AIC = -2 * ll + 2 * k, BIC = -2 * ll + k * log(N), k = k, N = N,
                  n_groups = setNames(list(fit$n_groups), group_name),
                  wald_chi2 = fit$wald, wald_df = fit$wald_df,
                  lr_chi2 = 2 * (ll - fit$ll_ols), lr_df = length(fit$nat) - 1),
             extra_specific)
  x <- list(
    id = id, class = "lmm", dataset = dataset, dataset_origin = origin, subset = NULL,
    stata = stata, lme4 = NULL, reference = paste0(reference, " (", VERS, ")"),
    options = list(method = "ml", family = "gaussian", link = "identity",
                   intpoints = NULL, intmethod = NULL, residuals = residuals_opt),
    results = list(loglik = ll,
                   fixed = list(names = I(fixed_names), coef = unname(fit$beta),
                                se = unname(fit$se_beta)),
                   random = random, residual = residual, extra = extra),
    tolerance = tolerance, notes = notes, checks = fit$checks)
  write_case(x, file.path(OUT, paste0(id, ".json")))
  cat(sprintf("%-40s ll = %.6f\n", id, ll))
  invisible(x)
}

ri_random <- function(fit, level) list(list(level = level, terms = I("_cons"),
                                            cov = mat1(fit$nat[1]), se = mat1(fit$se_nat[1])))

OV_ORIGIN <- "R nlme::Ovary; see tests/conformance/cases/lmm_ovary_ar1_ml.json (time = 1..n_j within mare, stime = original Time)"
OR_ORIGIN <- "R nlme::Orthodont; see tests/conformance/cases/lmm_orthodont_hetres_ml.json (occ = 1..4 for ages 8,10,12,14)"
ov_times <- split_by(ov$time, ov$mare)
ov_stimes <- split_by(ov$stime, ov$mare)
ov_fixed <- c("sin1", "cos1", "_cons")
lv <- function(p, i) { p[i] <- log(p[i]); p }        # helper for transforms
ev <- function(u, i) { u[i] <- exp(u[i]); u }

## ============================================================================
## 1. MA(1): mixed follicles sin1 cos1 || mare:, residuals(ma 1, t(time))
## ============================================================================
m <- lme(follicles ~ sin1 + cos1, random = ~ 1 | mare,
         correlation = corARMA(form = ~ time | mare, q = 1), data = ov, method = "ML")
th <- unname(coef(m$modelStruct$corStruct, unconstrained = FALSE))
nlme_nat <- c(as.numeric(VarCorr(m)[1, 1]), m$sigma^2, th)
ma_corr <- function(par, D) { r <- par[3] / (1 + par[3]^2); (D == 0) + r * (D == 1) }
Vf <- make_ri_V(ov_times, ma_corr)
fit <- fit_case(ov, "follicles", c("sin1", "cos1"), NULL, "mare", NULL,
                to_nat = function(u) c(exp(u[1:2]), tanh(u[3])),
                from_nat = function(p) c(log(p[1:2]), atanh(p[3])),
                Vfun = Vf, nlme_ll = as.numeric(logLik(m)), nlme_nat = nlme_nat)
theta <- fit$nat[3]
case_json("lmm_ovary_ma1_ml", "ovary.csv", OV_ORIGIN,
          "mixed follicles sin1 cos1 || mare:, residuals(ma 1, t(time))",
          "nlme lme(follicles ~ sin1 + cos1, random = ~1|mare, correlation = corARMA(form = ~time|mare, q = 1), method = 'ML'), cross-checked and polished by direct ML maximisation",
          "ma 1, t(time)", fit, ov_fixed, ri_random(fit, "mare"),
          list(var = fit$nat[2], se = fit$se_nat[2]),
          list(ma1_theta = theta, ma1_theta_se = fit$se_nat[3],
               ma1_lag1_corr = theta / (1 + theta^2),
               ma1_innovation_var = fit$nat[2] / (1 + theta^2)),
          paste("e_t = u_t + theta*u_{t-1} (same sign convention as nlme corARMA and Stata's ma):",
                "lag-1 residual correlation = theta/(1+theta^2), zero beyond lag 1.",
                "residual.var = marginal var(e) = nlme sigma^2 (assumed to be what Stata prints as var(e),",
                "as in lmm_ovary_ar1_ml); extra.ma1_innovation_var = var(e)/(1+theta^2) in case Stata reports the innovation variance.",
                "lr_chi2 is against the linear regression with iid errors."),
          group_name = "mare")

## ============================================================================
## 2. AR(2): mixed follicles sin1 cos1 || mare:, residuals(ar 2, t(time))
## ============================================================================
m <- lme(follicles ~ sin1 + cos1, random = ~ 1 | mare,
         correlation = corARMA(form = ~ time | mare, p = 2), data = ov, method = "ML")
phi <- unname(coef(m$modelStruct$corStruct, unconstrained = FALSE))
nlme_nat <- c(as.numeric(VarCorr(m)[1, 1]), m$sigma^2, phi)
maxlag <- max(ov$time)
ar2_corr <- function(par, D) { r <- arp_acf(par[3:4], maxlag); matrix(r[D + 1], nrow(D)) }
Vf <- make_ri_V(ov_times, ar2_corr)
## unconstrained: partial autocorrelations (pacf1 = phi1/(1-phi2), pacf2 = phi2)
fit <- fit_case(ov, "follicles", c("sin1", "cos1"), NULL, "mare", NULL,
                to_nat = function(u) { p2 <- tanh(u[4]); p1 <- tanh(u[3]) * (1 - p2)
                                       c(exp(u[1:2]), p1, p2) },
                from_nat = function(p) c(log(p[1:2]), atanh(p[3] / (1 - p[4])), atanh(p[4])),
                Vfun = Vf, nlme_ll = as.numeric(logLik(m)), nlme_nat = nlme_nat)
case_json("lmm_ovary_ar2_ml", "ovary.csv", OV_ORIGIN,
          "mixed follicles sin1 cos1 || mare:, residuals(ar 2, t(time))",
          "nlme lme(follicles ~ sin1 + cos1, random = ~1|mare, correlation = corARMA(form = ~time|mare, p = 2), method = 'ML'), cross-checked and polished by direct ML maximisation",
          "ar 2, t(time)", fit, ov_fixed, ri_random(fit, "mare"),
          list(var = fit$nat[2], se = fit$se_nat[2]),
          list(ar2_rho1 = fit$nat[3], ar2_rho1_se = fit$se_nat[3],
               ar2_rho2 = fit$nat[4], ar2_rho2_se = fit$se_nat[4],
               ar2_lag1_corr = fit$nat[3] / (1 - fit$nat[4])),
          paste("e_t = rho1*e_{t-1} + rho2*e_{t-2} + u_t: extra.ar2_rho1/ar2_rho2 are the AR coefficients",
                "(nlme corARMA Phi1, Phi2; Stata labels them rho1, rho2). residual.var = marginal var(e) (nlme sigma^2).",
                "lr_chi2 is against the linear regression with iid errors."),
          group_name = "mare")

## ============================================================================
## 3. Exponential, integer time: residuals(exponential, t(time))
##    (equally spaced integer times: identical to AR(1), cf. lmm_ovary_ar1_ml)
## 4. Exponential, real time:    residuals(exponential, t(stime))
## ============================================================================
for (tv in c("time", "stime")) {
  m <- lme(follicles ~ sin1 + cos1, random = ~ 1 | mare,
           correlation = corExp(form = as.formula(paste("~", tv, "| mare"))),
           data = ov, method = "ML")
  rng <- unname(coef(m$modelStruct$corStruct, unconstrained = FALSE))
  nlme_nat <- c(as.numeric(VarCorr(m)[1, 1]), m$sigma^2, rng)
  exp_corr <- function(par, D) exp(-D / par[3])
  Vf <- make_ri_V(if (tv == "time") ov_times else ov_stimes, exp_corr)
  fit <- fit_case(ov, "follicles", c("sin1", "cos1"), NULL, "mare", NULL,
                  to_nat = function(u) exp(u), from_nat = function(p) log(p),
                  Vfun = Vf, nlme_ll = as.numeric(logLik(m)), nlme_nat = nlme_nat)
  range <- fit$nat[3]; range_se <- fit$se_nat[3]
  rho <- exp(-1 / range); rho_se <- rho / range^2 * range_se
  tol <- if (tv == "stime") default_tolerance(exp_rho = 1e-3 * rho, exp_rho_se = 5e-3 * rho_se)
         else default_tolerance()
  case_json(paste0("lmm_ovary_exponential_", tv, "_ml"), "ovary.csv", OV_ORIGIN,
            sprintf("mixed follicles sin1 cos1 || mare:, residuals(exponential, t(%s))", tv),
            sprintf("nlme lme(follicles ~ sin1 + cos1, random = ~1|mare, correlation = corExp(form = ~%s|mare), method = 'ML'), cross-checked and polished by direct ML maximisation", tv),
            sprintf("exponential, t(%s)", tv), fit, ov_fixed, ri_random(fit, "mare"),
            list(var = fit$nat[2], se = fit$se_nat[2]),
            list(exp_rho = rho, exp_rho_se = rho_se, exp_range = range, exp_range_se = range_se),
            paste(sprintf("corr(e_i, e_k) = rho^|%s_i - %s_k| = exp(-|dt|/range).", tv, tv),
                  "extra.exp_rho is Stata's rho; extra.exp_range is nlme's corExp range (rho = exp(-1/range));",
                  "exp_rho_se by the delta method from the observed-information SE of range (invariant at the optimum).",
                  if (tv == "time") "With time = 1..n_j equally spaced this is the AR(1) model of lmm_ovary_ar1_ml (same loglik, rho = ar1_rho)."
                  else paste("stime steps are 1/20..1/22 cycle, so rho per unit stime is tiny (~1e-5) although the lag-1 correlation is ~0.6;",
                             "tolerance.extra gives exp_rho a relative tolerance. extra.exp_lag_corr_* are not given: they differ by mare."),
                  "residual.var = var(e) (nlme sigma^2). lr_chi2 is against the linear regression with iid errors."),
            tolerance = tol, group_name = "mare")
}

## ============================================================================
## 5. Toeplitz(2): mixed follicles sin1 cos1 || mare:, residuals(toeplitz 2, t(time))
##    nlme has no Toeplitz class: direct ML maximisation only.
## ============================================================================
toep_corr <- function(par, D) { r <- c(1, par[3:4]); out <- matrix(0, nrow(D), ncol(D))
                                 for (l in 0:2) out[D == l] <- r[l + 1]; out }
Vf <- make_ri_V(ov_times, toep_corr)
## sanity check of the builder: with rho1 = a, rho2 = a^2 and zero beyond lag 2 it is
## not AR(1); instead check the MA(1) special case (rho2 = 0) against lme's MA(1) fit.
m_ma <- lme(follicles ~ sin1 + cos1, random = ~ 1 | mare,
            correlation = corARMA(form = ~ time | mare, q = 1), data = ov, method = "ML")
thm <- unname(coef(m_ma$modelStruct$corStruct, unconstrained = FALSE))
chk_nat <- c(as.numeric(VarCorr(m_ma)[1, 1]), m_ma$sigma^2, thm / (1 + thm^2), 0)
Xo <- cbind(as.matrix(ov[, c("sin1", "cos1")]), 1)
chk <- gls_loglik(chk_nat, split_by(ov$follicles, ov$mare), split_rows(Xo, ov$mare), Vf) -
  as.numeric(logLik(m_ma))
## start from the AR(1) fit's implied lag-1/lag-2 correlations
m1 <- lme(follicles ~ sin1 + cos1, random = ~ 1 | mare,
          correlation = corAR1(form = ~ time | mare), data = ov, method = "ML")
r1 <- unname(coef(m1$modelStruct$corStruct, unconstrained = FALSE))
start <- list(c(as.numeric(VarCorr(m1)[1, 1]), m1$sigma^2, r1, r1^2),
              chk_nat + c(0, 0, 0, 0.05), c(5, 15, 0.2, 0.1), c(8, 12, 0.6, 0.4))
fit <- fit_case(ov, "follicles", c("sin1", "cos1"), NULL, "mare", start,
                to_nat = function(u) c(exp(u[1:2]), tanh(u[3:4])),
                from_nat = function(p) c(log(p[1:2]), atanh(p[3:4])), Vfun = Vf)
fit$checks$builder_check_ma1_special_case_minus_nlme_ma1_loglik <- chk
case_json("lmm_ovary_toeplitz2_ml", "ovary.csv", OV_ORIGIN,
          "mixed follicles sin1 cos1 || mare:, residuals(toeplitz 2, t(time))",
          "direct ML maximisation in R (nlminb + BFGS polish) of the Gaussian marginal likelihood V_j = var(_cons) J + var(e) R_j, R_j Toeplitz with corr rho1 at |dt|=1, rho2 at |dt|=2, 0 beyond; nlme cannot express a Toeplitz correlation (no corStruct class for it)",
          "toeplitz 2, t(time)", fit, ov_fixed, ri_random(fit, "mare"),
          list(var = fit$nat[2], se = fit$se_nat[2]),
          list(toeplitz_rho1 = fit$nat[3], toeplitz_rho1_se = fit$se_nat[3],
               toeplitz_rho2 = fit$nat[4], toeplitz_rho2_se = fit$se_nat[4]),
          paste("Stata toeplitz #: homoskedastic residuals, corr(e_t, e_{t+k}) = rho_k for k <= 2, 0 beyond.",
                "Not expressible in nlme; fitted by direct maximisation (own likelihood code validated against",
                "nlme: see checks.builder_check_ma1_special_case_minus_nlme_ma1_loglik, the same builder with rho2 = 0",
                "at nlme's MA(1) estimates). lr_chi2 is against the linear regression with iid errors."),
          group_name = "mare")

## ============================================================================
## 6. Banded(1): mixed distance age i.male || subject:, noconstant residuals(banded 1, t(occ))
##    unstructured 4x4 with cov at |lag| > 1 fixed at 0: direct ML only.
## ============================================================================
or_occ <- split_by(orth$occ, orth$subject)
band_V <- function(par, j) {
  o <- or_occ[[j]]
  S <- diag(par[1:4])
  S[1, 2] <- S[2, 1] <- par[5]; S[2, 3] <- S[3, 2] <- par[6]; S[3, 4] <- S[4, 3] <- par[7]
  S[o, o, drop = FALSE]
}
## validate the builder style on the full unstructured model (existing case lmm_orthodont_unres_ml)
g_un <- gls(distance ~ age + factor(male), data = orth,
            correlation = corSymm(form = ~ occ | subject),
            weights = varIdent(form = ~ 1 | occ), method = "ML")
un_S <- getVarCov(g_un, individual = 1)
or_X <- cbind(as.matrix(orth[, c("age", "male")]), 1)
or_y <- split_by(orth$distance, orth$subject); or_Xl <- split_rows(or_X, orth$subject)
un_V <- function(par, j) { o <- or_occ[[j]]; un_S[o, o, drop = FALSE] }
chk_un <- gls_loglik(0, or_y, or_Xl, un_V) - as.numeric(logLik(g_un))
start <- list(c(diag(un_S), un_S[1, 2], un_S[2, 3], un_S[3, 4]),
              c(diag(un_S), 0, 0, 0), c(rep(5, 4), 2, 2, 2))
fit <- fit_case(orth, "distance", c("age", "male"), NULL, "subject", start,
                to_nat = function(u) c(exp(u[1:4]), u[5:7]),
                from_nat = function(p) c(log(p[1:4]), p[5:7]), Vfun = band_V)
fit$checks$builder_check_unstructured_minus_nlme_gls_loglik <- chk_un
S <- diag(fit$nat[1:4]); S[cbind(1:3, 2:4)] <- S[cbind(2:4, 1:3)] <- fit$nat[5:7]
SE <- diag(fit$se_nat[1:4]); SE[cbind(1:3, 2:4)] <- SE[cbind(2:4, 1:3)] <- fit$se_nat[5:7]
SE[abs(row(SE) - col(SE)) > 1] <- NA
fit$wald_df <- 2
case_json("lmm_orthodont_banded1_ml", "orthodont.csv", OR_ORIGIN,
          "mixed distance age i.male || subject:, noconstant residuals(banded 1, t(occ))",
          "direct ML maximisation in R (nlminb + BFGS polish) of the Gaussian marginal likelihood with residual covariance = unstructured 4x4 (by occ) with cov(e_i, e_j) = 0 for |i-j| > 1; nlme cannot constrain corSymm correlations to zero",
          "banded 1, t(occ)", fit, c("age", "1.male", "_cons"), list(),
          list(var = NULL, se = NULL),
          list(residual_t_levels = I(1:4), residual_cov_matrix = S,
               residual_cov_matrix_se = SE),
          paste("Marginal model (no random effects). Stata banded 1: var(e1)..var(e4) and cov(e1,e2), cov(e2,e3), cov(e3,e4)",
                "estimated, other covariances 0. extra.residual_cov_matrix[i][j] for occ = i, j (structural zeros have se null).",
                "Builder validated on the full unstructured model: checks.builder_check_unstructured_minus_nlme_gls_loglik",
                "(same code, nlme gls corSymm + varIdent estimates, cf. lmm_orthodont_unres_ml).",
                "lr_chi2 is against the linear regression with iid errors (lr_df = 6)."),
          group_name = "subject")

## ============================================================================
## 7. Exchangeable by(male): mixed distance age i.male || subject:, noconstant
##        residuals(exchangeable, by(male))
##    nlme: lme with a sex-specific random intercept (pdDiag) + varIdent by sex,
##    which is the same model when both covariances are >= 0.
## ============================================================================
orth$fem_i <- as.numeric(orth$male == 0); orth$mal_i <- as.numeric(orth$male == 1)
m <- lme(distance ~ age + factor(male), random = list(subject = pdDiag(~ 0 + fem_i + mal_i)),
         weights = varIdent(form = ~ 1 | male), data = orth, method = "ML")
vc <- as.numeric(VarCorr(m)[1:2, 1])
ratio <- coef(m$modelStruct$varStruct, unconstrained = FALSE, allCoef = TRUE)
res_var <- m$sigma^2 * ratio[c("0", "1")]^2
nlme_nat <- c(vc[1] + res_var[1], vc[1], vc[2] + res_var[2], vc[2])
sub_male <- sapply(split(orth$male, orth$subject), `[`, 1)
or_n <- sapply(or_occ, length)
exch_V <- function(par, j) {
  s <- if (sub_male[j] == 0) par[1:2] else par[3:4]
  n <- or_n[j]; matrix(s[2], n, n) + diag(s[1] - s[2], n)
}
fit <- fit_case(orth, "distance", c("age", "male"), NULL, "subject", NULL,
                to_nat = function(u) c(exp(u[1]), u[2], exp(u[3]), u[4]),
                from_nat = function(p) c(log(p[1]), p[2], log(p[3]), p[4]),
                Vfun = exch_V, nlme_ll = as.numeric(logLik(m)), nlme_nat = nlme_nat)
case_json("lmm_orthodont_exch_by_male_ml", "orthodont.csv", OR_ORIGIN,
          "mixed distance age i.male || subject:, noconstant residuals(exchangeable, by(male))",
          "nlme lme(distance ~ age + factor(male), random = list(subject = pdDiag(~0 + female + male)), weights = varIdent(form = ~1|male), method = 'ML') (sex-specific random intercept = sex-specific exchangeable covariance), cross-checked and polished by direct ML maximisation in the (var(e), cov(e)) parameterisation",
          "exchangeable, by(male)", fit, c("age", "1.male", "_cons"), list(),
          list(var = NULL, se = NULL),
          list(residual_var_by = list(`male=0` = fit$nat[1], `male=1` = fit$nat[3]),
               residual_var_by_se = list(`male=0` = fit$se_nat[1], `male=1` = fit$se_nat[3]),
               residual_cov_by = list(`male=0` = fit$nat[2], `male=1` = fit$nat[4]),
               residual_cov_by_se = list(`male=0` = fit$se_nat[2], `male=1` = fit$se_nat[4])),
          paste("Marginal model, no random effects. Stata's var(e) and cov(e) for male==0 and male==1 are in extra.residual_var_by / residual_cov_by",
                "(results.residual.var is null). lr_chi2 is against the linear regression with iid errors (lr_df = 3)."),
          group_name = "subject")

## ============================================================================
## 8. AR(1) by(male): mixed distance age i.male || subject:, residuals(ar 1, t(occ) by(male))
##    nlme's corAR1 cannot have a different rho per sex: direct ML only.
## ============================================================================
m1 <- lme(distance ~ age + factor(male), random = ~ 1 | subject,
          correlation = corAR1(form = ~ occ | subject), data = orth, method = "ML")
r1 <- unname(coef(m1$modelStruct$corStruct, unconstrained = FALSE))
or_L <- lapply(or_occ, lagmat)
arby_V <- function(par, j) {
  s <- if (sub_male[j] == 0) par[2:3] else par[4:5]
  par[1] + s[1] * s[2]^or_L[[j]]
}
## builder check: common parameters reproduce nlme's AR(1) fit
chk_nat <- c(as.numeric(VarCorr(m1)[1, 1]), m1$sigma^2, r1, m1$sigma^2, r1)
chk <- gls_loglik(chk_nat, or_y, or_Xl, arby_V) - as.numeric(logLik(m1))
fit <- fit_case(orth, "distance", c("age", "male"), NULL, "subject",
                list(chk_nat, c(1, 1, 0.3, 3, 0.3), c(3, 0.5, 0.5, 2, 0.1), c(0.5, 4, 0.8, 2, 0.6)),
                to_nat = function(u) c(exp(u[1:2]), tanh(u[3]), exp(u[4]), tanh(u[5])),
                from_nat = function(p) c(log(p[1:2]), atanh(p[3]), log(p[4]), atanh(p[5])),
                Vfun = arby_V)
fit$checks$builder_check_common_params_minus_nlme_ar1_loglik <- chk
fit$checks$nlme_common_ar1_loglik <- as.numeric(logLik(m1))
case_json("lmm_orthodont_ar1_by_male_ml", "orthodont.csv", OR_ORIGIN,
          "mixed distance age i.male || subject:, residuals(ar 1, t(occ) by(male))",
          "direct ML maximisation in R (nlminb + BFGS polish, 4 starting values) of V_j = var(_cons) J + var_s(e) rho_s^|occ_i - occ_k| with sex-specific var(e) and rho; nlme's corAR1 cannot vary rho by group",
          "ar 1, t(occ) by(male)", fit, c("age", "1.male", "_cons"), ri_random(fit, "subject"),
          list(var = NULL, se = NULL),
          list(residual_var_by = list(`male=0` = fit$nat[2], `male=1` = fit$nat[4]),
               residual_var_by_se = list(`male=0` = fit$se_nat[2], `male=1` = fit$se_nat[4]),
               ar1_rho_by = list(`male=0` = fit$nat[3], `male=1` = fit$nat[5]),
               ar1_rho_by_se = list(`male=0` = fit$se_nat[3], `male=1` = fit$se_nat[5])),
          paste("Random intercept by subject plus AR(1) residuals with separate var(e) and rho for male==0 and male==1",
                "(extra.residual_var_by, extra.ar1_rho_by; results.residual.var is null).",
                "Builder validated: with equal parameters across sexes it reproduces nlme's lme corAR1 loglik at nlme's",
                "estimates (checks.builder_check_common_params_minus_nlme_ar1_loglik).",
                "lr_chi2 is against the linear regression with iid errors (lr_df = 4)."),
          group_name = "subject")

## ============================================================================
## 9. AR(1) by(male), no random effects:
##    mixed distance age i.male || subject:, noconstant residuals(ar 1, t(occ) by(male))
##    direct ML only (nlme corAR1 has one rho).
## ============================================================================
g1 <- gls(distance ~ age + factor(male), correlation = corAR1(form = ~ occ | subject),
          data = orth, method = "ML")
rg <- unname(coef(g1$modelStruct$corStruct, unconstrained = FALSE))
arby0_V <- function(par, j) {
  s <- if (sub_male[j] == 0) par[1:2] else par[3:4]
  s[1] * s[2]^or_L[[j]]
}
chk_nat <- c(g1$sigma^2, rg, g1$sigma^2, rg)
chk <- gls_loglik(chk_nat, or_y, or_Xl, arby0_V) - as.numeric(logLik(g1))
fit <- fit_case(orth, "distance", c("age", "male"), NULL, "subject",
                list(chk_nat, c(3, 0.3, 5, 0.7), c(6, 0.8, 3, 0.2)),
                to_nat = function(u) c(exp(u[1]), tanh(u[2]), exp(u[3]), tanh(u[4])),
                from_nat = function(p) c(log(p[1]), atanh(p[2]), log(p[3]), atanh(p[4])),
                Vfun = arby0_V)
fit$checks$builder_check_common_params_minus_nlme_gls_ar1_loglik <- chk
fit$checks$nlme_gls_common_ar1_loglik <- as.numeric(logLik(g1))
case_json("lmm_orthodont_ar1_by_male_norandom_ml", "orthodont.csv", OR_ORIGIN,
          "mixed distance age i.male || subject:, noconstant residuals(ar 1, t(occ) by(male))",
          "direct ML maximisation in R (nlminb + BFGS polish, 3 starting values) of V_j = var_s(e) rho_s^|occ_i - occ_k| with sex-specific var(e) and rho; nlme's corAR1 cannot vary rho by group",
          "ar 1, t(occ) by(male)", fit, c("age", "1.male", "_cons"), list(),
          list(var = NULL, se = NULL),
          list(residual_var_by = list(`male=0` = fit$nat[1], `male=1` = fit$nat[3]),
               residual_var_by_se = list(`male=0` = fit$se_nat[1], `male=1` = fit$se_nat[3]),
               ar1_rho_by = list(`male=0` = fit$nat[2], `male=1` = fit$nat[4]),
               ar1_rho_by_se = list(`male=0` = fit$se_nat[2], `male=1` = fit$se_nat[4])),
          paste("Marginal model (no random effects): AR(1) residuals with separate var(e) and rho for male==0 and male==1.",
                "Fixed-effect SEs are (X'V^-1X)^-1 at the ML estimates (nlme::gls's vcov() for ML fits is larger by sqrt(N/(N-p))).",
                "Builder validated against nlme gls corAR1 (checks.builder_check_common_params_minus_nlme_gls_ar1_loglik).",
                "lr_chi2 is against the linear regression with iid errors (lr_df = 3)."),
          group_name = "subject")

## ============================================================================
## 10-13. pig data (48 pigs x weeks 1..9): mixed weight week || id:, residuals(...)
##    where nlminb/BOBYQA-type optimisers stop early on the non-positive-definite
##    region (toeplitz 2, banded 1: direct ML from several starts), and the two
##    structures that absorb the random intercept (full toeplitz, unstructured):
##    var(_cons) J + R is again a full Toeplitz / unstructured matrix, so the
##    maximum is nlme's gls with corARMA(p = 8) (PACF-parameterised AR(8) = any
##    9x9 Toeplitz correlation) / corSymm + varIdent; the split between var(_cons)
##    and R is not identified, so only the log likelihood and the fixed effects
##    are reference numbers there.
## ============================================================================
pig <- read_data("pig.csv")
pig <- pig[order(pig$id, pig$week), ]
PIG_ORIGIN <- "Diggle, Liang & Zeger (1994) pig weights; Stata's pig.dta (48 pigs, weeks 1..9)"
pig_times <- split_by(pig$week, pig$id)
pig_y <- split_by(pig$weight, pig$id)
pig_Xl <- split_rows(cbind(pig$week, 1), pig$id)
m_pig <- lme(weight ~ week, random = ~ 1 | id, correlation = corAR1(form = ~ week | id),
             data = pig, method = "ML")
pig_r1 <- unname(coef(m_pig$modelStruct$corStruct, unconstrained = FALSE))
pig_v0 <- as.numeric(VarCorr(m_pig)[1, 1]); pig_ve <- m_pig$sigma^2

## 10. toeplitz 2
Vf <- make_ri_V(pig_times, toep_corr)
start <- list(c(pig_v0, pig_ve, pig_r1, pig_r1^2), c(pig_v0, pig_ve, 0.5, 0.1),
              c(10, 5, 0.2, 0.1), c(15, 10, 0.6, 0.3), c(5, 20, 0.8, 0.5))
fit <- fit_case(pig, "weight", "week", NULL, "id", start,
                to_nat = function(u) c(exp(u[1:2]), tanh(u[3:4])),
                from_nat = function(p) c(log(p[1:2]), atanh(p[3:4])), Vfun = Vf)
case_json("lmm_pig_toeplitz2_ml", "pig.csv", PIG_ORIGIN,
          "mixed weight week || id:, residuals(toeplitz 2, t(week))",
          "direct ML maximisation in R (nlminb + BFGS polish, 5 starting values) of the Gaussian marginal likelihood V_j = var(_cons) J + var(e) R_j, R_j Toeplitz with rho1, rho2 at lags 1, 2 and 0 beyond (builder validated in lmm_ovary_toeplitz2_ml)",
          "toeplitz 2, t(week)", fit, c("week", "_cons"), ri_random(fit, "id"),
          list(var = fit$nat[2], se = fit$se_nat[2]),
          list(toeplitz_rho1 = fit$nat[3], toeplitz_rho1_se = fit$se_nat[3],
               toeplitz_rho2 = fit$nat[4], toeplitz_rho2_se = fit$se_nat[4]),
          "Stata toeplitz 2. lr_chi2 is against the linear regression with iid errors.",
          group_name = "id")

## 11. banded 1: var(e1..e9), cov(e_t, e_t+1), plus var(_cons)
band9_V <- function(par, j) {
  S <- diag(par[2:10]); S[cbind(1:8, 2:9)] <- S[cbind(2:9, 1:8)] <- par[11:18]
  o <- pig_times[[j]]
  par[1] + S[o, o, drop = FALSE]
}
start <- list(c(pig_v0, rep(pig_ve, 9), rep(pig_r1 * pig_ve, 8)), c(pig_v0, rep(pig_ve, 9), rep(0, 8)),
              c(10, seq(2, 30, length.out = 9), rep(1, 8)))
fit <- fit_case(pig, "weight", "week", NULL, "id", start,
                to_nat = function(u) c(exp(u[1:10]), u[11:18]),
                from_nat = function(p) c(log(p[1:10]), p[11:18]), Vfun = band9_V)
S <- diag(fit$nat[2:10]); S[cbind(1:8, 2:9)] <- S[cbind(2:9, 1:8)] <- fit$nat[11:18]
SE <- diag(fit$se_nat[2:10]); SE[cbind(1:8, 2:9)] <- SE[cbind(2:9, 1:8)] <- fit$se_nat[11:18]
SE[abs(row(SE) - col(SE)) > 1] <- NA
case_json("lmm_pig_banded1_ml", "pig.csv", PIG_ORIGIN,
          "mixed weight week || id:, residuals(banded 1, t(week))",
          "direct ML maximisation in R (nlminb + BFGS polish, 3 starting values) of the Gaussian marginal likelihood V_j = var(_cons) J + S, S 9x9 with var(e_t) and cov(e_t, e_t+1) free, 0 beyond lag 1 (builder as lmm_orthodont_banded1_ml)",
          "banded 1, t(week)", fit, c("week", "_cons"), ri_random(fit, "id"),
          list(var = NULL, se = NULL),
          list(residual_t_levels = I(1:9), residual_cov_matrix = S, residual_cov_matrix_se = SE),
          "extra.residual_cov_matrix[i][j] for week = i, j (structural zeros have se null). lr_chi2 is against the linear regression with iid errors.",
          group_name = "id")

## 12-13. full toeplitz and unstructured: the marginal maximum from nlme gls
pig_marginal <- function(id, stata, opt, g, how, n_resid) {
  nat_V <- function(par, j) { o <- pig_times[[j]]; getVarCov(g)[o, o, drop = FALSE] }
  det <- gls_loglik(0, pig_y, pig_Xl, nat_V, details = TRUE)
  b <- det$beta; nb <- length(b)
  fit <- list(nat = numeric(n_resid + 1), loglik = det$loglik, beta = b, se_beta = det$se, N = det$N,
              k = nb + 1 + n_resid, wald = b[1]^2 / det$vcov[1, 1], wald_df = 1,
              ll_ols = ols_loglik_ml(pig$weight, cbind(pig$week, 1)), n_groups = length(pig_y),
              checks = list(own_loglik_at_nlme_minus_nlme = det$loglik - as.numeric(logLik(g))))
  x <- case_json(id, "pig.csv", PIG_ORIGIN, stata, how, opt, fit, c("week", "_cons"), list(),
                 list(var = NULL, se = NULL), list(),
                 paste("var(_cons) J + R is again a", if (n_resid == 9) "full Toeplitz" else "unstructured",
                       "9x9 matrix, so the ML maximum is nlme gls's marginal one and var(_cons) is not identified:",
                       "only loglik and the fixed effects are reference numbers. k counts var(_cons) and the",
                       n_resid, "residual parameters."),
                 group_name = "id")
  invisible(x)
}
g_toep <- gls(weight ~ week, data = pig, correlation = corARMA(form = ~ week | id, p = 8), method = "ML")
pig_marginal("lmm_pig_toeplitz_ml", "mixed weight week || id:, residuals(toeplitz, t(week))",
             "toeplitz, t(week)", g_toep,
             "nlme gls(weight ~ week, correlation = corARMA(form = ~week|id, p = 8), method = 'ML'): an AR(8) by its partial autocorrelations is any 9x9 Toeplitz correlation", 9)
g_un <- gls(weight ~ week, data = pig, correlation = corSymm(form = ~ week | id),
            weights = varIdent(form = ~ 1 | week), method = "ML")
pig_marginal("lmm_pig_unstructured_ml", "mixed weight week || id:, residuals(unstructured, t(week))",
             "unstructured, t(week)", g_un,
             "nlme gls(weight ~ week, correlation = corSymm(form = ~week|id), weights = varIdent(form = ~1|week), method = 'ML')", 45)
