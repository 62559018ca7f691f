## Reference fits for Stata's menl within-group error options
## (resvariance(), rescorrelation(), rescovariance()) with nlme::nlme.
## Run from the repository root:  Rscript tests/references/menl_residuals/make.R
##
## nlme fits by Lindstrom-Bates, as menl: PNLS alternating with the LME step of the linearized
## model; a variance function of the fitted values (varPower() etc., form ~fitted(.)) is held at
## the fitted values of the previous PNLS step in each LME step.  logLik() of the fit is the
## linearized model's at convergence and includes the variance weights' Jacobian (sum log w).
## Standard errors: fixed effects from vcov() (= (X'V^-1X)^-1 of the linearized model); variance
## parameters from the observed information of the linearized model (see linearize() below; nlme's
## apVar, a coarser numerical Hessian, differs from it by up to 3% here and by a factor 3 for
## varFixed).
## Parameter maps nlme -> Stata ([ME] menl, Options):
##   varPower(form = ~fitted(.))            -> resvariance(power _yhat, noconstant): delta = power
##   varConstPower(form = ~fitted(.))       -> resvariance(power _yhat): delta = power, _cons = const
##   varExp(form = ~time), varExp()         -> resvariance(exponential time | _yhat): gamma = expon
##   varFixed(~t)                           -> resvariance(linear t)
##   varIdent(form = ~1|phase)              -> resvariance(distinct, index(phase)): var(e) per level
##   corAR1(form = ~t|tree)                 -> rescorrelation(ar 1, t(t)): rho = Phi
##   corCompSymm(form = ~1|tree)            -> rescorrelation(exchangeable): rho = Rho
##   corCAR1(form = ~minutes|subject)       -> rescorrelation(ctar1, t(minutes)): rho = Phi
## sigma2 (Stata's scale sigma^2) = nlme sigma^2.

source("tests/references/common.R")
suppressPackageStartupMessages(library(nlme))

OUT <- file.path(REF_ROOT, "menl_residuals")
VERS <- pkg_version_string(c("nlme", "numDeriv", "jsonlite"))
Z <- qnorm(0.975)

## ---- data (derived columns written next to this script) ------------------------------
orange <- read_data("orange.csv")
orange <- orange[order(orange$tree, orange$age), ]
orange$t <- ave(orange$age, orange$tree, FUN = seq_along)            # occasion 1..7
write.csv(orange, file.path(OUT, "orange_menlres.csv"), row.names = FALSE)
theoph <- read_data("theoph.csv")
theoph <- theoph[order(theoph$subject, theoph$time), ]
theoph$phase <- ifelse(theoph$time < 3, 1L, 2L)                       # absorption / elimination
theoph$minutes <- 60 * theoph$time      # ctar1's rho per minute is inside (0, 1); per hour it is ~1e-8
theoph$heavy <- ifelse(theoph$wt > 70, 2L, 1L)                      # strata, constant within subject
theoph$occ <- ave(theoph$time, theoph$subject, FUN = seq_along)        # occasion 1..11
write.csv(theoph, file.path(OUT, "theoph_menlres.csv"), row.names = FALSE)

ctl <- nlmeControl(maxIter = 500, pnlsMaxIter = 50, msMaxIter = 500, tolerance = 1e-8,
                   pnlsTol = 1e-6, minScale = 1e-10)

ORANGE_STATA <- "menl circumf = ({b1}+{U1[tree]})/(1+exp(-(age-{b2})/{b3}))"
orange_fit <- function(...) {
  nlme(circumf ~ b1 / (1 + exp(-(age - b2) / b3)), data = orange, fixed = b1 + b2 + b3 ~ 1,
       random = pdDiag(b1 ~ 1), groups = ~tree, start = c(b1 = 192, b2 = 728, b3 = 353),
       method = "ML", control = ctl, ...)
}
THEOPH_STATA <- paste0("menl conc = dose*exp({lke})*{ka:}/({cl:}*({ka:}-exp({lke})))*",
                       "(exp(-exp({lke})*time)-exp(-{ka:}*time)), define(ka: exp({lka}+{U1[subject]})) ",
                       "define(cl: exp({lcl}+{U2[subject]})) covariance(U1 U2, independent)")
theoph_fit <- function(...) {
  nlme(conc ~ dose * exp(lke + lka - lcl) * (exp(-exp(lke) * time) - exp(-exp(lka) * time)) /
         (exp(lka) - exp(lke)), data = theoph, fixed = lke + lka + lcl ~ 1,
       random = pdDiag(lka + lcl ~ 1), groups = ~subject,
       start = c(lke = -2.45, lka = 0.47, lcl = -3.23), method = "ML", control = ctl, ...)
}

## ---- the linearized model at convergence -------------------------------------------------
## X = df/dphi at each observation's phi_i = beta + b_g(i) (central differences), Z = the columns of
## the parameters with random effects, w = y - f + X beta + Z b.  Its Gaussian log likelihood
## (common.R gls_loglik, beta profiled out) with V_j = Z_j D Z_j' + R_j(q) is evaluated at nlme's
## estimates (check: equals logLik(fit)), and the SEs of the variance parameters, in Stata's
## metric (variances of the random effects, then the residual parameters q), are from its
## numerical Hessian there (observed information).  For _yhat, v = fitted(fit) is held fixed.
linearize <- function(fit, m) {
  d <- m$data
  P <- as.matrix(coef(fit))[as.character(d[[m$group]]), m$params, drop = FALSE]
  f0 <- m$mean(P, d)
  X <- sapply(m$params, function(k) {
    h <- 1e-6 * pmax(1, abs(P[, k]))
    up <- P; dn <- P; up[, k] <- up[, k] + h; dn[, k] <- dn[, k] - h
    (m$mean(up, d) - m$mean(dn, d)) / (2 * h)
  })
  beta <- fixef(fit)[m$params]
  w <- d[[m$response]] - f0 + drop(X %*% beta) + rowSums(X[, m$re, drop = FALSE] * (P[, m$re, drop = FALSE] -
                                                                                   rep(beta[m$re], each = nrow(P))))
  list(X = X, Z = X[, m$re, drop = FALSE], w = w, rows = split(seq_len(nrow(d)), d[[m$group]]))
}

case <- function(id, fit, stata, dataset, origin, nlme_call, m, re_terms, q0, Rfun, extra_keys, notes) {
  lin <- linearize(fit, m)
  k <- length(m$re)
  D0 <- diag(as.numeric(VarCorr(fit)[m$re, "Variance"]), k)
  nat <- c(setNames(diag(D0), paste0("var_", m$re)), q0)
  Vfun <- function(par, j) {
    r <- lin$rows[[j]]
    Zj <- lin$Z[r, , drop = FALSE]
    Zj %*% diag(par[seq_len(k)], k) %*% t(Zj) + Rfun(par[-seq_len(k)], r)
  }
  y_list <- lapply(lin$rows, function(r) lin$w[r])
  X_list <- lapply(lin$rows, function(r) lin$X[r, , drop = FALSE])
  own <- gls_loglik(nat, y_list, X_list, Vfun, details = TRUE)
  se_at <- function(d) {
    H <- numDeriv::hessian(function(q) gls_loglik(q, y_list, X_list, Vfun), nat,
                           method.args = list(eps = 1e-4, d = d, r = 6))
    setNames(sqrt(diag(solve(-H))), names(nat))
  }
  se <- se_at(1e-2)     # relative steps: 1e-3 is too small for a correlation near 0 (noise)
  b <- fixef(fit)
  extra <- list(k = attr(logLik(fit), "df"), N = length(fitted(fit)),
                n_groups = setNames(list(length(lin$rows)), m$group))
  for (key in names(extra_keys)) {
    src <- extra_keys[[key]]
    pick <- function(v) if (is.list(src)) lapply(src, function(s) unname(v[s])) else unname(v[src])
    extra[[key]] <- pick(nat)
    extra[[paste0(key, "_se")]] <- pick(se)
  }
  cse <- matrix(NA_real_, k, k)
  diag(cse) <- se[seq_len(k)]
  has_sigma2 <- "sigma2" %in% names(nat)
  x <- list(
    id = id, class = "nlme", dataset = dataset, dataset_origin = origin, subset = NULL,
    stata = stata, lme4 = NULL,
    reference = paste0("nlme::nlme(", nlme_call, ", method = 'ML'); SEs of the variance parameters from ",
                       "the linearized model at convergence (", VERS, ")"),
    options = list(method = "ml", family = "gaussian", link = "identity", intpoints = NULL,
                   intmethod = NULL, residuals = NULL),
    results = list(
      loglik = as.numeric(logLik(fit)),
      fixed = list(names = I(names(b)), coef = I(unname(b)), se = I(unname(sqrt(diag(vcov(fit)))))),
      random = list(list(level = m$group, terms = I(re_terms), cov = D0, se = cse)),
      residual = list(var = if (has_sigma2) unname(nat["sigma2"]) else NULL,
                      se = if (has_sigma2) unname(se["sigma2"]) else NULL),
      extra = extra),
    tolerance = default_tolerance(),
    notes = notes,
    checks = list(nlme_iterations = fit$numIter,
                  own_linearized_loglik_minus_nlme = own$loglik - as.numeric(logLik(fit)),
                  own_gls_beta_max_rel_diff = max(abs(own$beta - b) / abs(b)),
                  own_fixed_se_max_rel_diff_vs_nlme = max(abs(own$se / sqrt(diag(vcov(fit))) - 1)),
                  gradient_at_nlme = I(unname(nat_grad(nat, y_list, X_list, Vfun))),
                  se_max_rel_change_with_step_5e_3 = max(abs(se_at(5e-3) / se - 1)),
                  natural = as.list(nat)))
  write_case(x, file.path(OUT, paste0(id, ".json")))
  cat(id, "loglik", x$results$loglik, "own - nlme", own$loglik - x$results$loglik, "\n")
}

sig2 <- function(fit) fit$sigma^2
vcoef <- function(fit, name) coef(fit$modelStruct$varStruct, unconstrained = FALSE)[[name]]
ccoef <- function(fit) coef(fit$modelStruct$corStruct, unconstrained = FALSE)[[1]]
lagmat <- function(t) abs(outer(t, t, "-"))
ORANGE_ORIGIN <- "R datasets::Orange sorted by tree and age, with t = occasion 1..7 within tree (tests/references/menl_residuals/orange_menlres.csv, written by make.R)"
THEOPH_ORIGIN <- "R datasets::Theoph sorted by subject and time, with phase = 1 if time < 3 else 2, minutes = 60 time, heavy = 2 if wt > 70 else 1 and occ = occasion 1..11 (tests/references/menl_residuals/theoph_menlres.csv, written by make.R)"
ORANGE_CALL <- "circumf ~ b1/(1+exp(-(age-b2)/b3)), fixed = b1+b2+b3 ~ 1, random = b1 ~ 1 | tree"
THEOPH_CALL <- "conc ~ SSfol-type explicit formula, fixed = lke+lka+lcl ~ 1, random = pdDiag(lka+lcl ~ 1) | subject"
ORANGE <- list(data = orange, response = "circumf", group = "tree", params = c("b1", "b2", "b3"), re = "b1",
               mean = function(P, d) P[, "b1"] / (1 + exp(-(d$age - P[, "b2"]) / P[, "b3"])))
THEOPH <- list(data = theoph, response = "conc", group = "subject", params = c("lke", "lka", "lcl"),
               re = c("lka", "lcl"),
               mean = function(P, d) d$dose * exp(P[, "lke"] + P[, "lka"] - P[, "lcl"]) *
                 (exp(-exp(P[, "lke"]) * d$time) - exp(-exp(P[, "lka"]) * d$time)) / (exp(P[, "lka"]) - exp(P[, "lke"])))
## residual covariance of rows r: sigma2 G C G with G = diag(g)
diag_R <- function(g2) function(q, r) diag(q[["sigma2"]] * g2(q, r), length(r))

## ---- variance functions -------------------------------------------------------------
f <- orange_fit(weights = varPower())
yh <- fitted(f)
case("menl_orange_power_yhat_noconstant_ml", f,
     paste0(ORANGE_STATA, ", resvariance(power _yhat, noconstant)"), "menl_residuals/orange_menlres.csv",
     ORANGE_ORIGIN, paste(ORANGE_CALL, ", weights = varPower()"), ORANGE, "U1",
     c(sigma2 = sig2(f), delta = vcoef(f, "power")),
     diag_R(function(q, r) abs(yh[r])^(2 * q[["delta"]])),
     list(power_delta = "delta"), "Var(e) = sigma2 |yhat|^(2 delta)")

f <- theoph_fit(weights = varConstPower(const = 0.5, power = 0.5))
yt <- fitted(f)
case("menl_theoph_power_yhat_ml", f,
     paste(THEOPH_STATA, "resvariance(power _yhat)"), "menl_residuals/theoph_menlres.csv",
     THEOPH_ORIGIN, paste(THEOPH_CALL, ", weights = varConstPower(const = 0.5, power = 0.5)"), THEOPH, c("U1", "U2"),
     c(sigma2 = sig2(f), delta = vcoef(f, "power"), cons = vcoef(f, "const")),
     diag_R(function(q, r) (abs(yt[r])^q[["delta"]] + q[["cons"]])^2),
     list(power_delta = "delta", power_cons = "cons"), "Var(e) = sigma2 (|yhat|^delta + _cons)^2")

f <- orange_fit(weights = varPower(form = ~age))
case("menl_orange_power_age_ml", f,
     paste0(ORANGE_STATA, ", resvariance(power age, noconstant)"), "menl_residuals/orange_menlres.csv",
     ORANGE_ORIGIN, paste(ORANGE_CALL, ", weights = varPower(form = ~age)"), ORANGE, "U1",
     c(sigma2 = sig2(f), delta = vcoef(f, "power")),
     diag_R(function(q, r) orange$age[r]^(2 * q[["delta"]])),
     list(power_delta = "delta"), "Var(e) = sigma2 age^(2 delta)")

f <- theoph_fit(weights = varExp(form = ~time))
case("menl_theoph_exponential_time_ml", f,
     paste(THEOPH_STATA, "resvariance(exponential time)"), "menl_residuals/theoph_menlres.csv",
     THEOPH_ORIGIN, paste(THEOPH_CALL, ", weights = varExp(form = ~time)"), THEOPH, c("U1", "U2"),
     c(sigma2 = sig2(f), gamma = vcoef(f, "expon")),
     diag_R(function(q, r) exp(2 * q[["gamma"]] * theoph$time[r])),
     list(varexp_gamma = "gamma"), "Var(e) = sigma2 exp(2 gamma time)")

f <- orange_fit(weights = varExp())
ye <- fitted(f)
case("menl_orange_exponential_yhat_ml", f,
     paste0(ORANGE_STATA, ", resvariance(exponential _yhat)"), "menl_residuals/orange_menlres.csv",
     ORANGE_ORIGIN, paste(ORANGE_CALL, ", weights = varExp()"), ORANGE, "U1",
     c(sigma2 = sig2(f), gamma = vcoef(f, "expon")),
     diag_R(function(q, r) exp(2 * q[["gamma"]] * ye[r])),
     list(varexp_gamma = "gamma"), "Var(e) = sigma2 exp(2 gamma yhat)")

f <- theoph_fit(weights = varExp(form = ~time | heavy))
case("menl_theoph_exponential_time_strata_ml", f,
     paste(THEOPH_STATA, "resvariance(exponential time, strata(heavy))"), "menl_residuals/theoph_menlres.csv",
     THEOPH_ORIGIN, paste(THEOPH_CALL, ", weights = varExp(form = ~time|heavy)"), THEOPH, c("U1", "U2"),
     c(sigma2 = sig2(f), gamma1 = vcoef(f, "1"), gamma2 = vcoef(f, "2")),
     diag_R(function(q, r) exp(2 * ifelse(theoph$heavy[r] == 1, q[["gamma1"]], q[["gamma2"]]) * theoph$time[r])),
     list(varexp_gamma_by = list(`heavy=1` = "gamma1", `heavy=2` = "gamma2")),
     "Var(e) = sigma2 exp(2 gamma_s time) with gamma_s for stratum s of heavy (sigma2 common)")

## (with varFixed(~age) nlme stops at var(U1) ~ 0 and log likelihood -150.23 for every start of the
## random-effects variance, while menl's Lindstrom-Bates reaches -131.80: not used as a reference)
f <- orange_fit(weights = varFixed(~t))
case("menl_orange_linear_t_ml", f,
     paste0(ORANGE_STATA, ", resvariance(linear t)"), "menl_residuals/orange_menlres.csv",
     ORANGE_ORIGIN, paste(ORANGE_CALL, ", weights = varFixed(~t)"), ORANGE, "U1",
     c(sigma2 = sig2(f)), diag_R(function(q, r) orange$t[r]), list(), "Var(e) = sigma2 t")

f <- theoph_fit(weights = varIdent(form = ~1 | phase))
case("menl_theoph_distinct_phase_ml", f,
     paste(THEOPH_STATA, "resvariance(distinct, index(phase))"), "menl_residuals/theoph_menlres.csv",
     THEOPH_ORIGIN, paste(THEOPH_CALL, ", weights = varIdent(form = ~1|phase)"), THEOPH, c("U1", "U2"),
     c(v1 = sig2(f), v2 = sig2(f) * vcoef(f, "2")^2),
     function(q, r) diag(ifelse(theoph$phase[r] == 1, q[["v1"]], q[["v2"]]), length(r)),
     list(residual_var_by = list(`phase=1` = "v1", `phase=2` = "v2")),
     "Var(e) = sigma_l^2 for phase l; results.residual.var is null, Stata's var(e) per level in extra.residual_var_by")

## ---- correlation structures -----------------------------------------------------------
f <- orange_fit(correlation = corAR1(form = ~t | tree))
case("menl_orange_ar1_ml", f,
     paste0(ORANGE_STATA, ", rescorrelation(ar 1, t(t))"), "menl_residuals/orange_menlres.csv",
     ORANGE_ORIGIN, paste(ORANGE_CALL, ", correlation = corAR1(form = ~t|tree)"), ORANGE, "U1",
     c(sigma2 = sig2(f), rho = ccoef(f)),
     function(q, r) q[["sigma2"]] * q[["rho"]]^lagmat(orange$t[r]),
     list(ar1_rho = "rho"), "corr(e_s, e_t) = rho^|s-t|; residual var = var(e) = sigma2")

## (on Orange nlme's Rho is at its bound -1/(7-1): not used)
f <- theoph_fit(correlation = corCompSymm(form = ~1 | subject))
case("menl_theoph_exchangeable_ml", f,
     paste(THEOPH_STATA, "rescorrelation(exchangeable)"), "menl_residuals/theoph_menlres.csv",
     THEOPH_ORIGIN, paste(THEOPH_CALL, ", correlation = corCompSymm(form = ~1|subject)"), THEOPH, c("U1", "U2"),
     c(sigma2 = sig2(f), cov = sig2(f) * ccoef(f)),
     function(q, r) diag(q[["sigma2"]] - q[["cov"]], length(r)) + q[["cov"]],
     list(residual_cov = "cov"), "common correlation rho; extra.residual_cov = sigma2 rho (Stata's cov(e))")

f <- theoph_fit(correlation = corCAR1(0.7, form = ~minutes | subject))
case("menl_theoph_ctar1_ml", f,
     paste(THEOPH_STATA, "rescorrelation(ctar1, t(minutes))"), "menl_residuals/theoph_menlres.csv",
     THEOPH_ORIGIN, paste(THEOPH_CALL, ", correlation = corCAR1(0.7, form = ~minutes|subject)"), THEOPH, c("U1", "U2"),
     c(sigma2 = sig2(f), rho = ccoef(f)),
     function(q, r) q[["sigma2"]] * q[["rho"]]^lagmat(theoph$minutes[r]),
     list(exp_rho = "rho"),
     paste("corr(e_s, e_t) = rho^|minutes_s - minutes_t| (real-valued time, minutes = 60 time; in hours rho is",
           "~1e-8 and nlme needs the start 0.7 per minute to leave the flat region of rho^15 ~ 0)"))

## ---- both ------------------------------------------------------------------------------
## (nlme fails on Theoph with varConstPower() + corCAR1(): "NA/NaN/Inf in coef<-.corCAR1")
f <- orange_fit(weights = varPower(), correlation = corAR1(form = ~t | tree))
yh <- fitted(f)
case("menl_orange_power_yhat_ar1_ml", f,
     paste0(ORANGE_STATA, ", resvariance(power _yhat, noconstant) rescorrelation(ar 1, t(t))"),
     "menl_residuals/orange_menlres.csv", ORANGE_ORIGIN,
     paste(ORANGE_CALL, ", weights = varPower(), correlation = corAR1(form = ~t|tree)"), ORANGE, "U1",
     c(sigma2 = sig2(f), delta = vcoef(f, "power"), rho = ccoef(f)),
     function(q, r) {
       g <- abs(yh[r])^q[["delta"]]
       q[["sigma2"]] * outer(g, g) * q[["rho"]]^lagmat(orange$t[r])
     },
     list(power_delta = "delta", ar1_rho = "rho"),
     "Var(e) = sigma2 |yhat|^(2 delta) with corr(e_s, e_t) = rho^|s-t|")

f <- theoph_fit(weights = varIdent(form = ~1 | phase), correlation = corAR1(form = ~occ | subject))
case("menl_theoph_distinct_ar1_ml", f,
     paste(THEOPH_STATA, "resvariance(distinct, index(phase)) rescorrelation(ar 1, t(occ))"),
     "menl_residuals/theoph_menlres.csv", THEOPH_ORIGIN,
     paste(THEOPH_CALL, ", weights = varIdent(form = ~1|phase), correlation = corAR1(form = ~occ|subject)"),
     THEOPH, c("U1", "U2"),
     c(v1 = sig2(f), v2 = sig2(f) * vcoef(f, "2")^2, rho = ccoef(f)),
     function(q, r) {
       s <- sqrt(ifelse(theoph$phase[r] == 1, q[["v1"]], q[["v2"]]))
       outer(s, s) * q[["rho"]]^lagmat(theoph$occ[r])
     },
     list(residual_var_by = list(`phase=1` = "v1", `phase=2` = "v2"), ar1_rho = "rho"),
     "Var(e) = sigma_l^2 for phase l with corr(e_s, e_t) = rho^|occ_s - occ_t|")

## ---- marginal models: no random effects, errors correlated within group() ------------------
## nlme::gnls stops short of the optimum here (nlsTol must be loosened to 1e-3 for it to run at
## all), so its estimates start a direct maximisation of the exact Gaussian log likelihood
## y_j ~ N(f_j(beta), R_j(q)) (nlminb, then BFGS); SEs as above from the linearized model at the
## optimum (fixed effects: (X'V^-1X)^-1 with X = df/dbeta).  The variance covariates do not depend
## on beta here (no _yhat), so the exact maximum likelihood estimator is the Lindstrom-Bates one.
marginal_case <- function(id, fit, stata, nlme_call, m, q0, Rfun, extra_keys, notes) {
  d <- m$data
  rows <- split(seq_len(nrow(d)), d[[m$group]])
  p <- length(m$params)
  fmean <- function(b) m$mean(matrix(b, nrow(d), p, byrow = TRUE, dimnames = list(NULL, m$params)), d)
  exact <- function(par) {
    b <- par[seq_len(p)]; q <- setNames(par[-seq_len(p)], names(q0))
    e <- d[[m$response]] - fmean(b)
    tot <- 0
    for (r in rows) {
      R <- tryCatch(chol(Rfun(q, r)), error = function(err) NULL)
      if (is.null(R)) return(-1e100)
      z <- backsolve(R, e[r], transpose = TRUE)
      tot <- tot - 0.5 * (length(r) * log(2 * pi) + 2 * sum(log(diag(R))) + sum(z^2))
    }
    tot
  }
  ## unconstrained and scaled: beta / |beta_gnls|, log sigma2, atanh rho, the rest as they are
  b0 <- abs(coef(fit))
  fw <- list(sigma2 = log, rho = atanh); bw <- list(sigma2 = exp, rho = tanh)
  to_par <- function(u) c(u[seq_len(p)] * b0, sapply(names(q0), function(k)
    (if (is.null(bw[[k]])) identity else bw[[k]])(u[[p + match(k, names(q0))]])))
  u0 <- c(coef(fit) / b0, sapply(names(q0), function(k) (if (is.null(fw[[k]])) identity else fw[[k]])(q0[[k]])))
  o <- nlminb(u0, function(u) -exact(to_par(u)), control = list(eval.max = 5000, iter.max = 3000, rel.tol = 1e-14))
  o2 <- optim(o$par, function(u) -exact(to_par(u)), method = "BFGS", control = list(reltol = 1e-15, maxit = 2000))
  best <- unname(to_par(if (o2$value < o$objective) o2$par else o$par))
  b <- setNames(best[seq_len(p)], m$params); q <- setNames(best[-seq_len(p)], names(q0))
  X <- sapply(seq_len(p), function(k) {
    h <- 1e-6 * max(1, abs(b[k])); up <- b; dn <- b; up[k] <- up[k] + h; dn[k] <- dn[k] - h
    (fmean(up) - fmean(dn)) / (2 * h)
  })
  w <- d[[m$response]] - fmean(b) + drop(X %*% b)
  y_list <- lapply(rows, function(r) w[r]); X_list <- lapply(rows, function(r) X[r, , drop = FALSE])
  Vfun <- function(par, j) Rfun(setNames(par, names(q0)), rows[[j]])
  own <- gls_loglik(q, y_list, X_list, Vfun, details = TRUE)
  H <- numDeriv::hessian(function(x) gls_loglik(x, y_list, X_list, Vfun), q,
                         method.args = list(eps = 1e-4, d = 1e-2, r = 6))
  se <- setNames(sqrt(diag(solve(-H))), names(q0))
  extra <- list(k = length(best), N = nrow(d))
  for (key in names(extra_keys)) {
    extra[[key]] <- unname(q[extra_keys[[key]]]); extra[[paste0(key, "_se")]] <- unname(se[extra_keys[[key]]])
  }
  x <- list(
    id = id, class = "nlme", dataset = "menl_residuals/orange_menlres.csv", dataset_origin = ORANGE_ORIGIN,
    subset = NULL, stata = stata, lme4 = NULL,
    reference = paste0("nlme::gnls(", nlme_call, ") as the start of a direct ML maximisation; SEs from the ",
                       "linearized model at the optimum (", VERS, ")"),
    options = list(method = "ml", family = "gaussian", link = "identity", intpoints = NULL,
                   intmethod = NULL, residuals = NULL),
    results = list(loglik = exact(best),
                   fixed = list(names = I(m$params), coef = I(unname(b)), se = I(own$se)),
                   random = list(),
                   residual = list(var = unname(q[["sigma2"]]), se = unname(se[["sigma2"]])),
                   extra = extra),
    tolerance = default_tolerance(), notes = notes,
    checks = list(gnls_loglik = as.numeric(logLik(fit)), gain_over_gnls = exact(best) - as.numeric(logLik(fit)),
                  linearized_minus_exact_loglik = own$loglik - exact(best),
                  gls_beta_max_rel_diff = max(abs(own$beta - b) / abs(b)),
                  gradient = I(numDeriv::grad(exact, best))))
  write_case(x, file.path(OUT, paste0(id, ".json")))
  cat(id, "loglik", x$results$loglik, "gnls", as.numeric(logLik(fit)), "\n")
}

gctl <- gnlsControl(minScale = 1e-10, nlsTol = 1e-3, tolerance = 1e-10, maxIter = 1000)
MARGINAL_STATA <- "menl circumf = {b1}/(1+exp(-(age-{b2})/{b3}))"
N_OR <- nrow(orange)
f <- gnls(circumf ~ b1 / (1 + exp(-(age - b2) / b3)), data = orange, start = c(b1 = 192, b2 = 728, b3 = 353),
          correlation = corCompSymm(form = ~1 | tree), control = gctl)
s2 <- f$sigma^2 * (N_OR - 3) / N_OR                  # gnls reports sigma^2 with N - p
marginal_case("menl_orange_marginal_exchangeable_ml", f,
              paste0(MARGINAL_STATA, ", rescovariance(exchangeable, group(tree))"),
              "circumf ~ b1/(1+exp(-(age-b2)/b3)), correlation = corCompSymm(form = ~1|tree)", ORANGE,
              c(sigma2 = s2, cov = s2 * ccoef(f)),
              function(q, r) diag(q[["sigma2"]] - q[["cov"]], length(r)) + q[["cov"]],
              list(residual_cov = "cov"),
              "Stata's example of a nonlinear marginal model ([ME] menl); extra.residual_cov = Stata's cov(e)")
f <- gnls(circumf ~ b1 / (1 + exp(-(age - b2) / b3)), data = orange, start = c(b1 = 192, b2 = 728, b3 = 353),
          correlation = corAR1(form = ~t | tree), weights = varPower(form = ~age), control = gctl)
s2 <- f$sigma^2 * (N_OR - 3) / N_OR
marginal_case("menl_orange_marginal_power_age_ar1_ml", f,
              paste0(MARGINAL_STATA, ", resvariance(power age, noconstant) rescorrelation(ar 1, t(t) group(tree))"),
              "circumf ~ b1/(1+exp(-(age-b2)/b3)), correlation = corAR1(form = ~t|tree), weights = varPower(form = ~age)",
              ORANGE, c(sigma2 = s2, delta = vcoef(f, "power"), rho = ccoef(f)),
              function(q, r) {
                g <- orange$age[r]^q[["delta"]]
                q[["sigma2"]] * outer(g, g) * q[["rho"]]^lagmat(orange$t[r])
              },
              list(power_delta = "delta", ar1_rho = "rho"),
              "Var(e) = sigma2 age^(2 delta), corr rho^|s-t| within tree; no random effects")

## ---- correlations alone: rescorrelation(unstructured, index()), a marginal linear model -------
## = nlme::gls(distance ~ age, correlation = corSymm(form = ~occ|subject), method = "ML") on Orthodont.
## Fixed-effect SEs: gls's vcov() scales sigma^2 by N/(N - p); Stata's ML SEs are sqrt((N - p)/N)
## times those (the GLS (X'V^-1X)^-1 at the ML sigma^2, as gls_loglik's).  SEs of sigma2 and the
## correlations from the numerical Hessian of the ML log likelihood profiled over beta.
orth <- read_data("orthodont.csv")
orth <- orth[order(orth$subject, orth$occ), ]
g <- gls(distance ~ age, data = orth, correlation = corSymm(form = ~occ | subject), method = "ML",
         control = glsControl(tolerance = 1e-10, msTol = 1e-10))
rows <- split(seq_len(nrow(orth)), orth$subject)
y_list <- lapply(rows, function(r) orth$distance[r])
X_list <- lapply(rows, function(r) cbind(1, orth$age[r]))
pairs <- c("1,2", "1,3", "1,4", "2,3", "2,4", "3,4")
corr_mat <- function(rho) { C <- diag(4); C[lower.tri(C)] <- rho; C[upper.tri(C)] <- t(C)[upper.tri(C)]; C }
Vfun <- function(par, j) par[1] * corr_mat(par[-1])[orth$occ[rows[[j]]], orth$occ[rows[[j]]]]
nat <- c(g$sigma^2, coef(g$modelStruct$corStruct, unconstrained = FALSE))
own <- gls_loglik(nat, y_list, X_list, Vfun, details = TRUE)
H <- numDeriv::hessian(function(x) gls_loglik(x, y_list, X_list, Vfun), nat, method.args = list(eps = 1e-4, d = 1e-2, r = 6))
se <- sqrt(diag(solve(-H)))
N <- nrow(orth)
params <- setNames(as.list(nat[-1]), paste0("corr(e", sub(",", ",e", pairs), ")"))
params_se <- setNames(as.list(se[-1]), names(params))
x <- list(
  id = "menl_orthodont_marginal_unstructured_corr_ml", class = "nlme", dataset = "../data/orthodont.csv",
  dataset_origin = "R nlme::Orthodont (tests/data/orthodont.csv): occ = age/2 - 3 (1..4), subject 1..27",
  subset = NULL,
  stata = "menl distance = {b0} + {b1}*age, rescorrelation(unstructured, index(occ) group(subject))", lme4 = NULL,
  reference = paste0("nlme::gls(distance ~ age, correlation = corSymm(form = ~occ|subject), method = 'ML') (", VERS, ")"),
  options = list(method = "ml", family = "gaussian", link = "identity", intpoints = NULL, intmethod = NULL,
                 residuals = NULL),
  results = list(loglik = as.numeric(logLik(g)),
                 fixed = list(names = I(c("b0", "b1")), coef = I(unname(coef(g))),
                              se = I(unname(sqrt(diag(vcov(g))) * sqrt((N - 2) / N)))),
                 random = list(),
                 residual = list(var = g$sigma^2, se = se[1]),
                 extra = list(k = 9, N = N, residual_parameters = params, residual_parameters_se = params_se)),
  tolerance = default_tolerance(),
  notes = "a linear mean without random effects: menl's Lindstrom-Bates is GLS; correlations in extra.residual_parameters",
  checks = list(own_loglik_minus_gls = own$loglik - as.numeric(logLik(g)),
                own_se_over_scaled_gls_se = I(own$se / (sqrt(diag(vcov(g))) * sqrt((N - 2) / N)))))
write_case(x, file.path(OUT, paste0(x$id, ".json")))
cat(x$id, "loglik", x$results$loglik, "\n")
