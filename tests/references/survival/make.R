# Reference values for mestreg's survival families (tests/test_survival.py):
# survival::survreg fits of the models without random effects (the fixed-only models that
# start mestreg and give its LR test) on tests/data/surv_weibull_sim7.csv.
# Run from the repository root:  Rscript tests/references/survival/make.R
library(survival)
library(jsonlite)
d <- read.csv("tests/data/surv_weibull_sim7.csv")
out <- list(provenance = list(R = R.version.string, survival = as.character(packageVersion("survival")),
                              date = as.character(Sys.Date()),
                              note = "survreg AFT coefficients; log-likelihood on the time scale (with the -log t Jacobian), as Stata's streg"))
for (dist in c("weibull", "exponential", "lognormal", "loglogistic")) {
  f <- survreg(Surv(time, died) ~ x + z, data = d, dist = dist)
  out[[dist]] <- list(coef = unname(coef(f)), names = names(coef(f)), loglik = f$loglik[2],
                      log_scale = log(f$scale), se = unname(sqrt(diag(vcov(f)))[1:3]))
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/references/survival/survreg.json")

# ---------------------------------------------------------------------------------------------
# Generalized gamma (Stata's distribution(gamma)) and delayed entry / multiple records, with and
# without a random intercept.  No R package here fits these (flexsurv is not in Debian and has no
# random effects; survreg has no left truncation), so the log likelihoods are written out below
# and maximised directly (nlminb, then numDeriv::hessian for the SEs).  Checks of the code against
# survreg are stored under "checks".
source("tests/references/common.R")

# Log likelihood of each record (time t, failure d, entry t0: 0 = none) at linear predictor eta
# (a matrix: records x quadrature nodes).  Stata's streg/mestreg: ln f(t)^d S(t)^(1-d) - ln S(t0).
rec_weibull_ph <- function(t, d, t0, eta, lnp) {
  p <- exp(lnp)
  d * (lnp + (p - 1) * log(t) + eta) - t^p * exp(eta) + t0^p * exp(eta)
}
rec_lognormal <- function(t, d, t0, eta, lnsigma) {
  s <- exp(lnsigma); z <- (log(t) - eta) / s
  ll <- ifelse(matrix(d > 0, nrow(eta), ncol(eta)), dnorm(z, log = TRUE) - lnsigma - log(t), pnorm(-z, log.p = TRUE))
  late <- t0 > 0
  ll[late, ] <- ll[late, , drop = FALSE] - pnorm(-(log(t0[late]) - eta[late, , drop = FALSE]) / s, log.p = TRUE)
  ll
}
# generalized gamma ([ST] streg, Methods and formulas): w = (ln t - eta)/sigma, g = 1/kappa^2,
# u = g exp(kappa w); f = g^g / (sigma t sqrt(g) Gamma(g)) exp(kappa g w - u),
# S = 1 - I(g, u) for kappa > 0, I(g, u) for kappa < 0 (I: regularized lower incomplete gamma)
gg_lnS <- function(w, kappa) {
  g <- 1 / kappa^2
  pgamma(g * exp(kappa * w), shape = g, lower.tail = kappa < 0, log.p = TRUE)
}
rec_gengamma <- function(t, d, t0, eta, logs, kappa) {
  s <- exp(logs); g <- 1 / kappa^2; w <- (log(t) - eta) / s
  # the same, with g ln g - ln g / 2 - g - lgamma(g) by Stirling's series for g > 30 and
  # g (e^v - 1 - v) as (expm1(v) - v)/kappa^2, so that small kappa loses no digits
  cg <- if (g > 30) -0.5 * log(2 * pi) - 1 / (12 * g) + 1 / (360 * g^3) - 1 / (1260 * g^5) else
    g * log(g) - 0.5 * log(g) - g - lgamma(g)
  v <- kappa * w
  lnf <- -logs - log(t) + cg - (expm1(v) - v) / kappa^2
  ll <- ifelse(matrix(d > 0, nrow(eta), ncol(eta)), lnf, gg_lnS(w, kappa))
  late <- t0 > 0
  ll[late, ] <- ll[late, , drop = FALSE] - gg_lnS((log(t0[late]) - eta[late, , drop = FALSE]) / s, kappa)
  ll
}

# Gauss-Hermite rule for E[h(u)], u ~ N(0, 1), by Golub-Welsch
gh_rule <- function(n) {
  J <- matrix(0, n, n)
  for (i in seq_len(n - 1)) J[i, i + 1] <- J[i + 1, i] <- sqrt(i)
  e <- eigen(J, symmetric = TRUE)
  list(x = e$values, w = e$vectors[1, ]^2)
}

# Marginal log likelihood with a normal random intercept by cluster, exact by 100-point
# (non-adaptive) Gauss-Hermite; par = (beta, ancillary..., ln sd_u).  Without ln sd_u: no
# random effect.
make_loglik <- function(rec, X, t, d, t0, cluster, n_anc, points = 100) {
  rule <- gh_rule(points)
  cl <- as.integer(factor(cluster))
  function(par) {
    k <- ncol(X)
    beta <- par[1:k]; anc <- par[k + seq_len(n_anc)]
    xb <- drop(X %*% beta)
    if (length(par) == k + n_anc) {
      return(sum(do.call(rec, c(list(t, d, t0, matrix(xb, ncol = 1)), as.list(anc)))))
    }
    sd <- exp(par[length(par)])
    eta <- outer(xb, sd * rule$x, "+")
    ll <- do.call(rec, c(list(t, d, t0, eta), as.list(anc)))
    per <- rowsum(ll, cl)                                   # clusters x nodes
    m <- apply(per, 1, max)
    sum(m + log(drop(exp(per - m) %*% rule$w)))
  }
}

fit_ml <- function(ll, start) {
  f <- function(p) { v <- ll(p); if (is.finite(v)) -v else 1e10 }
  o <- nlminb(start, f, control = list(eval.max = 5000, iter.max = 3000, rel.tol = 1e-14))
  o2 <- optim(o$par, f, method = "BFGS", control = list(reltol = 1e-15, maxit = 2000))
  par <- if (o2$value < o$objective) o2$par else o$par
  for (i in 1:5) {                                          # Newton polish with numerical derivatives
    H <- numDeriv::hessian(ll, par); g <- numDeriv::grad(ll, par)
    step <- -solve(H, g)
    if (!is.finite(ll(par + step)) || ll(par + step) < ll(par)) break
    par <- par + step
  }
  H <- numDeriv::hessian(ll, par)
  V <- solve(-H)
  list(par = par, loglik = ll(par), se = sqrt(diag(V)), V = V, grad = numDeriv::grad(ll, par))
}

# results in the case layout; anc: Stata's ancillary names; the last parameter ln sd_u if random
as_results <- function(fit, names, anc, fixed_only = NULL, level = "cluster", n_groups = NULL, N = NULL) {
  k <- length(names); e <- length(anc)
  out <- list(loglik = fit$loglik,
              fixed = list(names = names, coef = fit$par[1:k], se = fit$se[1:k]),
              random = list(), residual = NULL, extra = list(N = N))
  for (i in seq_len(e)) {
    out$extra[[anc[i]]] <- fit$par[k + i]
    out$extra[[paste0("se_", anc[i])]] <- fit$se[k + i]
  }
  if (length(fit$par) > k + e) {
    lsd <- fit$par[k + e + 1]; v <- exp(2 * lsd)
    out$random <- list(list(level = level, terms = I("_cons"), cov = mat1(v),
                            se = mat1(2 * v * fit$se[k + e + 1])))
    out$extra$n_groups <- setNames(list(n_groups), level)
    if (!is.null(fixed_only)) out$extra$ll_fixed_only <- fixed_only$loglik
  }
  out
}

versions <- pkg_version_string(c("survival", "numDeriv", "jsonlite"))
cases <- list()

# --- generalized gamma on the shared simulated data (Weibull truth: kappa = 1 expected) ---------
X <- cbind(d$x, d$z, 1)
nm <- c("x", "z", "_cons")
none <- numeric(nrow(d))
sr_w <- survreg(Surv(time, died) ~ x + z, data = d, dist = "weibull")
sr_ln <- survreg(Surv(time, died) ~ x + z, data = d, dist = "lognormal")
ll_gg0 <- make_loglik(rec_gengamma, X, d$time, d$died, none, d$cluster, 2)
gg0 <- fit_ml(ll_gg0, c(coef(sr_w)[c(2, 3, 1)], log(sr_w$scale), 1))
# checks: kappa = 1 is the Weibull (sigma = survreg's scale), kappa -> 0 the lognormal
chk_w <- ll_gg0(c(coef(sr_w)[c(2, 3, 1)], log(sr_w$scale), 1)) - sr_w$loglik[2]
chk_ln <- (ll_gg0(c(coef(sr_ln)[c(2, 3, 1)], log(sr_ln$scale), 1e-5)) +
           ll_gg0(c(coef(sr_ln)[c(2, 3, 1)], log(sr_ln$scale), -1e-5))) / 2 - sr_ln$loglik[2]
ll_gg <- make_loglik(rec_gengamma, X, d$time, d$died, none, d$cluster, 2)
gg <- fit_ml(ll_gg, c(gg0$par, log(0.3)))
chk_pts <- ll_gg(gg$par) - make_loglik(rec_gengamma, X, d$time, d$died, none, d$cluster, 2, 150)(gg$par)
cases$surv_gamma_sim7 <- list(
  id = "surv_gamma_sim7", class = "surv", dataset = "surv_weibull_sim7.csv",
  stata = "mestreg x z || cluster:, distribution(gamma)",
  reference = paste("direct ML in R: generalized gamma log likelihood with pgamma(log.p = TRUE), random intercept",
                    "integrated by 100-point Gauss-Hermite; nlminb + BFGS, numDeriv Hessian;", versions),
  options = list(stset = "stset time, failure(died)", metric = "aft"),
  results = as_results(gg, nm, c("logs", "kappa"), gg0, n_groups = 60, N = nrow(d)),
  fixed_only = as_results(gg0, nm, c("logs", "kappa"), N = nrow(d)),
  tolerance = default_tolerance(),
  checks = list(loglik_kappa1_minus_survreg_weibull = chk_w, loglik_kappa_pm1e5_mean_minus_survreg_lognormal = chk_ln,
                loglik_100_minus_150_points = chk_pts, max_abs_gradient = max(abs(gg$grad)),
                max_abs_gradient_fixed_only = max(abs(gg0$grad))))

# --- delayed entry and multiple records: simulated data ------------------------------------------
# 50 clusters x 6 subjects; Weibull PH hazard h = p t^(p-1) exp(-1.6 + 0.5 x - 0.4 z + u), p = 1.2,
# u ~ N(0, 0.5^2) by cluster; subject entry e ~ U(0, 2); T drawn given T > e (and u);
# censoring at e + Exp(rate 0.15).  Follow-up (e, time] is split into one-unit records
# (e, e+1], (e+1, e+2], ... with xt = 1 from the second record on (a time-varying covariate
# without effect); the failure is on the last record.
set.seed(20261205)
G <- 50; m <- 6; n <- G * m; p <- 1.2
cluster <- rep(seq_len(G), each = m)
u <- rnorm(G, 0, 0.5)[cluster]
x <- rbinom(n, 1, 0.5); z <- round(rnorm(n), 10)
e <- round(runif(n, 0, 2), 6)
lp <- -1.6 + 0.5 * x - 0.4 * z + u
Tt <- (e^p - log(runif(n)) / exp(lp))^(1 / p)         # S(T)/S(e) = U
C <- e + rexp(n, 0.15)
time <- signif(pmin(Tt, C), 12); died <- as.integer(Tt <= C)
recs <- do.call(rbind, lapply(seq_len(n), function(i) {
  cuts <- unique(c(seq(e[i], time[i], by = 1), time[i]))
  k <- length(cuts) - 1
  data.frame(cluster = cluster[i], id = i, x = x[i], z = z[i], enter = e[i],
             tstart = cuts[1:k], time = cuts[-1], died = c(rep(0L, k - 1), died[i]),
             xt = c(0L, rep(1L, k - 1)))
}))
recs <- recs[recs$time > recs$tstart, ]
write.csv(recs, "tests/references/survival/surv_entry_sim.csv", row.names = FALSE)
subj <- data.frame(cluster, id = seq_len(n), x, z, enter = e, time, died)

# check: the truncated likelihood with t0 = 0 is survreg's
chk_t0 <- list(
  weibull = make_loglik(rec_weibull_ph, cbind(subj$x, subj$z, 1), subj$time, subj$died, numeric(n), subj$cluster, 1)(
    {s <- survreg(Surv(time, died) ~ x + z, data = subj, dist = "weibull"); c(-coef(s)[c(2, 3, 1)] / s$scale, -log(s$scale))}) -
    survreg(Surv(time, died) ~ x + z, data = subj, dist = "weibull")$loglik[2],
  lognormal = make_loglik(rec_lognormal, cbind(subj$x, subj$z, 1), subj$time, subj$died, numeric(n), subj$cluster, 1)(
    {s <- survreg(Surv(time, died) ~ x + z, data = subj, dist = "lognormal"); c(coef(s)[c(2, 3, 1)], log(s$scale))}) -
    survreg(Surv(time, died) ~ x + z, data = subj, dist = "lognormal")$loglik[2])

entry_case <- function(id, data, Xn, rec, anc, start, stata, stset, note) {
  Xm <- cbind(as.matrix(data[, Xn, drop = FALSE]), 1)
  t0 <- if ("tstart" %in% names(data)) data$tstart else data$enter
  f0 <- fit_ml(make_loglik(rec, Xm, data$time, data$died, t0, data$cluster, length(anc)), start)
  ll <- make_loglik(rec, Xm, data$time, data$died, t0, data$cluster, length(anc))
  f <- fit_ml(ll, c(f0$par, log(0.4)))
  list(id = id, class = "surv", dataset = "tests/references/survival/surv_entry_sim.csv", stata = stata,
       reference = paste("direct ML in R: record-by-record left-truncated likelihood (ln f(t)^d S(t)^(1-d) - ln S(t0),",
                         "conditional on the random intercept), 100-point Gauss-Hermite; nlminb + BFGS, numDeriv Hessian;",
                         versions),
       options = list(stset = stset, metric = if (identical(rec, rec_weibull_ph)) "ph" else "aft", data = note),
       results = as_results(f, c(Xn, "_cons"), anc, f0, n_groups = length(unique(data$cluster)), N = nrow(data)),
       fixed_only = as_results(f0, c(Xn, "_cons"), anc, N = nrow(data)),
       tolerance = default_tolerance(),
       checks = list(max_abs_gradient = max(abs(f$grad)), max_abs_gradient_fixed_only = max(abs(f0$grad)),
                     loglik_100_minus_150_points = ll(f$par) - make_loglik(rec, Xm, data$time, data$died, t0,
                                                                           data$cluster, length(anc), 150)(f$par)))
}
cases$surv_entry_weibull_records <- entry_case(
  "surv_entry_weibull_records", recs, c("x", "z", "xt"), rec_weibull_ph, "ln_p", c(0, 0, 0, -1.5, 0),
  "mestreg x z xt || cluster:, distribution(weibull)", "stset time, id(id) failure(died) enter(time enter)",
  "all records; _t0 = tstart")
cases$surv_entry_lognormal_records <- entry_case(
  "surv_entry_lognormal_records", recs, c("x", "z", "xt"), rec_lognormal, "lnsigma", c(0, 0, 0, 1, 0),
  "mestreg x z xt || cluster:, distribution(lognormal)", "stset time, failure(died) time0(tstart)",
  "all records; _t0 = tstart")
cases$surv_entry_gamma_subjects <- entry_case(
  "surv_entry_gamma_subjects", subj, c("x", "z"), rec_gengamma, c("logs", "kappa"), c(0, 0, 1, 0, 1),
  "mestreg x z || cluster:, distribution(gamma)", "stset time, failure(died) enter(time enter)",
  "one record per subject: first record's enter, last record's time and died")

# ln S and ln f of the standardized generalized gamma (sigma = 1, eta = 0, t = e^w) on a grid of
# kappa (both signs, near 0 where gamma = 1/kappa^2 is huge, and large) and w (both tails)
grid <- expand.grid(kappa = c(-2, -0.5, -0.1, -0.01, -0.003, -1e-3, -1e-4, 1e-4, 1e-3, 0.003, 0.01, 0.1, 0.5, 1, 2),
                    w = c(-8, -5, -3, -1, 0, 0.5, 1, 2, 3, 5, 8, 12))
grid$lnS <- mapply(gg_lnS, grid$w, grid$kappa)
grid$lnf <- mapply(function(w, k) rec_gengamma(exp(w), 1, 0, matrix(0), 0, k)[1, 1], grid$w, grid$kappa)
out2 <- list(provenance = list(R = R.version.string, versions = versions, date = as.character(Sys.Date())),
             checks = list(entry_t0_zero_minus_survreg = chk_t0), cases = unname(cases),
             gengamma_grid = list(kappa = grid$kappa, w = grid$w, lnS = grid$lnS, lnf = grid$lnf))
write_case(out2, "tests/references/survival/gamma_entry.json")
