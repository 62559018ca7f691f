## Reference log-likelihoods (and estimates) for the GLMM benchmarks B5a, B5b, B6
## (benchmarks/README.md).  Run from the repository root, after writing the simulated
## B5b data as CSV (Python, seeded; R cannot regenerate numpy's stream):
##   .venv/bin/python benchmarks/gen_data.py --csv benchmarks/.cache/csv
##   Rscript tests/references/glmm_bench/make.R [benchmarks/.cache/csv/b5b.csv]
##
## * B5a, B5b (logistic random intercept): own 1-D rules in plain R, vectorised over
##   groups, maximised (Newton on central differences) from lme4's estimates: Laplace (Stata
##   intmethod(laplace); = lme4 nAGQ = 1), mode-curvature AGQ-7 (intmethod(mcaghermite);
##   = lme4 nAGQ = 7) and mean-variance AGQ-7 (Stata's default mvaghermite: nodes at the
##   posterior mean, scaled by the posterior SD, both computed with the rule and iterated
##   to a fixed point at every evaluation, as in tests/references/glmm_slopes/make.R).
##   lme4's own fits are recorded too: its default optimiser stops ~2e-3 short on B5b.
## * B6 (crossed Poisson): lme4 glmer Laplace (PEERS.md: glmmTMB agrees to 2e-9).
source("tests/references/common.R")
suppressPackageStartupMessages(library(lme4))
OUT <- file.path(REF_ROOT, "glmm_bench")
args <- commandArgs(trailingOnly = TRUE)
B5B_CSV <- if (length(args)) args[1] else "benchmarks/.cache/csv/b5b.csv"
VERS <- pkg_version_string(c("lme4", "jsonlite"))

## ---- 1-D adaptive Gauss-Hermite for a random intercept, logit link ----------------------
gh_rule <- function(Q) {                    # Golub-Welsch, weight exp(-t^2)
  if (Q == 1) return(list(t = 0, w = sqrt(pi)))
  J <- matrix(0, Q, Q)
  for (i in seq_len(Q - 1)) J[i, i + 1] <- J[i + 1, i] <- sqrt(i / 2)
  e <- eigen(J, symmetric = TRUE)
  list(t = e$values, w = sqrt(pi) * e$vectors[1, ]^2)
}
## log likelihood as a function of (beta, log sd): Q points centred at the conditional mode
## and scaled by the curvature ("mode"; Q = 1 is the Laplace approximation), or at the
## posterior mean and SD computed with the rule and iterated to a fixed point ("mean")
aghq_logit <- function(X, y, g, Q, centre = c("mode", "mean"), tol = 1e-12) {
  centre <- match.arg(centre)
  R <- gh_rule(Q); G <- max(g)
  lse <- function(a) { m <- apply(a, 1, max); m + log(rowSums(exp(a - m))) }
  function(par) {
    p <- ncol(X); s <- exp(par[p + 1]); eta0 <- drop(X %*% par[1:p])
    u <- numeric(G)
    for (it in 1:200) {                     # conditional modes: Newton over groups
      pr <- plogis(eta0 + u[g])
      d <- (rowsum(y - pr, g)[, 1] - u / s^2) / (rowsum(pr * (1 - pr), g)[, 1] + 1 / s^2)
      u <- u + d
      if (max(abs(d)) < 1e-13) break
    }
    pr <- plogis(eta0 + u[g])
    mu <- u; tau <- 1 / sqrt(rowsum(pr * (1 - pr), g)[, 1] + 1 / s^2)
    terms <- function(mu, tau) {
      U <- mu + sqrt(2) * tau %o% R$t                           # G x Q
      e <- eta0 + U[g, , drop = FALSE]
      a <- rowsum(y * e - log1p(exp(-abs(e))) - pmax(e, 0), g) +
        dnorm(U, 0, s, log = TRUE) + matrix(R$t^2 + log(R$w), G, Q, byrow = TRUE)
      list(a = a, U = U)
    }
    if (centre == "mean") for (it in 1:500) {
      qt <- terms(mu, tau)
      w <- exp(qt$a - apply(qt$a, 1, max)); w <- w / rowSums(w)
      m <- rowSums(w * qt$U); v <- sqrt(rowSums(w * (qt$U - m)^2))
      ch <- max(abs(c(m - mu, v - tau))); mu <- m; tau <- v
      if (ch < tol) break
    }
    sum(log(sqrt(2) * tau) + lse(terms(mu, tau)$a))
  }
}
## maximise from lme4's estimates: Newton steps on central-difference
## derivatives (steps h_i = 1e-4 / RMS of the covariate, 1e-4 for log sd) until the Newton
## decrement g'(-H)^-1 g is below 1e-10; the gradient and the decrement at the optimum
## are recorded
fd_derivs <- function(f, x, h) {
  d <- length(x); E <- diag(h, d); f0 <- f(x)
  g <- sapply(seq_len(d), function(i) (f(x + E[, i]) - f(x - E[, i])) / (2 * h[i]))
  H <- matrix(0, d, d)
  for (i in seq_len(d)) for (j in seq_len(i)) {
    H[i, j] <- H[j, i] <- (f(x + E[, i] + E[, j]) - f(x + E[, i] - E[, j]) -
                             f(x - E[, i] + E[, j]) + f(x - E[, i] - E[, j])) / (4 * h[i] * h[j])
  }
  list(f = f0, g = g, H = H)
}
maximise <- function(f, beta0, sd0, h) {
  x <- c(beta0, log(sd0))
  for (it in 1:10) {
    D <- fd_derivs(f, x, h)
    step <- solve(-D$H, D$g); dec <- sum(D$g * step)
    if (dec < 1e-10) break
    t <- 1
    while (f(x + t * step) < D$f && t > 1e-3) t <- t / 2
    x <- x + t * step
  }
  list(beta = setNames(x[seq_along(beta0)], names(beta0)), sd = exp(x[length(x)]),
       loglik = f(x), max_abs_gradient = max(abs(D$g)), newton_decrement = dec,
       newton_steps = it - 1)
}
own <- function(X, y, g, fit, Q, centre)
  maximise(aghq_logit(X, y, g, Q, centre), fixef(fit), getME(fit, "theta"),
           c(1e-4 / sqrt(colMeans(X^2)), 1e-4))
lme4_summary <- function(fit) list(loglik = as.numeric(logLik(fit)), beta = fixef(fit),
                                   theta = getME(fit, "theta"), feval = fit@optinfo$feval)

ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
cases <- list()
t0 <- proc.time()[3]
say <- function(...) cat(sprintf("[%5.0fs] ", proc.time()[3] - t0), sprintf(...), "\n")

## ---- B5a: Contraception (tests/data/bangladesh.csv, age centred as in mlmRev) -----------
b <- read_data("bangladesh.csv"); b$age2 <- b$age^2; b$district <- factor(b$district)
fa <- c_use ~ urban + age + age2 + child1 + child2 + child3 + (1 | district)
m1 <- glmer(fa, b, family = binomial, nAGQ = 1, control = ctrl)
m7 <- glmer(fa, b, family = binomial, nAGQ = 7, control = ctrl)
Xa <- model.matrix(~ urban + age + age2 + child1 + child2 + child3, b)
ya <- b$c_use; ga <- as.integer(b$district)
lap <- own(Xa, ya, ga, m1, 1, "mode"); say("B5a laplace %.8f (lme4 %.8f)", lap$loglik, logLik(m1))
mc7 <- own(Xa, ya, ga, m7, 7, "mode"); say("B5a mcaghq7 %.8f (lme4 %.8f)", mc7$loglik, logLik(m7))
mv7 <- own(Xa, ya, ga, m7, 7, "mean"); say("B5a mvaghq7 %.8f", mv7$loglik)
cases$B5a <- list(data = "tests/data/bangladesh.csv (age2 = age^2)",
                  stata = "melogit c_use urban age age2 child1 child2 child3 || district:",
                  laplace = lap, mcaghq7 = mc7, mvaghq7 = mv7,
                  lme4_laplace = lme4_summary(m1), lme4_agq7 = lme4_summary(m7))

## ---- B5b: simulated 200,000-row logistic, 2,000 groups ----------------------------------
d5 <- read.csv(B5B_CSV); d5$g <- factor(d5$g)
fb <- y ~ x1 + x2 + x3 + (1 | g)
m1 <- glmer(fb, d5, family = binomial, nAGQ = 1, control = ctrl)
m7 <- glmer(fb, d5, family = binomial, nAGQ = 7, control = ctrl)
Xb <- model.matrix(~ x1 + x2 + x3, d5)
yb <- d5$y; gb <- as.integer(d5$g)
lap <- own(Xb, yb, gb, m1, 1, "mode"); say("B5b laplace %.8f (lme4 %.8f)", lap$loglik, logLik(m1))
mc7 <- own(Xb, yb, gb, m7, 7, "mode"); say("B5b mcaghq7 %.8f (lme4 %.8f)", mc7$loglik, logLik(m7))
mv7 <- own(Xb, yb, gb, m7, 7, "mean"); say("B5b mvaghq7 %.8f", mv7$loglik)
cases$B5b <- list(data = "benchmarks/gen_data.py b5b (seed 20261125; = peer kit b5_large_logit.csv)",
                  stata = "melogit y x1 x2 x3 || g:", laplace = lap, mcaghq7 = mc7, mvaghq7 = mv7,
                  lme4_laplace = lme4_summary(m1), lme4_agq7 = lme4_summary(m7))

## ---- B6: grouseticks, crossed Poisson (brood and location) ------------------------------
gt <- read_data("grouseticks.csv")
for (v in c("year", "brood", "location")) gt[[v]] <- factor(gt[[v]])
m1 <- glmer(ticks ~ year + height_s + (1 | brood) + (1 | location), gt, family = poisson,
            nAGQ = 1, control = ctrl)
say("B6 laplace (lme4) %.8f", logLik(m1))
cases$B6 <- list(data = "tests/data/grouseticks.csv",
                 stata = "mepoisson ticks i.year height_s || _all: R.brood || location:, intmethod(laplace)",
                 lme4_laplace = lme4_summary(m1))

write_case(list(provenance = paste(VERS, "-", format(Sys.time(), "%Y-%m-%d"),
                                   "- tests/references/glmm_bench/make.R"), cases = cases),
           file.path(OUT, "glmm_bench.json"))
