## Sweep of plausible user models (LMM, GLMM, ordinal, survival frailty) against
## established R fits, one JSON per model in the conformance-case format
## (tests/conformance/cases/SCHEMA.md).  Run from the repository root:
##   Rscript tests/references/sweep/make.R
## Estimates come from lme4 / nlme / glmmTMB / ordinal; standard errors of every
## reported parameter from the observed information, i.e. a numerical Hessian
## (numDeriv, Richardson) of the package's own (Laplace / quadrature / restricted)
## log likelihood in Stata's natural parameters (variances, covariances, the
## ancillary parameter in Stata's metric).  Where a package cannot give Stata's
## likelihood (mode-curvature quadrature with non-canonical links or ancillary
## parameters, survival frailty models) the likelihood is integrated by our own
## R code below (scalar adaptive Gauss-Hermite, Liu & Pierce 1994), checked
## against the package where the package can fit the model.

source("tests/references/common.R")
suppressPackageStartupMessages({
  library(lme4); library(nlme); library(glmmTMB); library(ordinal); library(survival)
})
OUT <- file.path(REF_ROOT, "sweep")
VERSIONS <- pkg_version_string(c("lme4", "nlme", "glmmTMB", "ordinal", "survival", "numDeriv"))

## ---------------------------------------------------------------- helpers ----
## numDeriv's default steps (d = 0.1, r = 4): the Laplace and quadrature objectives solve an inner
## problem per evaluation, whose tolerance-level noise ruins the second differences of small steps
hess <- function(f, x) numDeriv::hessian(f, x)

## Stata name of an R coefficient: (Intercept) -> _cons, factor(x)2 -> 2.x,
## factor(a)1:factor(b)1 -> 1.a#1.b, factor(a)1:x -> 1.a#c.x, x:factor(a)1 -> c.x#1.a
stata_coef_name <- function(nm) {
  if (nm == "(Intercept)") return("_cons")
  parts <- strsplit(nm, ":", fixed = TRUE)[[1]]
  inter <- length(parts) > 1
  one <- function(p) {
    m <- regmatches(p, regexec("^(?:factor|relevel)\\((\\w+)(?:, ?ref ?= ?\\d+)?\\)(.+)$", p, perl = TRUE))[[1]]
    if (length(m)) return(paste0(m[3], ".", m[2]))
    if (inter) paste0("c.", p) else p
  }
  paste(vapply(parts, one, ""), collapse = "#")
}
cons_last <- function(names) c(setdiff(names, "_cons"), intersect("_cons", names))
fixed_out <- function(nms, b, se, ord, rename = NULL) {
  nms <- ifelse(nms %in% names(rename), unlist(rename)[nms], nms)
  list(names = I(unname(nms[ord])), coef = I(unname(b[ord])), se = I(unname(se[ord])))
}

wald <- function(b, V, names) {
  keep <- names != "_cons"
  if (!any(keep)) return(list(chi2 = NULL, df = 0L))
  list(chi2 = drop(t(b[keep]) %*% solve(V[keep, keep, drop = FALSE], b[keep])), df = sum(keep))
}

info_extra <- function(ll, k, N, ngroups) {
  list(AIC = -2 * ll + 2 * k, BIC = -2 * ll + k * log(N), k = k, N = N, n_groups = ngroups)
}

## one random-effects equation; cov/se are q x q on the variance scale, NA -> null
re_eq <- function(level, terms, cov, se = NULL) {
  e <- list(level = level, terms = I(terms), cov = cov)
  if (!is.null(se)) e$se <- se
  e
}

write_sweep <- function(id, class, dataset, stata, lme4f, reference, options, results, notes,
                        checks = list(), tolerance = default_tolerance()) {
  x <- list(id = id, class = class, dataset = dataset, dataset_origin = dataset_origin[[dataset]],
            subset = NULL, stata = stata, lme4 = lme4f, reference = paste0(reference, " (", VERSIONS, ")"),
            options = options, results = results, tolerance = tolerance, notes = notes, checks = checks)
  write_case(x, file.path(OUT, paste0(id, ".json")))
  cat(sprintf("%-48s loglik %.6f\n", id, results$loglik))
}

dataset_origin <- list(
  "sleepstudy.csv" = "R lme4::sleepstudy", "pig.csv" = "Stata pig.dta (Diggle et al.)",
  "oats.csv" = "R nlme::Oats", "orthodont.csv" = "R nlme::Orthodont", "penicillin.csv" = "R lme4::Penicillin",
  "pastes.csv" = "R lme4::Pastes", "bangladesh.csv" = "Stata bangladesh.dta (mlmRev::Contraception)",
  "epilepsy.csv" = "R MASS::epil (Thall & Vail)", "grouseticks.csv" = "R lme4::grouseticks",
  "wine.csv" = "R ordinal::wine", "cbpp.csv" = "R lme4::cbpp", "gamma_sim.csv" = "simulated (see case glmm_gamma_sim_ri_laplace)",
  "surv_weibull_sim7.csv" = "simulated Weibull frailty data (see case surv_weibull_sim7_ph)",
  "ovary.csv" = "R nlme::Ovary")

opts <- function(method = "ml", family = "gaussian", link = "identity", intpoints = NULL,
                 intmethod = NULL, residuals = NULL, ...) {
  c(list(method = method, family = family, link = link, intpoints = intpoints, intmethod = intmethod,
         residuals = residuals), list(...))
}

## ------------------------------------------------------------ LMM (lme4) ----
## Random-effects equations of an lmer fit in Stata's layout.  relabel maps an
## lme4 grouping name to c(level, term) for crossed R.x terms; "a:b" nesting is
## reported at its innermost factor (Stata's || a: || b:).
lmer_random <- function(m, info_vcov, relabel = list()) {
  vc <- lmer_var_components(m)
  se_all <- sqrt(pmax(diag(info_vcov), 0))
  groups <- list()
  for (i in seq_along(vc$labels)) {
    lab <- vc$labels[i]
    if (lab == "residual") next
    m2 <- regmatches(lab, regexec("^(.*):([^:,]+),([^:,]+)$", lab))[[1]]
    grp <- sub("\\.[0-9]+$", "", m2[2]); a <- m2[3]; b <- m2[4]
    lvl <- sub(":.*$", "", grp)
    ta <- if (a == "(Intercept)") "_cons" else a
    tb <- if (b == "(Intercept)") "_cons" else b
    if (!is.null(relabel[[lvl]])) { ta <- tb <- relabel[[lvl]][2]; lvl <- relabel[[lvl]][1] }
    key <- if (lvl == "_all") paste0(lvl, ta) else lvl
    g <- groups[[key]] %||% list(level = lvl, entries = list())
    g$entries[[length(g$entries) + 1]] <- list(a = ta, b = tb, v = vc$values[i], se = se_all[i])
    groups[[key]] <- g
  }
  lapply(groups, function(g) {
    terms <- unique(unlist(lapply(g$entries, function(e) c(e$a, e$b))))
    terms <- c(setdiff(terms, "_cons"), intersect("_cons", terms))
    q <- length(terms)
    cv <- matrix(0, q, q); se <- matrix(NA, q, q)
    for (e in g$entries) {
      i <- match(e$a, terms); j <- match(e$b, terms)
      cv[i, j] <- cv[j, i] <- e$v; se[i, j] <- se[j, i] <- e$se
    }
    re_eq(g$level, terms, cv, se)
  })
}
`%||%` <- function(a, b) if (is.null(a)) b else a

best_lmer <- function(formula, data, REML) {
  fits <- lapply(c("bobyqa", "Nelder_Mead", "nloptwrap"), function(o)
    tryCatch(lmer(formula, data = data, REML = REML,
                  control = lmerControl(optimizer = o, calc.derivs = FALSE,
                                        optCtrl = if (o == "nloptwrap") list(xtol_rel = 1e-12, ftol_rel = 1e-14)
                                                  else list(maxfun = 1e5))),
             error = function(e) NULL))
  fits <- Filter(Negate(is.null), fits)
  fits[[which.max(sapply(fits, logLik))]]
}

## REML log likelihood of the linear model (lme4's convention: common.R gls_loglik)
lm_reml_loglik <- function(y, X) {
  f <- function(ls2) gls_loglik(exp(ls2), list(y), list(X), function(p, j) diag(p, length(y)), reml = TRUE)
  optimize(f, c(-20, 20), maximum = TRUE, tol = 1e-12)$objective
}

lmm_lmer_case <- function(id, dataset, stata, formula, reml, relabel = list(), notes = "", data = NULL, rename = NULL,
                          class = "lmm", family_opts = opts(if (reml) "reml" else "ml")) {
  d <- data %||% read_data(dataset)
  m <- best_lmer(as.formula(formula), d, REML = reml)
  dn <- lmm_dense(m, reml = reml)
  V <- solve(dn$OIM)
  ll <- as.numeric(logLik(m))
  X <- getME(m, "X"); y <- getME(m, "y")
  b <- fixef(m); Vb <- as.matrix(vcov(m))
  nms <- vapply(names(b), stata_coef_name, "")
  ord <- match(cons_last(nms), nms)
  w <- wald(b, Vb, nms)
  nvar <- length(dn$comps$values)
  ll0 <- if (reml) lm_reml_loglik(y, X) else ols_loglik_ml(y, X)
  ngr <- lapply(getME(m, "flist"), function(f) nlevels(f))
  ex <- c(info_extra(ll, length(b) + nvar, nrow(X), ngr),
          list(wald_chi2 = w$chi2, wald_df = w$df, lr_chi2 = 2 * (ll - ll0), lr_df = nvar - 1))
  results <- list(loglik = ll,
                  fixed = fixed_out(nms, b, sqrt(diag(Vb)), ord, rename),
                  random = unname(lmer_random(m, V, relabel)),
                  residual = list(var = sigma(m)^2, se = sqrt(V[nvar, nvar])),
                  extra = ex)
  write_sweep(id, class, dataset, stata, formula,
              sprintf("lme4 lmer(%s, REML=%s), best of bobyqa/Nelder_Mead/nloptwrap; SEs of variance components from the observed information of the %s likelihood (common.R lmm_dense)",
                      formula, reml, if (reml) "restricted" else ""),
              family_opts, results,
              paste("Variance components are variances (Stata's default display); independent covariances are constraints at 0 (no se).",
                    "lr_chi2 is against the linear regression (same ML/REML criterion).", notes),
              list(max_abs_score = max(abs(dn$score))))
}

## -------------------------------------------- LMM by direct maximisation ----
## V_j = Z_j G(par) Z_j' + R_j(par); used for nlme models (random-effects
## covariance structures, residual structures): the nlme fit gives the estimates,
## the direct likelihood confirms them and gives the observed-information SEs.
lmm_direct_case <- function(id, dataset, stata, nlme_fit, d, group, Zcols, Gfun, Rfun, nat0,
                            to_nat, from_nat, reml, random_out, residual_out, extra_out, notes, reference,
                            resid_opt = NULL) {
  X <- model.matrix(formula(nlme_fit), d)
  y_list <- split_by(d[[as.character(formula(nlme_fit)[[2]])]], d[[group]])
  X_list <- split_rows(X, d[[group]])
  Z_list <- split_rows(cbind(as.matrix(d[, Zcols, drop = FALSE])), d[[group]])
  idx_list <- split_by(seq_len(nrow(d)), d[[group]])
  Vfun <- function(par, j) {
    Z <- Z_list[[j]]
    Z %*% Gfun(par) %*% t(Z) + Rfun(par, idx_list[[j]])
  }
  llnl <- as.numeric(logLik(nlme_fit))
  fit <- maximise_gls(nat0, to_nat, from_nat, y_list, X_list, Vfun, reml = reml)
  nat <- fit$nat
  det <- gls_loglik(nat, y_list, X_list, Vfun, reml = reml, details = TRUE)
  ## numDeriv's default steps: common.R's nat_vcov steps relative to the parameter are too small
  ## for a covariance near 0 (pig exchangeable: cov -0.045 gave an SE 10% off)
  V <- solve(-hess(function(p) gls_loglik(p, y_list, X_list, Vfun, reml), nat))
  se <- sqrt(pmax(diag(V), 0))
  b <- det$beta; names(b) <- colnames(X)
  nms <- vapply(colnames(X), stata_coef_name, "")
  ord <- match(cons_last(nms), nms)
  w <- wald(b, det$vcov, nms)
  ll0 <- if (reml) lm_reml_loglik(unlist(y_list), do.call(rbind, X_list)) else
    ols_loglik_ml(unlist(y_list), do.call(rbind, X_list))
  ll <- det$loglik
  ex <- c(info_extra(ll, length(b) + length(nat), det$N, setNames(list(length(y_list)), group)),
          list(wald_chi2 = w$chi2, wald_df = w$df, lr_chi2 = 2 * (ll - ll0), lr_df = length(nat) - 1),
          extra_out(nat, se))
  results <- list(loglik = ll,
                  fixed = fixed_out(nms, b, det$se, ord),
                  random = random_out(nat, se), residual = residual_out(nat, se), extra = ex)
  write_sweep(id, "lmm", dataset, stata, NULL, reference,
              opts(if (reml) "reml" else "ml", residuals = resid_opt), results,
              paste("Variances (not SDs). Estimates: the direct (restricted) likelihood of common.R (gls_loglik) maximised from nlme's fit; SEs from its numerical Hessian in these parameters (observed information).",
                    "lr_chi2 is against the linear regression.", notes),
              list(nlme_loglik = llnl, direct_loglik = ll, direct_minus_nlme = ll - llnl,
                   grad_max = max(abs(nat_grad(nat, y_list, X_list, Vfun, reml)))))
}

## ---------------------------------------------------- GLMM via glmmTMB -------
## Natural parameters: beta (glmmTMB order), then per RE term the variances (and
## for 2x2 "us" the covariance), then the ancillary in Stata's metric.  TMB's
## outer objective obj$fn(par) is the negative Laplace log likelihood.
tmb_par_from_nat <- function(m, nat, layout, anc_to_betad) {
  p <- length(fixef(m)$cond)
  par <- m$fit$par
  nb <- names(par)
  par[nb == "beta"] <- nat[1:p]
  th <- numeric(0); pos <- p
  for (t in layout) {
    if (t$type == "us") {
      v <- nat[pos + 1:2]; cv <- nat[pos + 3]; pos <- pos + 3
      r <- cv / sqrt(v[1] * v[2])
      th <- c(th, 0.5 * log(v), r / sqrt(1 - r^2))
    } else {
      v <- nat[pos + seq_len(t$q)]; pos <- pos + t$q
      th <- c(th, 0.5 * log(v))
    }
  }
  par[nb == "theta"] <- th
  if (!is.null(anc_to_betad)) par[nb == "betad"] <- anc_to_betad(nat[pos + 1])
  par
}

tmb_nat <- function(m, layout, betad_to_anc) {
  b <- fixef(m)$cond
  vc <- VarCorr(m)$cond
  nat <- unname(b)
  for (k in seq_along(layout)) {
    S <- vc[[k]]
    nat <- c(nat, if (layout[[k]]$type == "us") c(S[1, 1], S[2, 2], S[1, 2]) else diag(S))
  }
  if (!is.null(betad_to_anc)) nat <- c(nat, betad_to_anc(unname(fixef(m)$disp)))
  nat
}

## glmmTMB fit and its Hessian; layout: per RE term list(type="us"|"diag", q,
## level, terms (Stata order of the term's columns as in glmmTMB), stata_terms)
glmm_tmb_case <- function(id, dataset, stata, formula, family, layout, anc = NULL, stata_family,
                          link, notes = "", data = NULL, fixed_only = NULL, lme4_check = NULL,
                          extra_opts = list()) {
  d <- data %||% read_data(dataset)
  m <- glmmTMB(as.formula(formula), data = d, family = family,
               control = glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = 1e-14)))
  nat0 <- tmb_nat(m, layout, anc$from_betad)
  f <- function(nat) -m$obj$fn(tmb_par_from_nat(m, nat, layout, anc$to_betad))
  stopifnot(abs(f(nat0) - as.numeric(logLik(m))) < 1e-6)   # the parameter map round-trips
  ## polish in the natural parameters (glmmTMB stops at rel.tol of its own scale)
  o <- optim(nat0, function(x) { v <- f(x); if (is.finite(v)) -v else 1e100 }, method = "BFGS",
             control = list(reltol = 1e-15, maxit = 500, ndeps = pmax(abs(nat0), 1e-2) * 1e-5))
  nat <- if (-o$value > f(nat0)) o$par else nat0
  ll <- f(nat)
  p <- length(fixef(m)$cond)
  ## a variance at its boundary 0 (glmmTMB: log sd -> -Inf) is held there (Stata's ln sd
  ## parameter then carries no information); the Hessian is that of the other parameters
  is_var <- rep(FALSE, length(nat)); pos <- p
  for (t in layout) { nv <- if (t$type == "us") 2 else t$q; is_var[pos + seq_len(nv)] <- TRUE
                      pos <- pos + (if (t$type == "us") 3 else t$q) }
  free <- !(is_var & nat < 1e-7 * max(nat[is_var]))
  H <- hess(function(x) { y <- nat; y[free] <- x; f(y) }, nat[free])
  Vn <- matrix(NA, length(nat), length(nat)); Vn[free, free] <- solve(-H)
  se <- sqrt(pmax(diag(Vn), 0))
  bn <- names(fixef(m)$cond)
  nms <- vapply(bn, stata_coef_name, "")
  ord <- match(cons_last(nms), nms)
  b <- nat[1:p]
  w <- wald(b, Vn[1:p, 1:p], nms)
  random <- list(); pos <- p
  if (!all(free)) nat[!free] <- 0
  for (t in layout) {
    q <- if (t$type == "us") 2 else t$q
    cv <- matrix(0, q, q); sm <- matrix(NA, q, q)
    if (t$type == "us") {
      cv[1, 1] <- nat[pos + 1]; cv[2, 2] <- nat[pos + 2]; cv[1, 2] <- cv[2, 1] <- nat[pos + 3]
      sm[1, 1] <- se[pos + 1]; sm[2, 2] <- se[pos + 2]; sm[1, 2] <- sm[2, 1] <- se[pos + 3]
      pos <- pos + 3
    } else {
      diag(cv) <- nat[pos + seq_len(q)]; diag(sm) <- se[pos + seq_len(q)]; pos <- pos + q
    }
    o2 <- match(t$stata_order, t$terms)
    random[[length(random) + 1]] <- re_eq(t$level, t$terms[o2], cv[o2, o2, drop = FALSE], sm[o2, o2, drop = FALSE])
  }
  nre <- pos - p
  k <- length(nat)
  ll0 <- fixed_only(d)
  ngr <- lapply(m$modelInfo$reTrms$cond$flist, nlevels)
  ex <- c(info_extra(ll, k, nobs(m), ngr),
          list(wald_chi2 = w$chi2, wald_df = w$df, lr_chi2 = 2 * (ll - ll0), lr_df = nre,
               ll_fixed_only = ll0))
  if (!is.null(anc)) {
    a <- nat[k]; sa <- se[k]
    ex[[anc$name]] <- a; ex[[paste0("se_", anc$name)]] <- sa
    v <- exp(anc$sign * a)
    ex[[anc$derived]] <- v; ex[[paste0("se_", anc$derived)]] <- v * sa
  }
  checks <- list(glmmTMB_loglik = as.numeric(logLik(m)), polished_minus_glmmTMB = ll - as.numeric(logLik(m)))
  if (!is.null(lme4_check)) checks$lme4_laplace_loglik <- lme4_check(d)
  results <- list(loglik = ll,
                  fixed = fixed_out(nms, b, se[1:p], ord),
                  random = random, residual = NULL, extra = ex)
  write_sweep(id, "glmm", dataset, stata, formula,
              sprintf("glmmTMB(%s) (Laplace), polished by BFGS on glmmTMB's own Laplace objective in the natural parameters; SEs from its numerical Hessian there", formula),
              c(opts("ml", stata_family, link, 1, "laplace"), extra_opts), results,
              paste("Laplace approximation with the observed curvature at the conditional modes (= Stata intmethod(laplace), glmmTMB).",
                    "Variances, not SDs; with covariance(independent) the off-diagonal 0 is a constraint.",
                    "lr_chi2 is against the fixed-effects GLM (ll_fixed_only).", notes),
              checks)
}

## --------------------------------------------- scalar AGHQ (own code) --------
gauss_hermite <- function(n) {          # Golub-Welsch, weight exp(-x^2)
  J <- matrix(0, n, n)
  for (i in seq_len(n - 1)) J[i, i + 1] <- J[i + 1, i] <- sqrt(i / 2)
  e <- eigen(J, symmetric = TRUE)
  o <- order(e$values)
  list(x = e$values[o], w = sqrt(pi) * e$vectors[1, o]^2)
}

## Mode-curvature adaptive GH (Stata mcaghermite, lme4 nAGQ) for one scalar
## random intercept u_j ~ N(0, s2):  sum_j log int prod_i f(y_i | eta_i + u) phi(u) du.
## lf(eta, i) gives the per-observation log density (eta a vector over rows i).
aghq_ll <- function(eta0, grp, s2, lf, n) {
  gh <- gauss_hermite(n)
  sd <- sqrt(s2)
  tot <- 0
  for (ix in split(seq_along(eta0), grp)) {
    h <- function(u) sum(lf(eta0[ix] + u, ix)) + dnorm(u, 0, sd, log = TRUE)
    u0 <- optimize(h, c(-15 * sd - 5, 15 * sd + 5), maximum = TRUE, tol = 1e-12)$maximum
    for (it in 1:3) {                      # Newton polish with central differences
      e <- 1e-4 * max(1, abs(u0))
      g <- (h(u0 + e) - h(u0 - e)) / (2 * e); c2 <- (h(u0 + e) - 2 * h(u0) + h(u0 - e)) / e^2
      u0 <- u0 - g / c2
    }
    e <- 1e-4 * max(1, abs(u0))
    curv <- -(h(u0 + e) - 2 * h(u0) + h(u0 - e)) / e^2
    tau <- 1 / sqrt(curv)
    vals <- sapply(gh$x, function(x) h(u0 + sqrt(2) * tau * x)) + gh$x^2
    mx <- max(vals)
    tot <- tot + mx + log(sum(gh$w * exp(vals - mx))) + log(sqrt(2) * tau)
  }
  tot
}

## Fit by nlminb on (beta, log var, ancillary); SEs from the numerical Hessian in
## (beta, var, ancillary).  X, grp, lf_par(eta, i, anc): conditional log density.
aghq_fit <- function(X, grp, lf_par, n, start, n_anc = 0, offset = 0) {
  p <- ncol(X)
  ll_nat <- function(nat) {
    anc <- if (n_anc) nat[p + 1 + seq_len(n_anc)] else NULL
    if (nat[p + 1] <= 0) return(-Inf)
    aghq_ll(drop(X %*% nat[1:p]) + offset, grp, nat[p + 1], function(eta, i) lf_par(eta, i, anc), n)
  }
  to_nat <- function(u) c(u[1:p], exp(u[p + 1]), u[-(1:(p + 1))])
  obj <- function(u) { v <- ll_nat(to_nat(u)); if (is.finite(v)) -v else 1e100 }
  u <- c(start[1:p], log(start[p + 1]), start[-(1:(p + 1))])
  o <- nlminb(u, obj, control = list(eval.max = 5000, iter.max = 3000, rel.tol = 1e-13))
  o2 <- optim(o$par, obj, method = "BFGS", control = list(reltol = 1e-15, maxit = 1000))
  u <- if (o2$value < o$objective) o2$par else o$par
  nat <- to_nat(u)
  H <- hess(ll_nat, nat)
  list(nat = nat, ll = ll_nat(nat), vcov = solve(-H), grad = numDeriv::grad(ll_nat, nat))
}

aghq_case <- function(id, dataset, stata, class, fitobj, Xnames, level, ngroups, N, ll0, anc = NULL,
                      options, lme4f, reference, notes, checks = list()) {
  nat <- fitobj$nat; V <- fitobj$vcov; se <- sqrt(pmax(diag(V), 0))
  p <- length(Xnames)
  nms <- vapply(Xnames, stata_coef_name, "")
  ord <- match(cons_last(nms), nms)
  w <- wald(nat[1:p], V[1:p, 1:p], nms)
  ll <- fitobj$ll
  ex <- c(info_extra(ll, length(nat), N, setNames(list(ngroups), level)),
          list(wald_chi2 = w$chi2, wald_df = w$df, lr_chi2 = 2 * (ll - ll0), lr_df = 1, ll_fixed_only = ll0))
  if (!is.null(anc)) {
    k <- p + 2
    ex[[anc$name]] <- nat[k]; ex[[paste0("se_", anc$name)]] <- se[k]
    v <- exp(anc$sign * nat[k])
    ex[[anc$derived]] <- v; ex[[paste0("se_", anc$derived)]] <- v * se[k]
  }
  results <- list(loglik = ll, fixed = fixed_out(nms, nat[1:p], se[1:p], ord),
                  random = list(re_eq(level, "_cons", mat1(nat[p + 1]), mat1(se[p + 1]))),
                  residual = NULL, extra = ex)
  write_sweep(id, class, dataset, stata, lme4f, reference, options, results, notes,
              c(checks, list(grad_max = max(abs(fitobj$grad)))))
}

## =================================================================== LMM ====
lmm_lmer_case("lmm_sleepstudy_rs_ind_reml", "sleepstudy.csv",
              "mixed Reaction Days || Subject: Days, covariance(independent) reml",
              "Reaction ~ Days + (Days || Subject)", TRUE)
lmm_lmer_case("lmm_oats_slope_nested_ml", "oats.csv",
              "mixed yield nitro || block: || variety: nitro",
              "yield ~ nitro + (1 | block) + (1 | variety:block) + (0 + nitro | variety:block)", FALSE,
              notes = "Third level: variety within block with an independent nitro slope (lme4 terms variety:block).")
{
  oats <- read_data("oats.csv"); oats$variety <- relevel(factor(oats$variety), ref = "2")
  lmm_lmer_case("lmm_oats_ib2_interaction_nested_reml", "oats.csv",
                "mixed yield ib2.variety##c.nitro || block: || variety:, reml",
                "yield ~ factor(variety) * nitro + (1 | block/variety)", TRUE, data = oats,
                notes = "variety is a factor with base level 2 (R relevel(ref = 2); Stata ib2.): names 1.variety, 3.variety, 1.variety#c.nitro, 3.variety#c.nitro.")
}
lmm_lmer_case("lmm_orthodont_cage_x_male_rs_un_reml", "orthodont.csv",
              "mixed distance c.age##i.male || subject: age, covariance(unstructured) reml",
              "distance ~ age * factor(male) + (age | subject)", TRUE,
              notes = "Stata names the interaction as written: c.age#1.male.")
lmm_lmer_case("lmm_penicillin_crossed_ml", "penicillin.csv",
              "mixed diameter || _all: R.plate || sample:",
              "diameter ~ 1 + (1 | plate) + (1 | sample)", FALSE, relabel = list(plate = c("_all", "R.plate")),
              notes = "Crossed: plate as _all: R.plate, sample as the next level (sample within _all = crossed).")
lmm_lmer_case("lmm_pig_rs_un_reml", "pig.csv",
              "mixed weight week || id: week, covariance(unstructured) reml",
              "weight ~ week + (week | id)", TRUE)
lmm_lmer_case("lmm_pastes_nested_reml", "pastes.csv",
              "mixed strength || batch: || cask:, reml",
              "strength ~ 1 + (1 | batch/cask)", TRUE)
lmm_lmer_case("lmm_pig_slope_only_ml", "pig.csv",
              "mixed weight week || id: week, noconstant",
              "weight ~ week + (0 + week | id)", FALSE,
              notes = "Random slope without a random intercept (the level's noconstant).")
lmm_lmer_case("lmm_pig_quadratic_rs_un_ml", "pig.csv",
              "mixed weight c.week##c.week || id: week, covariance(unstructured)",
              "weight ~ week + I(week^2) + (week | id)", FALSE, rename = list("I(week^2)" = "c.week#c.week"),
              notes = "Stata's c.week##c.week = week and week^2 (c.week#c.week, the product of the variable with itself).")
{
  ## i.week with noconstant: Stata keeps 1.week as the base (omitted) even without _cons
  pig <- read_data("pig.csv")
  for (w in 2:9) pig[[paste0("w", w)]] <- as.numeric(pig$week == w)
  lmm_lmer_case("lmm_pig_iweek_nocons_ml", "pig.csv",
                "mixed weight i.week, noconstant || id:",
                "weight ~ 0 + w2 + w3 + w4 + w5 + w6 + w7 + w8 + w9 + (1 | id)", FALSE, data = pig,
                rename = setNames(as.list(paste0(2:9, ".week")), paste0("w", 2:9)),
                notes = paste("Stata's factor variables keep their base level out with or without the constant ([U] 11.4.3;",
                              "'regress mpg i.rep78, noconstant' omits 1b.rep78): the model has 2.week..9.week and no _cons.",
                              "R: indicator columns w2..w9 renamed 2.week..9.week."))
}

## meglm family(gaussian): the same model as mixed (ML)
{
  d <- read_data("sleepstudy.csv")
  lmm_lmer_case("glmm_sleepstudy_meglm_gaussian_rs_un", "sleepstudy.csv",
                "meglm Reaction Days || Subject: Days, covariance(unstructured) family(gaussian)",
                "Reaction ~ Days + (Days | Subject)", FALSE, class = "glmm",
                family_opts = opts("ml", intpoints = NULL),
                notes = "meglm's gaussian family with the identity link is mixed's ML model (Stata reports var(e.Reaction) as the residual variance).")
}

## ------------------------------------------------ LMM via nlme + direct -----
{
  pig <- read_data("pig.csv")
  ## exchangeable random intercept + slope: equal variances, one covariance (nlme pdCompSymm)
  m <- lme(weight ~ week, random = list(id = pdCompSymm(~week)), data = pig, method = "ML",
           control = lmeControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-10))
  Z <- c("week", "one"); pig$one <- 1
  G <- function(par) matrix(c(par[1], par[2], par[2], par[1]), 2)
  R <- function(par, idx) diag(par[3], length(idx))
  vc <- as.numeric(VarCorr(m)[, "Variance"]); rho <- as.numeric(VarCorr(m)[2, "Corr"])
  nat0 <- c(vc[1], rho * vc[1], m$sigma^2)
  lmm_direct_case("lmm_pig_rs_exch_ml", "pig.csv", "mixed weight week || id: week, covariance(exchangeable)",
                  m, pig, "id", Z, G, R, nat0,
                  to_nat = function(u) { v <- exp(u[1]); c(v, v * tanh(u[2]), exp(u[3])) },
                  from_nat = function(n) c(log(n[1]), atanh(n[2] / n[1]), log(n[3])), reml = FALSE,
                  random_out = function(n, s) list(re_eq("id", c("week", "_cons"),
                                                         matrix(c(n[1], n[2], n[2], n[1]), 2),
                                                         matrix(c(s[1], s[2], s[2], s[1]), 2))),
                  residual_out = function(n, s) list(var = n[3], se = s[3]),
                  extra_out = function(n, s) list(),
                  notes = "Exchangeable: var(week) = var(_cons) (one parameter), cov(week,_cons) the other.",
                  reference = "nlme lme(weight ~ week, random = list(id = pdCompSymm(~week)), method='ML'); direct likelihood maximisation")
  m <- lme(weight ~ week, random = list(id = pdIdent(~week)), data = pig, method = "REML")
  G <- function(par) diag(par[1], 2)
  R <- function(par, idx) diag(par[2], length(idx))
  lmm_direct_case("lmm_pig_rs_identity_reml", "pig.csv", "mixed weight week || id: week, covariance(identity) reml",
                  m, pig, "id", Z, G, R, c(as.numeric(VarCorr(m)[1, "Variance"]), m$sigma^2),
                  to_nat = exp, from_nat = log, reml = TRUE,
                  random_out = function(n, s) list(re_eq("id", c("week", "_cons"), diag(n[1], 2),
                                                         matrix(c(s[1], NA, NA, s[1]), 2))),
                  residual_out = function(n, s) list(var = n[2], se = s[2]),
                  extra_out = function(n, s) list(),
                  notes = "Identity: var(week) = var(_cons), one parameter; covariance 0 by constraint.",
                  reference = "nlme lme(weight ~ week, random = list(id = pdIdent(~week)), method='REML'); direct likelihood maximisation")
}
{
  ort <- read_data("orthodont.csv"); ort$one <- 1
  m <- lme(distance ~ age, random = ~age | subject, weights = varIdent(form = ~1 | male), data = ort,
           method = "ML", control = lmeControl(maxIter = 500, msMaxIter = 500))
  G <- function(par) matrix(c(par[1], par[3], par[3], par[2]), 2)
  R <- function(par, idx) diag(ifelse(ort$male[idx] == 0, par[4], par[5]), length(idx))
  vc <- as.numeric(VarCorr(m)[1:2, "Variance"]); rho <- as.numeric(VarCorr(m)[2, "Corr"])
  ratio <- coef(m$modelStruct$varStruct, unconstrained = FALSE)
  s0 <- m$sigma^2
  nat0 <- c(vc[2], vc[1], rho * sqrt(vc[1] * vc[2]),
            if (ort$male[1] == 0) c(s0, s0 * ratio^2) else c(s0 * ratio^2, s0))
  chol_to <- function(u) { L <- matrix(c(exp(u[1]), u[3], 0, exp(u[2])), 2); S <- L %*% t(L)
                           c(S[1, 1], S[2, 2], S[1, 2], exp(u[4]), exp(u[5])) }
  chol_from <- function(n) { L <- t(chol(matrix(c(n[1], n[3], n[3], n[2]), 2)))
                             c(log(L[1, 1]), log(L[2, 2]), L[2, 1], log(n[4]), log(n[5])) }
  lmm_direct_case("lmm_orthodont_rs_un_hetres_ml", "orthodont.csv",
                  "mixed distance age || subject: age, covariance(unstructured) residuals(independent, by(male))",
                  m, ort, "subject", c("age", "one"), G, R, nat0, chol_to, chol_from, reml = FALSE,
                  random_out = function(n, s) list(re_eq("subject", c("age", "_cons"),
                                                         matrix(c(n[1], n[3], n[3], n[2]), 2),
                                                         matrix(c(s[1], s[3], s[3], s[2]), 2))),
                  residual_out = function(n, s) NULL,
                  extra_out = function(n, s) list(residual_var_by = list("male=0" = n[4], "male=1" = n[5]),
                                                  residual_var_by_se = list("male=0" = s[4], "male=1" = s[5])),
                  resid_opt = "independent, by(male)",
                  notes = "Residual variances by male in extra.residual_var_by (Stata var(e) per group).",
                  reference = "nlme lme(distance ~ age, random = ~age|subject, weights = varIdent(form = ~1|male), method='ML'); direct likelihood maximisation")
  ## AR(1) residuals with a random intercept and a factor covariate, REML
  m <- lme(distance ~ age + factor(male), random = ~1 | subject, correlation = corAR1(form = ~occ | subject),
           data = ort, method = "REML")
  ar1 <- function(rho, t) rho^abs(outer(t, t, "-"))
  R <- function(par, idx) par[2] * ar1(par[3], ort$occ[idx])
  G <- function(par) mat1(par[1])
  phi <- as.numeric(coef(m$modelStruct$corStruct, unconstrained = FALSE))
  lmm_direct_case("lmm_orthodont_ar1_reml", "orthodont.csv",
                  "mixed distance age i.male || subject:, residuals(ar 1, t(occ)) reml",
                  m, ort, "subject", "one", G, R, c(as.numeric(VarCorr(m)[1, "Variance"]), m$sigma^2, phi),
                  to_nat = function(u) c(exp(u[1]), exp(u[2]), tanh(u[3])),
                  from_nat = function(n) c(log(n[1]), log(n[2]), atanh(n[3])), reml = TRUE,
                  random_out = function(n, s) list(re_eq("subject", "_cons", mat1(n[1]), mat1(s[1]))),
                  residual_out = function(n, s) list(var = n[2], se = s[2]),
                  extra_out = function(n, s) list(ar1_rho = n[3], ar1_rho_se = s[3]),
                  resid_opt = "ar 1, t(occ)",
                  notes = "residual var is Stata's var(e), extra.ar1_rho its rho.",
                  reference = "nlme lme(distance ~ age + factor(male), random = ~1|subject, correlation = corAR1(form = ~occ|subject), method='REML'); direct likelihood maximisation")
}

## ================================================================= GLMM ====
bang <- read_data("bangladesh.csv")
glm_ll <- function(formula, family, weights = NULL) function(d) {
  as.numeric(logLik(glm(as.formula(formula), data = d, family = family)))
}
tmb0 <- function(formula, family) function(d)
  as.numeric(logLik(glmmTMB(as.formula(formula), data = d, family = family)))
lme4_lap <- function(formula, family) function(d)
  as.numeric(logLik(glmer(as.formula(formula), data = d, family = family, nAGQ = 1,
                          control = glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12))))

BX <- "c_use ~ urban + age + child1 + child2 + child3"
glmm_tmb_case("glmm_bangladesh_logit_rs_un_laplace", "bangladesh.csv",
              "melogit c_use urban age child1 child2 child3 || district: urban, covariance(unstructured) intmethod(laplace)",
              paste(BX, "+ (urban | district)"), binomial(),
              list(list(type = "us", level = "district", terms = c("_cons", "urban"), stata_order = c("urban", "_cons"))),
              stata_family = "bernoulli", link = "logit", fixed_only = glm_ll(BX, binomial()),
              lme4_check = lme4_lap(paste(BX, "+ (urban | district)"), binomial()))
glmm_tmb_case("glmm_bangladesh_logit_rs_ind_laplace", "bangladesh.csv",
              "melogit c_use urban age child1 child2 child3 || district: urban, intmethod(laplace)",
              paste(BX, "+ diag(1 + urban | district)"), binomial(),
              list(list(type = "diag", q = 2, level = "district", terms = c("_cons", "urban"), stata_order = c("urban", "_cons"))),
              stata_family = "bernoulli", link = "logit", fixed_only = glm_ll(BX, binomial()),
              lme4_check = lme4_lap(paste(BX, "+ (urban || district)"), binomial()),
              notes = "Stata's default covariance(independent) for random coefficients (glmmTMB diag()).")
glmm_tmb_case("glmm_bangladesh_probit_rs_un_laplace", "bangladesh.csv",
              "meprobit c_use urban age child1 child2 child3 || district: urban, covariance(unstructured) intmethod(laplace)",
              paste(BX, "+ (urban | district)"), binomial(link = "probit"),
              list(list(type = "us", level = "district", terms = c("_cons", "urban"), stata_order = c("urban", "_cons"))),
              stata_family = "bernoulli", link = "probit", fixed_only = glm_ll(BX, binomial(link = "probit")),
              notes = "Probit is not canonical: lme4's Laplace uses the expected curvature and differs; glmmTMB's is Stata's.")
{
  bang$dist_urban <- interaction(bang$district, bang$urban, drop = TRUE)
  glmm_tmb_case("glmm_bangladesh_logit_nested_laplace", "bangladesh.csv",
                "melogit c_use urban age child1 child2 child3 || district: || urban:, intmethod(laplace)",
                paste(BX, "+ (1 | district) + (1 | dist_urban)"), binomial(),
                list(list(type = "diag", q = 1, level = "district", terms = "_cons", stata_order = "_cons"),
                     list(type = "diag", q = 1, level = "urban", terms = "_cons", stata_order = "_cons")),
                stata_family = "bernoulli", link = "logit", fixed_only = glm_ll(BX, binomial()), data = bang,
                lme4_check = lme4_lap(paste(BX, "+ (1 | district/urban)"), binomial()),
                notes = "urban within district (lme4 (1 | district/urban)); var(_cons) at district may be at the boundary 0, in which case its se is meaningless and omitted by the checker only if null.")
}
EP <- "seizures ~ treat + lbas + lbas_trt + lage + v4"
glmm_tmb_case("glmm_epilepsy_poisson_rs_un_laplace", "epilepsy.csv",
              "mepoisson seizures treat lbas lbas_trt lage v4 || subject: visit, covariance(unstructured) intmethod(laplace)",
              paste(EP, "+ (visit | subject)"), poisson(),
              list(list(type = "us", level = "subject", terms = c("_cons", "visit"), stata_order = c("visit", "_cons"))),
              stata_family = "poisson", link = "log", fixed_only = glm_ll(EP, poisson()),
              lme4_check = lme4_lap(paste(EP, "+ (visit | subject)"), poisson()))
glmm_tmb_case("glmm_epilepsy_poisson_exposure_laplace", "epilepsy.csv",
              "mepoisson seizures treat lage v4 || subject:, exposure(base) intmethod(laplace)",
              "seizures ~ treat + lage + v4 + offset(log(base)) + (1 | subject)", poisson(),
              list(list(type = "diag", q = 1, level = "subject", terms = "_cons", stata_order = "_cons")),
              stata_family = "poisson", link = "log",
              fixed_only = glm_ll("seizures ~ treat + lage + v4 + offset(log(base))", poisson()),
              notes = "exposure(base) = offset ln(base).")
glmm_tmb_case("glmm_epilepsy_poisson_offset_laplace", "epilepsy.csv",
              "mepoisson seizures treat lage v4 || subject:, offset(lbas) intmethod(laplace)",
              "seizures ~ treat + lage + v4 + offset(lbas) + (1 | subject)", poisson(),
              list(list(type = "diag", q = 1, level = "subject", terms = "_cons", stata_order = "_cons")),
              stata_family = "poisson", link = "log",
              fixed_only = glm_ll("seizures ~ treat + lage + v4 + offset(lbas)", poisson()),
              notes = "offset(lbas): coefficient 1 on lbas.")
glmm_tmb_case("glmm_epilepsy_poisson_crossed_laplace", "epilepsy.csv",
              "mepoisson seizures treat lbas lbas_trt lage || _all: R.visit || subject:, intmethod(laplace)",
              "seizures ~ treat + lbas + lbas_trt + lage + (1 | visit) + (1 | subject)", poisson(),
              list(list(type = "diag", q = 1, level = "_all", terms = "R.visit", stata_order = "R.visit"),
                   list(type = "diag", q = 1, level = "subject", terms = "_cons", stata_order = "_cons")),
              stata_family = "poisson", link = "log",
              fixed_only = glm_ll("seizures ~ treat + lbas + lbas_trt + lage", poisson()),
              lme4_check = lme4_lap("seizures ~ treat + lbas + lbas_trt + lage + (1 | visit) + (1 | subject)", poisson()),
              notes = "Crossed subject x visit (4 visits).")
glmm_tmb_case("glmm_epilepsy_nbinom1_ri_laplace", "epilepsy.csv",
              "menbreg seizures treat lbas lbas_trt lage v4 || subject:, dispersion(constant) intmethod(laplace)",
              paste(EP, "+ (1 | subject)"), nbinom1(),
              list(list(type = "diag", q = 1, level = "subject", terms = "_cons", stata_order = "_cons")),
              anc = list(name = "lndelta", derived = "delta", sign = 1, to_betad = identity, from_betad = identity),
              stata_family = "nbinomial", link = "log", fixed_only = tmb0(EP, nbinom1()),
              extra_opts = list(dispersion = "constant"),
              notes = "Constant dispersion (NB1): Var(y|u) = mu (1 + delta); glmmTMB nbinom1's sigma() = delta; extra.lndelta = ln(delta) (Stata /lndelta). lr_chi2 against the fixed-effects NB1 model (glmmTMB nbinom1 without random effects).")
glmm_tmb_case("glmm_grouseticks_nbinom2_nested_laplace", "grouseticks.csv",
              "menbreg ticks i.year height_s || location: || brood:, intmethod(laplace)",
              "ticks ~ factor(year) + height_s + (1 | location) + (1 | brood)", nbinom2(),
              list(list(type = "diag", q = 1, level = "location", terms = "_cons", stata_order = "_cons"),
                   list(type = "diag", q = 1, level = "brood", terms = "_cons", stata_order = "_cons")),
              anc = list(name = "lnalpha", derived = "alpha", sign = 1, to_betad = function(a) -a, from_betad = function(b) -b),
              stata_family = "nbinomial", link = "log",
              fixed_only = tmb0("ticks ~ factor(year) + height_s", nbinom2()),
              extra_opts = list(dispersion = "mean"),
              notes = "brood ids are unique across locations (nested = crossed coding). NB2: alpha = 1/theta (glmmTMB nbinom2 sigma() = theta), lnalpha = -ln(theta).")
glmm_tmb_case("glmm_cbpp_binomial_probit_laplace", "cbpp.csv",
              "meglm incidence i.period || herd:, family(binomial size) link(probit) intmethod(laplace)",
              "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)", binomial(link = "probit"),
              list(list(type = "diag", q = 1, level = "herd", terms = "_cons", stata_order = "_cons")),
              stata_family = "binomial", link = "probit",
              fixed_only = glm_ll("cbind(incidence, size - incidence) ~ factor(period)", binomial(link = "probit")),
              extra_opts = list(binomial_trials = "size"),
              notes = "Binomial with trials 'size'; the full binomial log density incl. ln C(size, incidence), as glm/glmmTMB (see glmm_cbpp_binomial_ri_laplace).")

## --------------------------------------------- ordinal (ordinal::clmm) -----
wine <- read_data("wine.csv")
wine$rating_f <- factor(wine$rating, ordered = TRUE)
## Ordinal log density P(y = k | eta) = F(cut_k - eta) - F(cut_{k-1} - eta) (Stata's
## parameterisation, clm's theta_k) for the own quadrature below
ORD_F <- list(logit = plogis, probit = pnorm, cloglog = function(x) -expm1(-exp(x)))
ord_lf <- function(cuts, F) function(eta, i) {
  k <- wine$rating[i]; up <- c(cuts, Inf)[k]; lo <- c(-Inf, cuts)[k]
  log(pmax(ifelse(is.finite(up), F(up - eta), 1) - ifelse(is.finite(lo), F(lo - eta), 0), 1e-300))
}

## clmm gives the estimates; the SEs come from the numerical Hessian of our own scalar AGHQ
## (nAGQ points; 1 = Laplace) of the same likelihood in (cuts, beta, var): clmm's vcov() follows
## its optimizer's path (with gradTol = 1e-10 the ocloglog SE of warm came out 0.364 instead of
## 0.397, which clmm's default control and our Hessian both give).
clmm_case <- function(id, stata, formula, fixed, link, nAGQ, notes = "", clmm_link = link, checks = list()) {
  m <- clmm(as.formula(formula), data = wine, link = clmm_link, nAGQ = nAGQ,
            control = clmm.control(gradTol = 1e-10, maxIter = 1000))
  th <- m$alpha; b <- m$beta
  nth <- length(th); p <- length(b)
  stopifnot(length(m$ST) == 1, names(m$ST) == "judge")
  X <- model.matrix(as.formula(fixed), wine)[, -1, drop = FALSE]
  stopifnot(identical(colnames(X), names(b)))
  own <- function(nat) {
    if (nat[nth + p + 1] <= 0 || any(diff(nat[1:nth]) <= 0)) return(-Inf)
    aghq_ll(drop(X %*% nat[nth + 1:p]), wine$judge, nat[nth + p + 1], ord_lf(nat[1:nth], ORD_F[[link]]), nAGQ)
  }
  nat <- c(th, b, m$ST[[1]][1, 1]^2)
  ll <- own(nat)
  V <- solve(-hess(own, nat))
  se <- sqrt(diag(V))
  nms <- vapply(names(b), stata_coef_name, "")
  w <- wald(b, V[nth + seq_len(p), nth + seq_len(p), drop = FALSE], nms)
  random <- list(re_eq("judge", "_cons", mat1(nat[nth + p + 1]), mat1(se[nth + p + 1])))
  ll0 <- as.numeric(logLik(clm(as.formula(fixed), data = wine, link = link)))
  ex <- c(info_extra(ll, nth + p + 1, nrow(wine), list(judge = 9L)),
          list(wald_chi2 = w$chi2, wald_df = w$df, lr_chi2 = 2 * (ll - ll0), lr_df = 1, ll_fixed_only = ll0))
  for (k in seq_len(nth)) { ex[[paste0("cut", k)]] <- unname(th[k]); ex[[paste0("se_cut", k)]] <- unname(se[k]) }
  results <- list(loglik = ll, fixed = fixed_out(nms, b, se[nth + seq_len(p)], seq_along(b)),
                  random = random, residual = NULL, extra = ex)
  meth <- if (nAGQ == 1) list(1, "laplace") else list(nAGQ, "mcaghermite")
  write_sweep(id, "glmm", "wine.csv", stata, sub("rating_f", "rating", formula),
              sprintf("ordinal clmm(%s, link='%s', nAGQ=%d) (%s); SEs from the numerical Hessian of own %s at clmm's optimum",
                      formula, clmm_link, nAGQ, if (nAGQ == 1) "Laplace" else "adaptive Gauss-Hermite at the conditional modes",
                      if (nAGQ == 1) "Laplace" else sprintf("mode-curvature %d-point AGHQ", nAGQ)),
              opts("ml", "ordinal", link, meth[[1]], meth[[2]]), results,
              paste("Cutpoints in Stata's parameterisation P(y <= k | u) = F(cut_k - x'b - u), identical to clm's theta_k.",
                    "lr_chi2 against clm (no random effects).", notes),
              c(list(clmm_loglik = as.numeric(logLik(m)), own_minus_clmm = ll - as.numeric(logLik(m)),
                     clmm_max_grad = max(abs(m$gradient)), own_grad_max = max(abs(numDeriv::grad(own, nat)))), checks))
}
clmm_case("glmm_wine_oprobit_ri_laplace", "meoprobit rating warm contact || judge:, intmethod(laplace)",
          "rating_f ~ warm + contact + (1 | judge)", "rating_f ~ warm + contact", "probit", 1)
clmm_case("glmm_wine_ologit_factorial_mcaghq10", "meologit rating i.warm##i.contact || judge:, intmethod(mcaghermite) intpoints(10)",
          "rating_f ~ factor(warm) * factor(contact) + (1 | judge)", "rating_f ~ factor(warm) * factor(contact)", "logit", 10,
          notes = "Factor variables in an ordinal model: the cutpoints replace _cons but i.warm and i.contact keep their base level 0 out (1.warm, 1.contact, 1.warm#1.contact). clmm nAGQ=10 = Stata's mode-curvature adaptive quadrature mcaghermite with 10 points.")
{
  ## ordinal cloglog: P(y <= k | u) = 1 - exp(-exp(cut_k - x'b - u)) (Stata; clm(link = "cloglog")
  ## without random effects).  ordinal 2022.11.16's clmm(link = "cloglog") fits the reflected
  ## link (its optimum -82.729 is -88.878 under this model by our own Laplace code below), while
  ## clmm(link = "loglog") fits this model: checked by an independent Laplace maximisation.
  own <- function(u) aghq_ll(u[5] * wine$warm + u[6] * wine$contact, wine$judge, exp(u[7]),
                             ord_lf(cumsum(c(u[1], exp(u[2:4]))), ORD_F$cloglog), 1)
  mc <- clmm(rating_f ~ warm + contact + (1 | judge), data = wine, link = "cloglog")
  ml <- clmm(rating_f ~ warm + contact + (1 | judge), data = wine, link = "loglog")
  at <- function(m) c(m$alpha[1], log(diff(m$alpha)), m$beta, log(m$ST[[1]][1, 1]^2))
  o <- nlminb(at(ml), function(u) -own(u), control = list(rel.tol = 1e-12))
  clmm_case("glmm_wine_ocloglog_ri_laplace", "meglm rating warm contact || judge:, family(ordinal) link(cloglog) intmethod(laplace)",
            "rating_f ~ warm + contact + (1 | judge)", "rating_f ~ warm + contact", "cloglog", 1, clmm_link = "loglog",
            notes = paste("Ordinal cloglog: P(y <= k | u) = 1 - exp(-exp(cut_k - x'b - u)), as clm(link='cloglog') (whose fixed-only",
                          "log likelihood is ll_fixed_only). ordinal's clmm(link='cloglog') fits the reflected link (loglik -82.729, which",
                          "is -88.878 under this model); clmm(link='loglog') is this model, confirmed by an independent Laplace maximisation (checks)."),
            checks = list(own_laplace_max = -o$objective, own_laplace_at_clmm_loglog = own(at(ml)),
                          own_laplace_at_clmm_cloglog = own(at(mc)), clmm_cloglog_loglik = as.numeric(logLik(mc))))
}

## ------------------------------------- AGHQ, scalar random effect (own) ----
## Bernoulli cloglog, mode-curvature 9 points (lme4 nAGQ=9 checks the optimum)
{
  X <- model.matrix(as.formula(BX), bang)
  cll <- function(eta, i, anc) { y <- bang$c_use[i]; ifelse(y == 1, log(-expm1(-exp(eta))), -exp(eta)) }
  m4 <- glmer(as.formula(paste(BX, "+ (1 | district)")), data = bang, family = binomial(link = "cloglog"), nAGQ = 9)
  st <- c(fixef(m4), getME(m4, "theta")^2)
  f <- aghq_fit(X, bang$district, cll, 9, st)
  ll0 <- as.numeric(logLik(glm(as.formula(BX), data = bang, family = binomial(link = "cloglog"))))
  aghq_case("glmm_bangladesh_cloglog_ri_mcaghq9", "bangladesh.csv",
            "mecloglog c_use urban age child1 child2 child3 || district:, intmethod(mcaghermite) intpoints(9)",
            "glmm", f, colnames(X), "district", 60L, nrow(bang), ll0,
            options = opts("ml", "bernoulli", "cloglog", 9, "mcaghermite"),
            lme4f = paste(BX, "+ (1 | district)"),
            reference = "own R mode-curvature adaptive Gauss-Hermite (9 points; make.R aghq_ll), optimum checked against lme4 glmer(nAGQ=9)",
            notes = "Mode-curvature AGHQ (Stata mcaghermite; lme4 nAGQ). Bernoulli: lme4's nAGQ>1 deviance has no saturated-model offset, so its logLik is comparable.",
            checks = list(lme4_nAGQ9_loglik = as.numeric(logLik(m4))))
}
## Bernoulli logit with a factor interaction, 12 points
{
  F12 <- "c_use ~ factor(urban) * age + child1 + child2 + child3"
  X <- model.matrix(as.formula(F12), bang)
  lll <- function(eta, i, anc) { y <- bang$c_use[i]; y * eta - log1p(exp(eta)) }
  m4 <- glmer(as.formula(paste(F12, "+ (1 | district)")), data = bang, family = binomial(), nAGQ = 12)
  f <- aghq_fit(X, bang$district, lll, 12, c(fixef(m4), getME(m4, "theta")^2))
  ll0 <- as.numeric(logLik(glm(as.formula(F12), data = bang, family = binomial())))
  aghq_case("glmm_bangladesh_logit_iurban_x_age_mcaghq12", "bangladesh.csv",
            "melogit c_use i.urban##c.age child1 child2 child3 || district:, intmethod(mcaghermite) intpoints(12)",
            "glmm", f, colnames(X), "district", 60L, nrow(bang), ll0,
            options = opts("ml", "bernoulli", "logit", 12, "mcaghermite"),
            lme4f = paste(F12, "+ (1 | district)"),
            reference = "own R mode-curvature adaptive Gauss-Hermite (12 points), optimum checked against lme4 glmer(nAGQ=12)",
            notes = "Names: 1.urban, age, 1.urban#c.age (Stata order of i.urban##c.age).",
            checks = list(lme4_nAGQ12_loglik = as.numeric(logLik(m4))))
}
## Poisson, 12 points
{
  ep <- read_data("epilepsy.csv")
  X <- model.matrix(as.formula(EP), ep)
  pll <- function(eta, i, anc) dpois(ep$seizures[i], exp(eta), log = TRUE)
  m4 <- glmer(as.formula(paste(EP, "+ (1 | subject)")), data = ep, family = poisson(), nAGQ = 12)
  f <- aghq_fit(X, ep$subject, pll, 12, c(fixef(m4), getME(m4, "theta")^2))
  ll0 <- as.numeric(logLik(glm(as.formula(EP), data = ep, family = poisson())))
  aghq_case("glmm_epilepsy_poisson_ri_mcaghq12", "epilepsy.csv",
            "mepoisson seizures treat lbas lbas_trt lage v4 || subject:, intmethod(mcaghermite) intpoints(12)",
            "glmm", f, colnames(X), "subject", 59L, nrow(ep), ll0,
            options = opts("ml", "poisson", "log", 12, "mcaghermite"),
            lme4f = paste(EP, "+ (1 | subject)"),
            reference = "own R mode-curvature adaptive Gauss-Hermite (12 points), estimates checked against lme4 glmer(nAGQ=12)",
            notes = "lme4's nAGQ>1 logLik for Poisson omits the saturated log likelihood (see checks); the full Poisson log density is reported here, as Stata does.",
            checks = list(lme4_nAGQ12_loglik = as.numeric(logLik(m4)),
                          lme4_nAGQ12_beta = unname(fixef(m4)), lme4_nAGQ12_var = getME(m4, "theta")^2))
}
## Gamma log link, 10 points (ancillary logs = ln of the squared CV)
{
  gs <- read_data("gamma_sim.csv")
  X <- model.matrix(~x, gs)
  gll <- function(eta, i, anc) { s <- exp(anc); dgamma(gs$y[i], shape = 1 / s, scale = s * exp(eta), log = TRUE) }
  mt <- glmmTMB(y ~ x + (1 | group), data = gs, family = Gamma(link = "log"))
  st <- c(fixef(mt)$cond, VarCorr(mt)$cond$group[1, 1], 2 * fixef(mt)$disp)
  f <- aghq_fit(X, gs$group, gll, 10, st, n_anc = 1)
  g0 <- glmmTMB(y ~ x, data = gs, family = Gamma(link = "log"))
  aghq_case("glmm_gamma_sim_ri_mcaghq10", "gamma_sim.csv",
            "meglm y x || group:, family(gamma) link(log) intmethod(mcaghermite) intpoints(10)",
            "glmm", f, colnames(X), "group", 50L, nrow(gs), as.numeric(logLik(g0)),
            anc = list(name = "logs", derived = "shape", sign = -1),
            options = opts("ml", "gamma", "log", 10, "mcaghermite"), lme4f = "y ~ x + (1 | group)",
            reference = "own R mode-curvature adaptive Gauss-Hermite (10 points); start and Laplace check from glmmTMB Gamma(log)",
            notes = "Gamma: y|u ~ Gamma(shape 1/s, scale s mu); extra.logs = ln s, shape = 1/s (as glmm_gamma_sim_ri_laplace).",
            checks = list(glmmTMB_laplace_loglik = as.numeric(logLik(mt))))
}

## ============================================================ survival ====
## mestreg frailty models, random intercept at cluster, mode-curvature AGHQ
{
  sv <- read_data("surv_weibull_sim7.csv")
  X <- model.matrix(~x + z, sv)
  lt <- log(sv$time); d <- sv$died
  surv_case <- function(id, dist, stata_dist, lf, start_anc, anc, metric, sr_dist, stata_opt = "") {
    sr <- survreg(Surv(time, died) ~ x + z, data = sv, dist = sr_dist)
    st <- c(coef(sr), 0.1, start_anc(sr))
    f <- aghq_fit(X, sv$cluster, lf, 12, st, n_anc = 1)
    ll0 <- as.numeric(logLik(sr))
    own0 <- sum(lf(drop(X %*% coef(sr)), seq_len(nrow(sv)), start_anc(sr)))
    aghq_case(id, "surv_weibull_sim7.csv",
              sprintf("mestreg x z || cluster:, distribution(%s)%s intmethod(mcaghermite) intpoints(12)", stata_dist, stata_opt),
              "surv", f, colnames(X), "cluster", length(unique(sv$cluster)), nrow(sv), ll0, anc = anc,
              options = c(opts("ml", stata_dist, "log", 12, "mcaghermite"),
                          list(stset = "stset time, failure(died)", metric = metric, failure = "died", time = "time")),
              lme4f = NULL,
              reference = sprintf("own R mode-curvature adaptive Gauss-Hermite (12 points) of the %s frailty likelihood; fixed-only fit survival::survreg(dist='%s')", dist, sr_dist),
              notes = paste("Log likelihood on the time scale (Stata's mestreg: ln f(t) for failures, ln S(t) for censored, no Jacobian change); ll_fixed_only = survreg's logLik (same scale).",
                            "AFT: ln t = x'b + u + sigma eps; Stata's ancillary shown in extra."),
              checks = list(own_fixed_only_at_survreg = own0, survreg_loglik = ll0))
  }
  ## lognormal AFT: ln f = -ln t - ln sigma + ln phi(z), ln S = ln(1 - Phi(z)), z = (ln t - eta)/sigma
  surv_case("surv_lognormal_sim7_aft", "lognormal", "lognormal",
            function(eta, i, a) { s <- exp(a); z <- (lt[i] - eta) / s
              ifelse(d[i] == 1, -lt[i] - a + dnorm(z, log = TRUE), pnorm(z, lower.tail = FALSE, log.p = TRUE)) },
            function(sr) log(sr$scale), list(name = "lnsigma", derived = "sigma", sign = 1), "aft", "lognormal")
  ## loglogistic AFT, Stata's gamma = sigma: S = 1/(1 + exp(z)), f = exp(z) / (t gamma (1+exp(z))^2)
  surv_case("surv_loglogistic_sim7_aft", "loglogistic", "loglogistic",
            function(eta, i, a) { g <- exp(a); z <- (lt[i] - eta) / g
              ifelse(d[i] == 1, z - lt[i] - a - 2 * log1p(exp(z)), -log1p(exp(z))) },
            function(sr) log(sr$scale), list(name = "lngamma", derived = "gamma", sign = 1), "aft", "loglogistic")
  ## Weibull AFT: p = 1/sigma; ln t = eta + eps/p; S = exp(-(t e^{-eta})^p)
  surv_case("surv_weibull_sim7_aft", "Weibull", "weibull",
            function(eta, i, a) { p <- exp(a); lz <- p * (lt[i] - eta)
              ifelse(d[i] == 1, a + (p - 1) * lt[i] - p * eta - exp(lz), -exp(lz)) },
            function(sr) -log(sr$scale), list(name = "ln_p", derived = "p", sign = 1), "aft", "weibull",
            stata_opt = " time")
}
## ======================================================= local optimum ====
## A random slope whose unstructured covariance ends singular (corr -1): estimates and log
## likelihood only (SEs are not defined at the edge of the covariance cone), in local_optima/.
{
  g <- read_data("grouseticks.csv")
  m <- glmer(ticks ~ factor(year) + height_s + (height_s | location) + (1 | brood), data = g, family = poisson,
             nAGQ = 1, control = glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12))
  b <- fixef(m); nms <- vapply(names(b), stata_coef_name, ""); ord <- match(cons_last(nms), nms)
  vc <- VarCorr(m)
  x <- list(id = "glmm_grouseticks_poisson_rs_un_singular_laplace", dataset = "grouseticks.csv",
            stata = "mepoisson ticks i.year height_s || location: height_s, covariance(unstructured) || brood:, intmethod(laplace)",
            lme4 = "ticks ~ factor(year) + height_s + (height_s | location) + (1 | brood)",
            reference = paste0("lme4 glmer(nAGQ=1, bobyqa, tolPwrss=1e-12) (", VERSIONS, ")"),
            results = list(loglik = as.numeric(logLik(m)),
                           fixed = list(names = I(nms[ord]), coef = I(unname(b[ord]))),
                           random = list(re_eq("location", c("height_s", "_cons"),
                                               vc$location[c("height_s", "(Intercept)"), c("height_s", "(Intercept)")]),
                                         re_eq("brood", "_cons", mat1(vc$brood[1, 1])))),
            notes = paste("Poisson is canonical, so lme4's Laplace is Stata's. The optimum is singular (corr(height_s, _cons) = -1);",
                          "a second local optimum with var(height_s) = 0 has log likelihood -987.938."))
  dir.create(file.path(OUT, "local_optima"), showWarnings = FALSE)
  write_case(x, file.path(OUT, "local_optima", paste0(x$id, ".json")))
}
cat("done\n")
