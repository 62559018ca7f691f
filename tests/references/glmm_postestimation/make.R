## GLMM postestimation references: predict (mu, eta, xb, pearson, deviance, anscombe,
## ebmodes / ebmeans with SDs, marginal) and estat icc, for tests/test_glmm_postestimation.py.
## Run from the repository root:  Rscript tests/references/glmm_postestimation/make.R
##
## Sources of each number (all independent of the Python code):
##  * ebmodes, their SDs, conditional mu / eta, fixed-only xb, Pearson and deviance residuals:
##    lme4 (ranef(condVar = TRUE), predict(type = "response" / "link", re.form = NA),
##    residuals(type = "pearson" / "deviance")) on a Laplace fit (nAGQ = 1) whose optimum is
##    polished with nlminb on lme4's own deviance function (modular API, ?modular);
##    ordinal::clmm (ranef, condVar) for the ordinal model.
##  * ebmeans and posterior SDs: R's integrate() of the posterior of each group's effect
##    (one-dimensional, the integrand rescaled at the mode) at the stated parameters.
##  * marginal means: integrate() of g^{-1}(xb + s t) phi(t) dt per observation (s^2 the
##    sum of the random-effect variances), or the closed form exp(xb + s^2/2) for log links.
##  * Anscombe residuals: the definition A(y) = int_0^y V(t)^{-1/3} dt by integrate(),
##    r = (A(y) - A(mu)) / V(mu)^{1/6}.
##  * ICC: var / (var + pi^2/3); SE by the delta method from the inverse numerical Hessian
##    (numDeriv) of lme4's deviance in Stata's metric (beta, log sd); clmm's vcov (log sd).
source("tests/references/common.R")
suppressPackageStartupMessages({ library(lme4); library(ordinal) })
OUT <- file.path(REF_ROOT, "glmm_postestimation")
VERS <- pkg_version_string(c("lme4", "Matrix", "ordinal", "numDeriv", "jsonlite"))

## A glmer fit by the modular API, optimum polished on lme4's deviance (pars = c(theta, beta)).
polished <- function(formula, data, family, nAGQ = 1) {
  mod <- glFormula(formula, data = data, family = family)
  ## PIRLS to 1e-12: at lme4's default tolPwrss (1e-7) the Laplace value is off by up to 3e-4
  devfun <- do.call(mkGlmerDevfun, c(mod, list(control = glmerControl(tolPwrss = 1e-12))))
  opt <- optimizeGlmer(devfun)
  devfun <- updateGlmerDevfun(devfun, mod$reTrms, nAGQ = nAGQ)
  opt <- optimizeGlmer(devfun, stage = 2)
  nth <- length(getME(mkMerMod(environment(devfun), opt, mod$reTrms, fr = mod$fr), "theta"))
  lower <- c(rep(0, nth), rep(-Inf, length(opt$par) - nth))
  o <- nlminb(opt$par, devfun, lower = lower,
              control = list(rel.tol = 1e-14, x.tol = 1e-12, eval.max = 5000, iter.max = 2000))
  if (o$objective > opt$fval) o <- list(par = opt$par, objective = opt$fval)
  dev <- devfun(o$par)                           # leave the environment at the optimum
  m <- mkMerMod(environment(devfun), list(par = o$par, fval = dev, conv = 0, message = "polished"),
                mod$reTrms, fr = mod$fr)
  list(m = m, devfun = devfun, par = o$par, nth = nth)
}

## central-difference Hessian (lme4's PIRLS can fail at numDeriv's Richardson steps)
hess <- function(f, x, h) {
  n <- length(x); H <- matrix(0, n, n); f0 <- f(x)
  for (i in 1:n) for (j in i:n) {
    ei <- replace(numeric(n), i, h); ej <- replace(numeric(n), j, h)
    H[i, j] <- H[j, i] <- if (i == j) (f(x + ei) - 2 * f0 + f(x - ei)) / h^2 else
      (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h^2)
  }
  H
}

## Delta-method SE of the ICC from the Hessian of -deviance/2 in (log sd, beta).
icc_delta <- function(fit, resid_var, which_cons) {
  nth <- fit$nth
  phi0 <- c(log(fit$par[1:nth]), fit$par[-(1:nth)])
  ll <- function(p) -0.5 * fit$devfun(c(exp(p[1:nth]), p[-(1:nth)]))
  H <- hess(ll, phi0, h = 2e-3)
  V <- solve(-H)
  rho <- function(p, j) { v <- exp(2 * p[1:nth]); sum(v[which_cons[1:j]]) / (sum(v) + resid_var) }
  out <- list()
  for (j in seq_len(nth)) {
    g <- numDeriv::grad(function(p) rho(p, j), phi0)
    fit$devfun(fit$par)
    out[[j]] <- list(icc = rho(phi0, j), se = sqrt(drop(t(g) %*% V %*% g)))
  }
  out
}

## posterior mean and SD of a scalar effect b ~ N(0, s^2) given log f(y | b) = lf(b)
posterior <- function(lf, s) {
  lp <- function(b) lf(b) + dnorm(b, 0, s, log = TRUE)
  mode <- optimize(function(b) -lp(b), c(-10 * s - 5, 10 * s + 5), tol = 1e-12)$minimum
  c0 <- lp(mode)
  f <- function(b, k) vapply(b, function(v) v^k * exp(lp(v) - c0), 0)
  w <- 20 * s + 10
  I0 <- integrate(f, mode - w, mode + w, k = 0, rel.tol = 1e-12, subdivisions = 2000)$value
  m <- integrate(f, mode - w, mode + w, k = 1, rel.tol = 1e-12, subdivisions = 2000)$value / I0
  m2 <- integrate(f, mode - w, mode + w, k = 2, rel.tol = 1e-12, subdivisions = 2000)$value / I0
  c(mean = m, sd = sqrt(m2 - m^2))
}
marginal_mean <- function(xb, s, invlink) vapply(xb, function(e)
  integrate(function(t) invlink(e + s * t) * dnorm(t), -Inf, Inf, rel.tol = 1e-12)$value, 0)
anscombe <- function(y, mu, V) {
  A <- function(v) if (v == 0) 0 else integrate(function(t) V(t)^(-1/3), 0, v, rel.tol = 1e-12)$value
  (vapply(y, A, 0) - vapply(mu, A, 0)) / V(mu)^(1/6)
}
re1 <- function(m) { r <- ranef(m, condVar = TRUE)[[1]]
  list(groups = rownames(r), mode = r[, 1], sd = sqrt(attr(r, "postVar")[1, 1, ])) }

cases <- list()

## ---- 1. bangladesh (Contraception) logit, random intercept -------------------------------
b <- read_data("bangladesh.csv"); b$district <- factor(b$district)
form <- c_use ~ urban + age + child1 + child2 + child3 + (1 | district)
f1 <- polished(form, b, binomial, nAGQ = 1)
m1 <- f1$m
r1 <- re1(m1)
y <- b$c_use; mu <- fitted(m1)
cases$bangladesh_laplace <- list(
  stata = "melogit c_use urban age child1 child2 child3 || district:, intmethod(laplace)",
  r = "glmer(c_use ~ urban + age + child1 + child2 + child3 + (1 | district), binomial, nAGQ = 1), polished",
  loglik = as.numeric(logLik(m1)), beta = unname(fixef(m1)), sd = unname(f1$par[1]),
  groups = r1$groups, ebmodes = r1$mode, ebmodes_sd = r1$sd,
  mu = unname(predict(m1, type = "response")), eta = unname(predict(m1, type = "link")),
  xb = unname(predict(m1, re.form = NA, type = "link")),
  mu_fixedonly = unname(predict(m1, re.form = NA, type = "response")),
  pearson = unname(residuals(m1, type = "pearson")), deviance = unname(residuals(m1, type = "deviance")),
  anscombe = anscombe(y, mu, function(t) t * (1 - t)))
## converged ML (25-point adaptive quadrature): ebmeans, marginal, ICC
f25 <- polished(form, b, binomial, nAGQ = 25)
s <- f25$par[1]; beta <- f25$par[-1]
X <- getME(f25$m, "X"); xb <- drop(X %*% beta)
post <- t(sapply(levels(b$district), function(d) { i <- b$district == d
  posterior(function(u) sum(dbinom(y[i], 1, plogis(xb[i] + u), log = TRUE)), s) }))
ic <- icc_delta(f25, pi^2 / 3, 1)
cases$bangladesh_aghq25 <- list(
  stata = "melogit c_use urban age child1 child2 child3 || district:, intpoints(25)",
  r = "glmer(..., nAGQ = 25), polished; ebmeans by integrate(); marginal by integrate()",
  loglik = -0.5 * f25$devfun(f25$par), beta = unname(beta), sd = unname(s),
  groups = levels(b$district), ebmeans = unname(post[, "mean"]), ebmeans_sd = unname(post[, "sd"]),
  marginal_mu = marginal_mean(xb, s, plogis), icc = ic[[1]]$icc, icc_se = ic[[1]]$se)

## ---- 2. three-level logit (simulated; pupils in classes in schools), Laplace -------------
set.seed(20251126)
S <- 40; C <- 4; P <- 10
school <- rep(1:S, each = C * P); class <- rep(1:(S * C), each = P)
x <- round(rnorm(S * C * P), 4)
eta <- -0.3 + 0.6 * x + rnorm(S, 0, sqrt(0.6))[school] + rnorm(S * C, 0, sqrt(0.35))[class]
sim <- data.frame(school = school, class = class, x = x, y = rbinom(S * C * P, 1, plogis(eta)))
write.csv(sim, file.path(OUT, "glmm_nested_sim.csv"), row.names = FALSE)
sim <- read.csv(file.path(OUT, "glmm_nested_sim.csv"))
sim$school <- factor(sim$school); sim$class <- factor(sim$class)
f2 <- polished(y ~ x + (1 | school / class), sim, binomial, nAGQ = 1)
## lme4 orders terms by number of levels: theta = (class:school, school)
ic2 <- icc_delta(f2, pi^2 / 3, c(2, 1))
rr2 <- ranef(f2$m, condVar = TRUE)
cases$nested_logit_laplace <- list(
  stata = "melogit y x || school: || class:, intmethod(laplace)",
  r = "glmer(y ~ x + (1 | school/class), binomial, nAGQ = 1), polished",
  dataset_path = "tests/references/glmm_postestimation/glmm_nested_sim.csv",
  loglik = as.numeric(logLik(f2$m)), beta = unname(fixef(f2$m)),
  var_school = f2$par[2]^2, var_class = f2$par[1]^2,
  icc_school = ic2[[1]]$icc, icc_school_se = ic2[[1]]$se,
  icc_class = ic2[[2]]$icc, icc_class_se = ic2[[2]]$se,
  school_ebmodes = rr2$school[, 1], school_ebmodes_sd = sqrt(attr(rr2$school, "postVar")[1, 1, ]),
  class_groups = sub(":.*", "", rownames(rr2[["class:school"]])),
  class_ebmodes = rr2[["class:school"]][, 1],
  class_ebmodes_sd = sqrt(attr(rr2[["class:school"]], "postVar")[1, 1, ]),
  mu = unname(predict(f2$m, type = "response")))

## ---- 3. cbpp binomial with trials, Laplace ------------------------------------------------
cb <- read_data("cbpp.csv"); cb$herd <- factor(cb$herd); cb$period <- factor(cb$period)
f3 <- polished(cbind(incidence, size - incidence) ~ period + (1 | herd), cb, binomial, nAGQ = 1)
m3 <- f3$m; r3 <- re1(m3)
p3 <- unname(predict(m3, type = "response")); n3 <- cb$size
s3 <- f3$par[1]; xb3 <- unname(predict(m3, re.form = NA, type = "link"))
post3 <- t(sapply(levels(cb$herd), function(h) { i <- cb$herd == h
  posterior(function(u) sum(dbinom(cb$incidence[i], n3[i], plogis(xb3[i] + u), log = TRUE)), s3) }))
cases$cbpp_laplace <- list(
  stata = "melogit incidence i.period || herd:, binomial(size) intmethod(laplace)",
  r = "glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), binomial, nAGQ = 1), polished",
  loglik = as.numeric(logLik(m3)), beta = unname(fixef(m3)), sd = unname(s3),
  groups = r3$groups, ebmodes = r3$mode, ebmodes_sd = r3$sd,
  pr = p3, mu = n3 * p3, xb = xb3,
  pearson = unname(residuals(m3, type = "pearson")), deviance = unname(residuals(m3, type = "deviance")),
  anscombe = unlist(Map(function(yy, mm, nn) anscombe(yy, mm, function(t) t * (1 - t / nn)),
                        cb$incidence, n3 * p3, n3)),
  ebmeans = unname(post3[, "mean"]), ebmeans_sd = unname(post3[, "sd"]),
  marginal_pr = marginal_mean(xb3, s3, plogis))

## ---- 4. grouseticks Poisson, brood nested in location, Laplace ----------------------------
gt <- read_data("grouseticks.csv")
gt$location <- factor(gt$location); gt$brood <- factor(gt$brood); gt$year <- factor(gt$year)
f4 <- polished(ticks ~ year + height_s + (1 | location / brood), gt, poisson, nAGQ = 1)
m4 <- f4$m; rr <- ranef(m4, condVar = TRUE)
mu4 <- unname(predict(m4, type = "response")); xb4 <- unname(predict(m4, re.form = NA, type = "link"))
vc4 <- f4$par[1:2]^2
cases$grouseticks_nested_laplace <- list(
  stata = "mepoisson ticks i.year height_s || location: || brood:, intmethod(laplace)",
  r = "glmer(ticks ~ year + height_s + (1 | location/brood), poisson, nAGQ = 1), polished",
  loglik = as.numeric(logLik(m4)), beta = unname(fixef(m4)),
  brood_groups = sub(":.*", "", rownames(rr[["brood:location"]])),
  brood_ebmodes = rr[["brood:location"]][, 1],
  brood_ebmodes_sd = sqrt(attr(rr[["brood:location"]], "postVar")[1, 1, ]),
  location_groups = rownames(rr$location), location_ebmodes = rr$location[, 1],
  location_ebmodes_sd = sqrt(attr(rr$location, "postVar")[1, 1, ]),
  mu = mu4, eta = unname(predict(m4, type = "link")), xb = xb4,
  pearson = unname(residuals(m4, type = "pearson")), deviance = unname(residuals(m4, type = "deviance")),
  anscombe = anscombe(gt$ticks, mu4, function(t) t),
  marginal_mu = exp(xb4 + sum(vc4) / 2))

## ---- 5. wine ordinal logit (clmm, Laplace) ---------------------------------------------------
w <- read_data("wine.csv"); w$judge <- factor(w$judge); w$rating <- ordered(w$rating)
f5 <- clmm(rating ~ warm + contact + (1 | judge), data = w, link = "logit", Hess = TRUE,
           control = clmm.control(gradTol = 1e-10))
cuts <- unname(f5$alpha); beta5 <- unname(f5$beta); s5 <- sqrt(unname(VarCorr(f5)$judge[1, 1]))
u5 <- ranef(f5, condVar = TRUE)$judge; cv5 <- condVar(f5)$judge
xb5 <- drop(as.matrix(w[, c("warm", "contact")]) %*% beta5)
eta5 <- xb5 + u5[as.integer(w$judge), 1]
probs <- function(eta) { P <- cbind(outer(eta, cuts, function(e, k) plogis(k - e)), 1)
  cbind(P[, 1], P[, -1, drop = FALSE] - P[, -ncol(P), drop = FALSE]) }
K <- length(cuts) + 1
marg5 <- sapply(seq_len(K), function(k) vapply(xb5, function(e) integrate(function(t)
  probs(e + s5 * t)[, k] * dnorm(t), -Inf, Inf, rel.tol = 1e-12)$value, 0))
V5 <- vcov(f5); tau <- log(s5); itau <- nrow(V5)
icc5 <- s5^2 / (s5^2 + pi^2 / 3)
cases$wine_clmm_laplace <- list(
  stata = "meologit rating warm contact || judge:, intmethod(laplace)",
  r = "ordinal::clmm(rating ~ warm + contact + (1 | judge), link = 'logit') (Laplace)",
  loglik = as.numeric(logLik(f5)), beta = beta5, cuts = cuts, sd = s5,
  groups = levels(w$judge), ebmodes = unname(u5[, 1]), ebmodes_sd = unname(sqrt(cv5[, 1])),
  pr = unname(probs(eta5)), pr_fixedonly = unname(probs(xb5)), marginal_pr = unname(marg5),
  icc = icc5, icc_se = unname(sqrt(V5[itau, itau]) * 2 * s5^2 * (pi^2 / 3) / (s5^2 + pi^2 / 3)^2),
  vcov_names = rownames(V5))

out <- list(provenance = list(software = VERS, script = "tests/references/glmm_postestimation/make.R",
                              generated = format(Sys.Date())),
            cases = cases)
write_case(out, file.path(OUT, "glmm_postestimation.json"))
print(warnings())
cat("written", file.path(OUT, "glmm_postestimation.json"), "\n")
