## Nested random slopes: logit with a random intercept and slope at the top level and a
## random intercept at the lower level.  Run from the repository root:
##   Rscript tests/references/glmm_nested/make.R
##
## * "laplace": lme4 glmer(y ~ x + (x | school) + (1 | school:class), nAGQ = 1), which is
##   Stata's  melogit y x || school: x, covariance(unstructured) || class:, intmethod(laplace);
## * "exact": the maximum of the nested integral itself, computed here by brute force with a
##   NON-adaptive Gauss-Hermite product rule of Q = 40 points per dimension at every level
##   (40^2 nodes for the school effects, 40 for the class effect, nested: 64,000 node paths
##   per observation), maximised with nlminb then BFGS from the Laplace optimum.  Its accuracy
##   is checked at the optimum against Q = 30 and Q = 50 ("checks").  Adaptive quadrature with
##   many points must converge to it.
## GLMMadaptive (one grouping factor only, and not packaged in Debian) cannot do this.

source("tests/references/common.R")
suppressPackageStartupMessages(library(lme4))
OUT <- file.path(REF_ROOT, "glmm_nested")
VERS <- pkg_version_string(c("lme4", "jsonlite"))
DATA_FILE <- "glmm_nested_sim.csv"

## ---- simulated data (fixed seed) -------------------------------------------------
set.seed(20261125)
A <- 25; B <- 3
school <- integer(0); class <- integer(0)
for (a in seq_len(A)) for (b in seq_len(B)) {
  m <- sample(5:8, 1); school <- c(school, rep(a, m)); class <- c(class, rep(b, m)) }
N <- length(school)
x <- round(rnorm(N), 4)
S_true <- matrix(c(0.8, 0.2, 0.2, 0.4), 2)      # (intercept, slope)
U <- matrix(rnorm(2 * A), A) %*% chol(S_true)
V <- rnorm(A * B, sd = 0.7)
eta <- -0.3 + 0.8 * x + U[school, 1] + U[school, 2] * x + V[(school - 1) * B + class]
y <- rbinom(N, 1, plogis(eta))
write.csv(data.frame(school = school, class = class, x = x, y = y), file.path(OUT, DATA_FILE),
          row.names = FALSE)
dat <- read.csv(file.path(OUT, DATA_FILE))
dat$sc <- (dat$school - 1) * B + dat$class

## ---- lme4 Laplace --------------------------------------------------------------------
fits <- lapply(c("bobyqa", "Nelder_Mead"), function(o)
  glmer(y ~ x + (x | school) + (1 | school:class), data = dat, family = binomial, nAGQ = 1,
        control = glmerControl(optimizer = o, optCtrl = list(maxfun = 1e5))))
m_lap <- fits[[which.max(sapply(fits, logLik))]]
vc <- VarCorr(m_lap)
S_lap <- vc$school; s2_lap <- vc$`school:class`[1, 1]

## ---- brute-force nested integral ----------------------------------------------------
gh <- function(Q) {                             # Golub-Welsch, weight exp(-t^2)
  J <- matrix(0, Q, Q)
  for (i in seq_len(Q - 1)) J[i, i + 1] <- J[i + 1, i] <- sqrt(i / 2)
  e <- eigen(J, symmetric = TRUE)
  list(t = sqrt(2) * e$values, logw = log(e$vectors[1, ]^2))   # for N(0, 1)
}
lse <- function(a) { m <- max(a); m + log(sum(exp(a - m))) }
## p = (b_cons, b_x, var_cons, cov, var_x, var_class)
loglik_exact <- function(p, Q) {
  r <- gh(Q)
  S <- matrix(c(p[3], p[4], p[4], p[5]), 2)
  if (any(eigen(S, symmetric = TRUE, only.values = TRUE)$values <= 0) || p[6] <= 0) return(-Inf)
  L <- t(chol(S))
  t1 <- rep(r$t, times = Q); t2 <- rep(r$t, each = Q)
  u0 <- L[1, 1] * t1; u1 <- L[2, 1] * t1 + L[2, 2] * t2           # school nodes, Q^2
  lw2 <- rep(r$logw, times = Q) + rep(r$logw, each = Q)
  v <- sqrt(p[6]) * r$t                                              # class nodes, Q
  total <- 0
  for (a in unique(dat$school)) {
    d <- dat[dat$school == a, ]
    inner <- numeric(Q * Q)
    for (c in unique(d$sc)) {
      dc <- d[d$sc == c, ]
      ## eta over (school node, class node) for each obs: accumulate log f
      s <- matrix(0, Q * Q, Q)
      for (i in seq_len(nrow(dc))) {
        e <- outer(p[1] + p[2] * dc$x[i] + u0 + u1 * dc$x[i], v, "+")
        s <- s + dc$y[i] * e - log1p(exp(-abs(e))) - pmax(e, 0)
      }
      s <- s + matrix(r$logw, Q * Q, Q, byrow = TRUE)
      mx <- apply(s, 1, max)
      inner <- inner + mx + log(rowSums(exp(s - mx)))
    }
    total <- total + lse(inner + lw2)
  }
  total
}
to_nat <- function(u) { s1 <- exp(u[3]); s2 <- exp(u[4]); r <- tanh(u[5])
  c(u[1], u[2], s1^2, r * s1 * s2, s2^2, exp(2 * u[6])) }
from_nat <- function(p) c(p[1], p[2], 0.5 * log(p[3]), 0.5 * log(p[5]),
                          atanh(p[4] / sqrt(p[3] * p[5])), 0.5 * log(p[6]))
start <- c(fixef(m_lap), S_lap[1, 1], S_lap[1, 2], S_lap[2, 2], s2_lap)
names(start) <- NULL
obj <- function(u) { v <- loglik_exact(to_nat(u), 40); if (!is.finite(v)) 1e100 else -v }
t0 <- proc.time()[3]
o <- nlminb(from_nat(start), obj, control = list(eval.max = 2000, iter.max = 1000, rel.tol = 1e-13))
o2 <- optim(o$par, obj, method = "BFGS", control = list(maxit = 500, reltol = 1e-15, ndeps = rep(1e-5, 6)))
best <- if (o2$value < o$objective) o2$par else o$par
exact <- to_nat(best); ll_exact <- -min(o$objective, o2$value)
cat(sprintf("exact: ll = %.10f  [%.0fs]\n", ll_exact, proc.time()[3] - t0))
checks <- list(Q40_minus_Q30_at_optimum = ll_exact - loglik_exact(exact, 30),
               Q40_minus_Q50_at_optimum = ll_exact - loglik_exact(exact, 50),
               laplace_loglik_exact_integral = loglik_exact(start, 40))
print(checks)

## ---- JSON ---------------------------------------------------------------------------
nat_out <- function(p) list(coef = list(names = c("x", "_cons"), value = c(p[2], p[1])),
                            school_cov = matrix(c(p[5], p[4], p[4], p[3]), 2),   # (x, _cons)
                            class_var = p[6])
lap_p <- c(start[1:2], start[3:6])
out <- list(
  id = "glmm_nested_logit_slope_top",
  dataset_path = file.path(OUT, DATA_FILE),
  dataset_origin = paste0("simulated by make.R (set.seed(20261125)): 25 schools x 3 classes of 5-8 obs, ",
                          "x ~ N(0,1) rounded to 4 dp, y ~ Bernoulli(logit^-1(-0.3 + 0.8 x + u0 + u1 x + v)), ",
                          "(u0, u1) ~ N(0, [[.8, .2], [.2, .4]]) per school, v ~ N(0, .49) per class"),
  stata = "melogit y x || school: x, covariance(unstructured) || class:",
  lme4 = "y ~ x + (x | school) + (1 | school:class)",
  versions = VERS, date = as.character(Sys.Date()),
  laplace = c(list(reference = "lme4 glmer(nAGQ = 1), best of bobyqa / Nelder_Mead",
                   loglik = as.numeric(logLik(m_lap)),
                   se = list(names = c("x", "_cons"), value = unname(sqrt(diag(vcov(m_lap)))[2:1]))),
              nat_out(lap_p)),
  exact = c(list(reference = "maximum of the nested integral by a non-adaptive 40-point Gauss-Hermite product rule per dimension and level (nlminb + BFGS)",
                 loglik = ll_exact), nat_out(exact)),
  checks = checks)
write_case(out, file.path(OUT, "glmm_nested_logit_slope_top.json"))
