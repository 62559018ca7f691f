## Random-slope logistic model references (2-D random effects).
## Run from the repository root:  Rscript tests/references/glmm_slopes/make.R
##
## GLMMadaptive is not packaged in Debian (bookworm), so the integrals are computed
## here in plain R:
##  * "exact": brute-force non-adaptive 60 x 60 Gauss-Hermite product rule on the
##    N(0, Sigma) random effects (u = sqrt(2) chol(Sigma) t), maximised with nlminb
##    + BFGS (started from the optimum of an adaptive 30 x 30 rule); its accuracy is
##    checked at the optimum against adaptive 30 x 30 and non-adaptive 40 x 40 and
##    80 x 80 rules (a 40 x 40 non-adaptive rule is off by ~2e-6 here);
##  * "mvaghq7": mean-variance adaptive 7 x 7 Gauss-Hermite (Stata's default
##    intmethod(mvaghermite) intpoints(7)): nodes at the posterior mean of u_j,
##    scaled by the lower Cholesky factor of the posterior covariance, both computed
##    with the rule itself and iterated to a fixed point (start: mode / curvature);
##  * "mcaghq7": mode-curvature adaptive 7 x 7 (Stata intmethod(mcaghermite));
##  * "laplace": lme4 glmer(nAGQ = 1) (= Stata intmethod(laplace)), checked against
##    an own Laplace implementation.
## SEs: inverse of the numerical Hessian (numDeriv) of the respective approximate
## log likelihood in Stata's metric (b, var(x), cov(x,_cons), var(_cons)), i.e. the
## observed information of the approximated likelihood, as Stata computes it.

source("tests/references/common.R")
suppressPackageStartupMessages(library(lme4))
OUT <- file.path(REF_ROOT, "glmm_slopes")
VERS <- pkg_version_string(c("lme4", "numDeriv", "jsonlite"))
DATA_FILE <- "glmm_slopes_sim.csv"

## ---- simulated data (fixed seed) -------------------------------------------------
set.seed(20251125)
G <- 100; n <- sample(6:14, G, replace = TRUE)
g <- rep(seq_len(G), n); N <- length(g)
x <- round(rnorm(N), 4)
S_true <- matrix(c(1.0, 0.3 * 0.7, 0.3 * 0.7, 0.49), 2)  # (intercept, slope)
U <- matrix(rnorm(2 * G), G) %*% chol(S_true)
eta <- -0.4 + 0.9 * x + U[g, 1] + U[g, 2] * x
y <- rbinom(N, 1, plogis(eta))
dat <- data.frame(g = g, x = x, y = y)
write.csv(dat, file.path(OUT, DATA_FILE), row.names = FALSE)
dat <- read.csv(file.path(OUT, DATA_FILE))     # use exactly what was written
g <- dat$g; x <- dat$x; y <- dat$y; G <- max(g)

## ---- quadrature machinery (q = 2: random intercept and slope on x) ---------------
gh_rule <- function(Q) {                    # Golub-Welsch, weight exp(-t^2)
  J <- matrix(0, Q, Q)
  for (i in seq_len(Q - 1)) J[i, i + 1] <- J[i + 1, i] <- sqrt(i / 2)
  e <- eigen(J, symmetric = TRUE)
  list(t = e$values, w = sqrt(pi) * e$vectors[1, ]^2)
}
product_rule <- function(Q) {
  r <- gh_rule(Q)
  list(t1 = rep(r$t, times = Q), t2 = rep(r$t, each = Q),
       logw = log(rep(r$w, times = Q)) + log(rep(r$w, each = Q)))
}
RULES <- list()
rule <- function(Q) { k <- as.character(Q); if (is.null(RULES[[k]])) RULES[[k]] <<- product_rule(Q); RULES[[k]] }

## natural parameters: b0 (_cons), b1 (x), var_int, cov, var_slope
Sigma_of <- function(p) matrix(c(p[3], p[4], p[4], p[5]), 2)
## unconstrained: b0, b1, log sd_int, log sd_slope, atanh(corr)
to_nat <- function(u) { s1 <- exp(u[3]); s2 <- exp(u[4]); r <- tanh(u[5])
  c(u[1], u[2], s1^2, r * s1 * s2, s2^2) }
from_nat <- function(p) c(p[1], p[2], 0.5 * log(p[3]), 0.5 * log(p[5]), atanh(p[4] / sqrt(p[3] * p[5])))

## per-group conditional mode and curvature (vectorised Newton over groups)
modes <- function(p) {
  Si <- solve(Sigma_of(p)); u <- matrix(0, G, 2)
  for (it in 1:100) {
    e <- p[1] + p[2] * x + u[g, 1] + u[g, 2] * x
    pr <- plogis(e); r <- y - pr; w <- pr * (1 - pr)
    g1 <- rowsum(r, g)[, 1] - (Si[1, 1] * u[, 1] + Si[1, 2] * u[, 2])
    g2 <- rowsum(r * x, g)[, 1] - (Si[2, 1] * u[, 1] + Si[2, 2] * u[, 2])
    h11 <- rowsum(w, g)[, 1] + Si[1, 1]; h12 <- rowsum(w * x, g)[, 1] + Si[1, 2]
    h22 <- rowsum(w * x * x, g)[, 1] + Si[2, 2]
    det <- h11 * h22 - h12^2
    d1 <- (h22 * g1 - h12 * g2) / det; d2 <- (h11 * g2 - h12 * g1) / det
    u <- u + cbind(d1, d2)
    if (max(abs(c(d1, d2))) < 1e-12) break
  }
  list(u = u, h11 = h11, h12 = h12, h22 = h22)  # H = -(second derivative) at (near) the mode
}
## square roots of 2x2 covariance matrices, stored as G x 4 (l11, l12, l21, l22), A = L L'
chol2 <- function(a11, a12, a22) { l11 <- sqrt(a11); l21 <- a12 / l11; l22 <- sqrt(a22 - l21^2)
  cbind(l11, 0, l21, l22) }
symsqrt2 <- function(a11, a12, a22) {          # symmetric square root
  s <- sqrt(a11 * a22 - a12^2); t <- sqrt(a11 + a22 + 2 * s)
  cbind((a11 + s) / t, a12 / t, a12 / t, (a22 + s) / t) }

## log integrand pieces for all groups x nodes; mu: G x 2, L: G x 4 (l11, l12, l21, l22)
quad_terms <- function(p, mu, L, R) {
  Si <- solve(Sigma_of(p)); ldS <- log(det(Sigma_of(p)))
  K <- length(R$logw)
  u1 <- mu[, 1] + sqrt(2) * (L[, 1] %o% R$t1 + L[, 2] %o% R$t2)     # G x K
  u2 <- mu[, 2] + sqrt(2) * (L[, 3] %o% R$t1 + L[, 4] %o% R$t2)
  e <- (p[1] + p[2] * x) + u1[g, , drop = FALSE] + u2[g, , drop = FALSE] * x   # N x K
  ll_obs <- y * e - log1p(exp(-abs(e))) - pmax(e, 0)                # log p(y | e)
  ll_g <- rowsum(ll_obs, g)                                         # G x K
  quadf <- Si[1, 1] * u1^2 + 2 * Si[1, 2] * u1 * u2 + Si[2, 2] * u2^2
  lphi <- -log(2 * pi) - 0.5 * ldS - 0.5 * quadf
  tt <- matrix(R$t1^2 + R$t2^2, G, K, byrow = TRUE)
  a <- ll_g + lphi + tt + matrix(R$logw, G, K, byrow = TRUE)
  list(a = a, u1 = u1, u2 = u2)
}
lse_rows <- function(a) { m <- apply(a, 1, max); m + log(rowSums(exp(a - m))) }
loglik_from <- function(a, L) sum(log(2) + log(abs(L[, 1] * L[, 4] - L[, 2] * L[, 3])) + lse_rows(a))

## non-adaptive rule on N(0, Sigma): mu = 0, L = chol(Sigma) for every group
ll_nonadaptive <- function(p, Q) {
  C <- t(chol(Sigma_of(p))); if (any(!is.finite(C))) return(-Inf)
  L <- matrix(c(C[1, 1], 0, C[2, 1], C[2, 2]), G, 4, byrow = TRUE)
  loglik_from(quad_terms(p, matrix(0, G, 2), L, rule(Q))$a, L)
}
ll_mcaghq <- function(p, Q) {
  md <- modes(p)
  ## posterior covariance approx = H^-1; its lower Cholesky
  det <- md$h11 * md$h22 - md$h12^2
  L <- chol2(md$h22 / det, -md$h12 / det, md$h11 / det)
  loglik_from(quad_terms(p, md$u, L, rule(Q))$a, L)
}
ll_mvaghq <- function(p, Q, tol = 1e-13, maxit = 500, details = FALSE, root = chol2) {
  md <- modes(p)
  det <- md$h11 * md$h22 - md$h12^2
  mu <- md$u; L <- chol2(md$h22 / det, -md$h12 / det, md$h11 / det)
  R <- rule(Q)
  for (it in 1:maxit) {
    qt <- quad_terms(p, mu, L, R)
    w <- exp(qt$a - apply(qt$a, 1, max)); w <- w / rowSums(w)
    m1 <- rowSums(w * qt$u1); m2 <- rowSums(w * qt$u2)
    v11 <- rowSums(w * (qt$u1 - m1)^2); v22 <- rowSums(w * (qt$u2 - m2)^2)
    v12 <- rowSums(w * (qt$u1 - m1) * (qt$u2 - m2))
    Ln <- root(v11, v12, v22)
    ch <- max(abs(c(m1 - mu[, 1], m2 - mu[, 2], Ln - L)))
    mu <- cbind(m1, m2); L <- Ln
    if (ch < tol) break
  }
  ll <- loglik_from(quad_terms(p, mu, L, R)$a, L)
  if (details) list(ll = ll, iterations = it, change = ch) else ll
}
ll_laplace <- function(p) {
  md <- modes(p)
  Si <- solve(Sigma_of(p))
  e <- p[1] + p[2] * x + md$u[g, 1] + md$u[g, 2] * x
  llc <- sum(y * e - log1p(exp(-abs(e))) - pmax(e, 0))
  pen <- -0.5 * sum((md$u %*% Si) * md$u) - G * (log(2 * pi) + 0.5 * log(det(Sigma_of(p))))
  ## recompute curvature at the converged mode
  pr <- plogis(e); w <- pr * (1 - pr)
  h11 <- rowsum(w, g)[, 1] + Si[1, 1]; h12 <- rowsum(w * x, g)[, 1] + Si[1, 2]
  h22 <- rowsum(w * x * x, g)[, 1] + Si[2, 2]
  llc + pen + G * log(2 * pi) - 0.5 * sum(log(h11 * h22 - h12^2))
}

maximise <- function(f, start_nat) {
  obj <- function(u) { v <- f(to_nat(u)); if (!is.finite(v)) 1e100 else -v }
  u <- from_nat(start_nat)
  o <- nlminb(u, obj, control = list(eval.max = 3000, iter.max = 2000, rel.tol = 1e-14, x.tol = 1e-12))
  o2 <- optim(o$par, obj, method = "BFGS", control = list(maxit = 1000, reltol = 1e-15, ndeps = rep(1e-5, 5)))
  best <- if (o2$value < o$objective) o2$par else o$par
  list(nat = to_nat(best), loglik = -min(o$objective, o2$value))
}
nat_se <- function(f, nat) {
  H <- numDeriv::hessian(f, nat, method.args = list(eps = 1e-4, d = 1e-3, r = 6))
  V <- solve(-H)
  list(V = V, se = sqrt(diag(V)), grad = numDeriv::grad(f, nat))
}

## ---- lme4 Laplace ------------------------------------------------------------------
fits <- lapply(c("bobyqa", "Nelder_Mead"), function(o)
  glmer(y ~ x + (x | g), data = dat, family = binomial, nAGQ = 1,
        control = glmerControl(optimizer = o, optCtrl = list(maxfun = 1e5))))
m_lap <- fits[[which.max(sapply(fits, logLik))]]
vc <- VarCorr(m_lap)$g
lap_nat_lme4 <- c(fixef(m_lap)[1], fixef(m_lap)[2], vc[1, 1], vc[1, 2], vc[2, 2])
names(lap_nat_lme4) <- NULL

## ---- fits ---------------------------------------------------------------------------
t0 <- proc.time()[3]
stage1 <- maximise(function(p) ll_mcaghq(p, 30), lap_nat_lme4)
cat(sprintf("stage 1 (mcaghq 30x30): ll = %.10f  [%.0fs]\n", stage1$loglik, proc.time()[3] - t0))
exact <- maximise(function(p) ll_nonadaptive(p, 60), stage1$nat)
cat(sprintf("exact (60x60 non-adaptive): ll = %.10f  [%.0fs]\n", exact$loglik, proc.time()[3] - t0))
mv7 <- maximise(function(p) ll_mvaghq(p, 7), exact$nat)
cat(sprintf("mvaghq7: ll = %.10f\n", mv7$loglik))
mc7 <- maximise(function(p) ll_mcaghq(p, 7), exact$nat)
cat(sprintf("mcaghq7: ll = %.10f\n", mc7$loglik))
lap <- maximise(ll_laplace, lap_nat_lme4)
cat(sprintf("laplace: own ll = %.10f, lme4 ll = %.10f\n", lap$loglik, as.numeric(logLik(m_lap))))

## accuracy checks of the brute-force rule at its optimum
acc <- list(
  nonadaptive60_minus_nonadaptive80_at_optimum = ll_nonadaptive(exact$nat, 60) - ll_nonadaptive(exact$nat, 80),
  nonadaptive60_minus_nonadaptive40_at_optimum = ll_nonadaptive(exact$nat, 60) - ll_nonadaptive(exact$nat, 40),
  nonadaptive60_minus_mvaghq30_at_optimum = ll_nonadaptive(exact$nat, 60) - ll_mvaghq(exact$nat, 30),
  nonadaptive60_minus_mcaghq30_at_optimum = ll_nonadaptive(exact$nat, 60) - ll_mcaghq(exact$nat, 30),
  mcaghq30_optimum_minus_exact = stage1$loglik - exact$loglik,
  mcaghq30_optimum_max_rel_diff_params = max(abs(stage1$nat - exact$nat) / pmax(abs(exact$nat), 1e-8)))
print(acc)

## ---- JSON --------------------------------------------------------------------------
ll_fixed_only <- as.numeric(logLik(glm(y ~ x, family = binomial, data = dat)))
write_glmm_case <- function(id, stata, reference, intpoints, intmethod, fit, f, notes, checks) {
  s <- nat_se(f, fit$nat)
  p <- fit$nat; se <- s$se
  ## Stata order: x, _cons ; random terms x, _cons
  Vb <- s$V[1:2, 1:2]
  wald <- p[2]^2 / Vb[2, 2]
  k <- 5
  x <- list(
    id = id, class = "glmm", dataset = DATA_FILE,
    dataset_path = file.path(OUT, DATA_FILE),
    dataset_origin = "simulated by tests/references/glmm_slopes/make.R (set.seed(20251125)): 100 groups g of 6-14 obs, x ~ N(0,1) rounded to 4 dp, y ~ Bernoulli(logit^-1(-0.4 + 0.9 x + u0_g + u1_g x)), (u0, u1) ~ N(0, [[1, .21], [.21, .49]])",
    subset = NULL, stata = stata, lme4 = "y ~ x + (x | g)",
    reference = paste0(reference, " (", VERS, ")"),
    options = list(method = "ml", family = "bernoulli", link = "logit",
                   intpoints = intpoints, intmethod = intmethod, residuals = NULL),
    results = list(
      loglik = fit$loglik,
      fixed = list(names = I(c("x", "_cons")), coef = c(p[2], p[1]), se = c(se[2], se[1])),
      random = list(list(level = "g", terms = I(c("x", "_cons")),
                         cov = matrix(c(p[5], p[4], p[4], p[3]), 2),
                         se = matrix(c(se[5], se[4], se[4], se[3]), 2))),
      residual = NULL,
      extra = list(AIC = -2 * fit$loglik + 2 * k, BIC = -2 * fit$loglik + k * log(N), k = k, N = N,
                   n_groups = list(g = G), wald_chi2 = wald, wald_df = 1,
                   lr_chi2 = 2 * (fit$loglik - ll_fixed_only), lr_df = 3,
                   ll_fixed_only = ll_fixed_only,
                   corr_x_cons = p[4] / sqrt(p[3] * p[5]))),
    tolerance = default_tolerance(),
    notes = notes,
    checks = c(checks, list(max_abs_gradient_natural = max(abs(s$grad)))))
  write_case(x, file.path(OUT, paste0(id, ".json")))
  cat(sprintf("%-40s ll = %.8f\n", id, fit$loglik))
}
COMMON <- paste("Data: tests/references/glmm_slopes/glmm_slopes_sim.csv (not in tests/data).",
                "random[0].cov is [[var(x), cov(x,_cons)], [cov(x,_cons), var(_cons)]] (Stata order); SEs from the observed",
                "information of the (approximated) log likelihood in this metric. lr_chi2 is against the fixed-effects logit",
                "(extra.ll_fixed_only), lr_df = 3.")
rel <- function(a, b) max(abs(a - b) / pmax(abs(b), 1e-8))
write_glmm_case("glmm_slopes_logit_rs_un_exact",
                "melogit y x || g: x, covariance(unstructured) intpoints(30)",
                "own brute-force non-adaptive 60x60 Gauss-Hermite product rule on N(0, Sigma) (integral accurate to ~1e-7 here, see checks), maximised with nlminb + BFGS from the optimum of an own mode-curvature adaptive 30x30 rule",
                30L, "mvaghermite", exact, function(p) ll_nonadaptive(p, 60),
                paste("Reference for the converged integral: any sufficiently accurate rule (e.g. Stata intpoints(30), adaptive)",
                      "must reproduce it; checks give the rule's error at the optimum against adaptive 20/30-point and",
                      "non-adaptive 40/60/80-point rules. Stata's default 7-point mean-variance rule gives a loglik about 1.5e-3 above",
                      "this exact value here (case glmm_slopes_logit_rs_un_mvaghq7), so the two cases differ by more than loglik_abs.", COMMON),
                c(acc, list(mvaghq7_optimum_minus_exact = mv7$loglik - exact$loglik,
                            laplace_optimum_minus_exact = lap$loglik - exact$loglik)))
write_glmm_case("glmm_slopes_logit_rs_un_mvaghq7",
                "melogit y x || g: x, covariance(unstructured)",
                "own mean-variance adaptive 7x7 Gauss-Hermite (Stata default mvaghermite, intpoints(7)), nodes at the posterior mean rotated by the lower Cholesky factor of the posterior covariance, iterated to a fixed point (tol 1e-13); nlminb + BFGS",
                7L, "mvaghermite", mv7, function(p) ll_mvaghq(p, 7),
                paste("Stata's default integration for melogit with 2 random effects: 7 points per dimension (49 nodes),",
                      "mean-variance adaptive. The product rule is rotated by the lower Cholesky factor of the posterior",
                      "covariance (another square root changes a 7-point rule's value slightly: see checks).", COMMON),
                list(exact_optimum_minus_mvaghq7 = exact$loglik - mv7$loglik,
                     max_rel_diff_params_vs_exact = rel(mv7$nat, exact$nat),
                     mcaghq7_optimum_minus_mvaghq7 = mc7$loglik - mv7$loglik,
                     symmetric_sqrt_rule_minus_cholesky_rule_at_optimum =
                       ll_mvaghq(mv7$nat, 7, root = symsqrt2) - mv7$loglik,
                     fixed_point_iterations_at_optimum = ll_mvaghq(mv7$nat, 7, details = TRUE)$iterations))
write_glmm_case("glmm_slopes_logit_rs_un_mcaghq7",
                "melogit y x || g: x, covariance(unstructured) intmethod(mcaghermite)",
                "own mode-curvature adaptive 7x7 Gauss-Hermite (Stata intmethod(mcaghermite) intpoints(7)), nodes at the conditional mode rotated by the lower Cholesky factor of the inverse negative Hessian; nlminb + BFGS",
                7L, "mcaghermite", mc7, function(p) ll_mcaghq(p, 7),
                paste("Mode-curvature adaptive quadrature (as lme4's nAGQ > 1 for a scalar random effect and GLMMadaptive's nAGQ).", COMMON),
                list(exact_optimum_minus_mcaghq7 = exact$loglik - mc7$loglik,
                     max_rel_diff_params_vs_exact = rel(mc7$nat, exact$nat)))
write_glmm_case("glmm_slopes_logit_rs_un_laplace",
                "melogit y x || g: x, covariance(unstructured) intmethod(laplace)",
                "lme4 glmer(y ~ x + (x | g), family = binomial, nAGQ = 1), best of bobyqa/Nelder_Mead, polished by own Laplace implementation (nlminb + BFGS)",
                1L, "laplace", if (lap$loglik >= as.numeric(logLik(m_lap))) lap else list(nat = lap_nat_lme4, loglik = as.numeric(logLik(m_lap))),
                ll_laplace,
                paste("Laplace approximation (mode-curvature, 1 point). SEs from the numerical Hessian of the Laplace log likelihood",
                      "(lme4's vcov uses a finite-difference Hessian of its deviance and agrees to ~1e-4 relative).", COMMON),
                list(lme4_loglik = as.numeric(logLik(m_lap)),
                     own_laplace_at_lme4_estimates_minus_lme4 = ll_laplace(lap_nat_lme4) - as.numeric(logLik(m_lap)),
                     own_optimum_minus_lme4 = lap$loglik - as.numeric(logLik(m_lap)),
                     max_rel_diff_params_vs_lme4 = rel(lap$nat, lap_nat_lme4),
                     lme4_fixed_se = unname(sqrt(diag(as.matrix(vcov(m_lap))))[c(2, 1)]),
                     exact_optimum_minus_laplace = exact$loglik - lap$loglik))
