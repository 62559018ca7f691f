## Level-1 importance and sampling weights in a random-intercept logit, by direct maximisation
## of the weighted likelihood (Rabe-Hesketh & Skrondal 2006, JRSS A 169, eq. 2; [ME] meglm):
##   l(beta, sigma) = sum_j log  int prod_i f(y_ij | x_ij'beta + sigma t)^{w_ij} phi(t) dt
## written here with a NON-adaptive 60-point Gauss-Hermite rule (accuracy checked against 40 and
## 80 points at the optimum), maximised with nlminb then BFGS; standard errors from numDeriv's
## Hessian H in (beta, log sigma) and the delta method to var(_cons).  lme4's glmer(weights=)
## is a different model (binomial proportions), so it is not used.  Run from the repository root:
##   Rscript tests/references/glmm_weights/make.R
## * iweight: model-based SEs, (-H)^-1;
## * pweight (level 1, Stata's vce(robust) clustered at district): the sandwich
##   H^-1 [G/(G-1) sum_j s_j s_j'] H^-1 with s_j the gradient of district j's term.
## Data: tests/data/bangladesh.csv; weights w = 0.5 + 0.25 * ((row - 1) mod 4) (row 1-based).

source("tests/references/common.R")
OUT <- file.path(REF_ROOT, "glmm_weights")
VERS <- pkg_version_string(c("numDeriv", "jsonlite"))
dat <- read_data("bangladesh.csv")
dat$w <- 0.5 + 0.25 * ((seq_len(nrow(dat)) - 1) %% 4)
X <- cbind(1, dat$urban, dat$age)
y <- dat$c_use
g <- as.integer(factor(dat$district))

gh <- function(Q) {                             # Golub-Welsch, for N(0, 1)
  J <- matrix(0, Q, Q)
  for (i in seq_len(Q - 1)) J[i, i + 1] <- J[i + 1, i] <- sqrt(i / 2)
  e <- eigen(J, symmetric = TRUE)
  list(t = sqrt(2) * e$values, logw = log(e$vectors[1, ]^2))
}
## par = (b_cons, b_urban, b_age, log sigma); one log contribution per district
contrib <- function(par, Q = 60, w = dat$w) {
  r <- gh(Q)
  e <- outer(drop(X %*% par[1:3]), exp(par[4]) * r$t, "+")             # n x Q
  lf <- w * (y * e - log1p(exp(-abs(e))) - pmax(e, 0))             # w_i log f
  s <- rowsum(lf, g) + matrix(r$logw, max(g), Q, byrow = TRUE)
  mx <- apply(s, 1, max)
  mx + log(rowSums(exp(s - mx)))
}
obj <- function(par) -sum(contrib(par))
o <- nlminb(c(-1.5, 0.7, 0, log(0.5)), obj, control = list(rel.tol = 1e-14, eval.max = 1e4, iter.max = 1e4))
o2 <- optim(o$par, obj, method = "BFGS", control = list(reltol = 1e-15, maxit = 1000))
par <- if (o2$value < o$objective) o2$par else o$par
ll <- -obj(par)
H <- -numDeriv::hessian(obj, par)
S <- numDeriv::jacobian(contrib, par)                                  # G x 4 scores
G <- nrow(S)
V_model <- solve(-H)
V_robust <- solve(H) %*% (G / (G - 1) * crossprod(S)) %*% solve(H)
sig2 <- exp(2 * par[4])
out_case <- function(V, id, stata, note, w = dat$w) list(
  id = id, dataset = "bangladesh", dataset_path = "tests/data/bangladesh.csv",
  weights = "w = 0.5 + 0.25 * (i mod 4), i the 0-based row", stata = stata,
  reference = note, versions = VERS, date = as.character(Sys.Date()),
  results = list(
    loglik = ll,
    fixed = list(names = c("urban", "age", "_cons"), estimate = par[c(2, 3, 1)],
                 se = sqrt(diag(V))[c(2, 3, 1)]),
    random = list(list(level = "district", names = "var(_cons)", estimate = sig2,
                       se = 2 * sig2 * sqrt(V[4, 4])))),
  tolerance = default_tolerance(),
  checks = list(Q60_minus_Q40_at_optimum = sum(contrib(par, 60, w = w)) - sum(contrib(par, 40, w = w)),
                Q60_minus_Q80_at_optimum = sum(contrib(par, 60, w = w)) - sum(contrib(par, 80, w = w)),
                score_sum = colSums(S)))
write_case(out_case(V_model, "glmm_weights_melogit_iw", "melogit c_use urban age [iw=w] || district:, intpoints(20)",
                    "direct ML of the weighted likelihood, 60-point Gauss-Hermite, numDeriv Hessian"),
           file.path(OUT, "melogit_iw.json"))
write_case(out_case(V_robust, "glmm_weights_melogit_pw1", "melogit c_use urban age [pw=w] || district:, intpoints(20)",
                    "direct maximum of the pseudo-likelihood, 60-point Gauss-Hermite; sandwich H^-1 [G/(G-1) sum s_j s_j'] H^-1 (numDeriv)"),
           file.path(OUT, "melogit_pw1.json"))
cat(sprintf("ll = %.10f\n", ll)); print(par); print(sqrt(diag(V_model))); print(sqrt(diag(V_robust)))

## * unweighted, vce(cluster dgroup) with dgroup = floor((district - 1) / 5) (districts nested in
##   13 clusters): the sandwich with the districts' scores summed within each cluster.
one <- rep(1, nrow(dat))
obj1 <- function(par) -sum(contrib(par, w = one))
o <- nlminb(c(-1.5, 0.7, 0, log(0.5)), obj1, control = list(rel.tol = 1e-14, eval.max = 1e4, iter.max = 1e4))
o2 <- optim(o$par, obj1, method = "BFGS", control = list(reltol = 1e-15, maxit = 1000))
par <- if (o2$value < o$objective) o2$par else o$par
ll <- -obj1(par)
H <- -numDeriv::hessian(obj1, par)
Sd <- numDeriv::jacobian(function(p) contrib(p, w = one), par)
dgroup <- (sort(unique(dat$district)) - 1) %/% 5
S <- rowsum(Sd, dgroup)
C <- nrow(S)
V <- solve(H) %*% (C / (C - 1) * crossprod(S)) %*% solve(H)
sig2 <- exp(2 * par[4])
case <- out_case(V, "glmm_weights_melogit_vce_cluster",
                 "melogit c_use urban age || district:, vce(cluster dgroup) intpoints(20)",
                 "direct ML, 60-point Gauss-Hermite; sandwich with district scores summed in 13 clusters (numDeriv)", w = one)
case$weights <- NULL
case$cluster <- "dgroup = (district - 1) // 5"
case$checks$score_sum <- colSums(S)
write_case(case, file.path(OUT, "melogit_vce_cluster.json"))
print(sqrt(diag(V)))

## * sampling weights at both levels: [pw=w] || district:, pweight(wd) with
##   wd = 1 + (district mod 3) / 2: l = sum_j wd_j log int prod_i f^{w_ij} phi, scores wd_j s_j,
##   the sandwich clustered at district.
wd <- 1 + (sort(unique(dat$district)) %% 3) / 2
obj2 <- function(par) -sum(wd * contrib(par))
o <- nlminb(c(-1.5, 0.7, 0, log(0.5)), obj2, control = list(rel.tol = 1e-14, eval.max = 1e4, iter.max = 1e4))
o2 <- optim(o$par, obj2, method = "BFGS", control = list(reltol = 1e-15, maxit = 1000))
par <- if (o2$value < o$objective) o2$par else o$par
ll <- -obj2(par)
H <- -numDeriv::hessian(obj2, par)
S <- wd * numDeriv::jacobian(contrib, par)
G <- nrow(S)
V <- solve(H) %*% (G / (G - 1) * crossprod(S)) %*% solve(H)
sig2 <- exp(2 * par[4])
case <- out_case(V, "glmm_weights_melogit_pw2",
                 "melogit c_use urban age [pw=w] || district:, pweight(wd) intpoints(20)",
                 "direct maximum of the two-level pseudo-likelihood, 60-point Gauss-Hermite; sandwich clustered at district (numDeriv)")
case$weights <- "w = 0.5 + 0.25 * (i mod 4), i the 0-based row; wd = 1 + (district mod 3) / 2"
case$checks$Q60_minus_Q40_at_optimum <- sum(wd * contrib(par, 60)) - sum(wd * contrib(par, 40))
case$checks$Q60_minus_Q80_at_optimum <- sum(wd * contrib(par, 60)) - sum(wd * contrib(par, 80))
case$checks$score_sum <- colSums(S)
write_case(case, file.path(OUT, "melogit_pw2.json"))
cat(sprintf("pw2: ll = %.10f\n", ll)); print(sqrt(diag(V)))
