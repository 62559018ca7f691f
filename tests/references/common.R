## Shared helpers for the reference generators in tests/references/<topic>/make.R.
## Sourced by each make.R (run from the repository root):
##   Rscript tests/references/<topic>/make.R
## Nothing here is used by the Python test suite.

suppressPackageStartupMessages({
  library(jsonlite)
  library(numDeriv)
})

REF_ROOT <- "tests/references"
DATA_DIR <- "tests/data"

pkg_version_string <- function(pkgs) {
  v <- vapply(pkgs, function(p) paste(p, as.character(packageVersion(p))), "")
  paste0("R ", getRversion(), ", ", paste(v, collapse = ", "))
}

read_data <- function(name) read.csv(file.path(DATA_DIR, name), stringsAsFactors = FALSE)

## JSON: full double precision, NA -> null; vectors that must stay arrays
## are wrapped in I() (or are longer than 1).
write_case <- function(x, file) {
  txt <- toJSON(x, auto_unbox = TRUE, digits = NA, pretty = TRUE,
                null = "null", na = "null", matrix = "rowmajor")
  writeLines(txt, file)
  invisible(file)
}

mat1 <- function(v) matrix(v, 1, 1)

default_tolerance <- function(...) {
  t <- list(loglik_abs = 1e-3, coef_rel = 1e-3, se_rel = 5e-3, var_rel = 5e-3)
  extra <- list(...)
  if (length(extra)) t$extra <- extra
  t
}

## ---------------------------------------------------------------------------
## Generic Gaussian marginal log-likelihood for models whose covariance is
## block diagonal over independent clusters: V_j = V_j(par).
##   y_list[[j]], X_list[[j]]: response / fixed design for cluster j
##   Vfun(par, j): covariance matrix of cluster j
## beta is profiled out by GLS.  REML = ML + 0.5 p log(2 pi) - 0.5 log|X'V^-1X|
## (the lme4 / Stata convention for the restricted log likelihood).
## ---------------------------------------------------------------------------
gls_loglik <- function(par, y_list, X_list, Vfun, reml = FALSE, details = FALSE) {
  p <- ncol(X_list[[1]])
  XtViX <- matrix(0, p, p); XtViy <- numeric(p); yViy <- 0; logdet <- 0; N <- 0
  for (j in seq_along(y_list)) {
    V <- Vfun(par, j)
    R <- tryCatch(chol(V), error = function(e) NULL)
    if (is.null(R) || any(!is.finite(R))) return(if (details) NULL else -Inf)
    Xs <- backsolve(R, X_list[[j]], transpose = TRUE)
    ys <- backsolve(R, y_list[[j]], transpose = TRUE)
    XtViX <- XtViX + crossprod(Xs)
    XtViy <- XtViy + drop(crossprod(Xs, ys))
    yViy <- yViy + sum(ys^2)
    logdet <- logdet + 2 * sum(log(diag(R)))
    N <- N + length(ys)
  }
  RX <- tryCatch(chol(XtViX), error = function(e) NULL)
  if (is.null(RX)) return(if (details) NULL else -Inf)
  beta <- backsolve(RX, backsolve(RX, XtViy, transpose = TRUE))
  rss <- yViy - sum(XtViy * beta)
  ll <- -0.5 * (N * log(2 * pi) + logdet + rss)
  if (reml) ll <- ll + 0.5 * p * log(2 * pi) - sum(log(diag(RX)))
  if (!details) return(ll)
  vc <- chol2inv(RX)
  list(loglik = ll, beta = beta, vcov = vc, se = sqrt(diag(vc)), N = N)
}

## Maximise gls_loglik over an unconstrained transform.
##  to_nat(u) maps unconstrained -> natural parameters; from_nat the inverse.
maximise_gls <- function(start_nat, to_nat, from_nat, y_list, X_list, Vfun,
                         reml = FALSE, restarts = 3) {
  f <- function(u) {
    v <- gls_loglik(to_nat(u), y_list, X_list, Vfun, reml)
    if (!is.finite(v)) 1e100 else -v
  }
  u <- from_nat(start_nat)
  best <- NULL
  for (r in seq_len(restarts)) {
    o <- nlminb(u, f, control = list(eval.max = 5000, iter.max = 3000,
                                     rel.tol = 1e-14, x.tol = 1e-12))
    o2 <- optim(o$par, f, method = "BFGS",
                control = list(maxit = 2000, reltol = 1e-15, ndeps = rep(1e-5, length(u))))
    cand <- if (o2$value < o$objective) list(par = o2$par, value = o2$value)
            else list(par = o$par, value = o$objective)
    if (is.null(best) || cand$value < best$value - 1e-12) best <- cand
    u <- best$par
  }
  list(nat = to_nat(best$par), u = best$par, loglik = -best$value)
}

## Observed-information covariance of the natural parameters (numerical Hessian
## of the profiled (over beta) log likelihood; at the optimum its inverse is the
## corresponding block of the inverse full observed information).
nat_vcov <- function(nat, y_list, X_list, Vfun, reml = FALSE) {
  H <- numDeriv::hessian(function(p) gls_loglik(p, y_list, X_list, Vfun, reml), nat,
                         method.args = list(eps = 1e-4, d = 1e-3, r = 6))
  solve(-H)
}

## Gradient norm check (natural parameters)
nat_grad <- function(nat, y_list, X_list, Vfun, reml = FALSE)
  numDeriv::grad(function(p) gls_loglik(p, y_list, X_list, Vfun, reml), nat)

split_by <- function(v, g) unname(split(v, factor(g, levels = unique(g))))
split_rows <- function(M, g) unname(lapply(split(seq_len(nrow(M)), factor(g, levels = unique(g))),
                                    function(i) M[i, , drop = FALSE]))

ols_loglik_ml <- function(y, X) {
  f <- lm.fit(X, y); n <- length(y); s2 <- sum(f$residuals^2) / n
  -0.5 * n * (log(2 * pi * s2) + 1)
}

## ---- dense variance-parameter machinery for lme4 fits (needs lme4 loaded) ----
## V = sum_i theta_i V_i with theta = (variances, covariances of each random-effects
## term, residual variance).  lmm_dense(m, reml) gives the expected / observed
## information of the (restricted) log likelihood in theta (beta profiled out;
## for ML the inverse observed information is the theta block of the inverse of
## the full (beta, theta) observed information), Phi = (X'V^-1X)^-1 and dPhi/dtheta.
## Returns the components V_i (dV/dtheta_i, V linear in the natural parameters:
## variances, covariances, residual variance) and their labels/values.
lmer_var_components <- function(m) {
  Zfull <- as.matrix(getME(m, "Z")); Gp <- getME(m, "Gp"); cn <- getME(m, "cnms")
  vc <- VarCorr(m)
  comps <- list(); labs <- character(); vals <- numeric()
  for (k in seq_along(cn)) {
    ## columns of term k: Gp[k]+1 .. Gp[k+1], ordered level-major (q columns per level)
    q <- length(cn[[k]])
    Zk <- Zfull[, (Gp[k] + 1):Gp[k + 1], drop = FALSE]
    nm <- names(cn)[k]
    S <- vc[[k]]
    for (a in seq_len(q)) for (b in a:q) {
      Za <- Zk[, seq(a, ncol(Zk), by = q), drop = FALSE]
      Zb <- Zk[, seq(b, ncol(Zk), by = q), drop = FALSE]
      Vi <- if (a == b) tcrossprod(Za) else tcrossprod(Za, Zb) + tcrossprod(Zb, Za)
      comps[[length(comps) + 1]] <- Vi
      labs <- c(labs, sprintf("%s:%s,%s", nm, cn[[k]][a], cn[[k]][b]))
      vals <- c(vals, S[a, b])
    }
  }
  n <- nrow(getME(m, "X"))
  comps[[length(comps) + 1]] <- diag(n); labs <- c(labs, "residual"); vals <- c(vals, sigma(m)^2)
  list(V = comps, labels = labs, values = vals)
}

lmm_dense <- function(m, reml = TRUE) {
  vcmp <- lmer_var_components(m)
  X <- getME(m, "X"); y <- getME(m, "y")
  V <- Reduce(`+`, Map(`*`, vcmp$values, vcmp$V))
  Lam <- getME(m, "Lambda"); Zs <- getME(m, "Z")
  V_lme4 <- as.matrix(sigma(m)^2 * (Zs %*% Lam %*% t(Lam) %*% t(Zs))) + sigma(m)^2 * diag(nrow(X))
  stopifnot(max(abs(V - V_lme4)) < 1e-8 * max(abs(V)))
  Vi <- solve(V)
  Phi <- solve(t(X) %*% Vi %*% X)
  P <- Vi - Vi %*% X %*% Phi %*% t(X) %*% Vi
  K <- length(vcmp$V)
  ## REML: traces with P; ML (beta profiled out): traces with V^-1
  TV <- lapply(vcmp$V, function(A) (if (reml) P else Vi) %*% A)
  PV <- lapply(vcmp$V, function(A) P %*% A)
  Py <- P %*% y
  score <- sapply(seq_len(K), function(i) -0.5 * sum(diag(TV[[i]])) +
                    0.5 * drop(t(Py) %*% vcmp$V[[i]] %*% Py))
  EIM <- OIM <- matrix(0, K, K)
  for (i in 1:K) for (j in i:K) {
    tr <- sum(TV[[i]] * t(TV[[j]]))
    EIM[i, j] <- EIM[j, i] <- 0.5 * tr
    OIM[i, j] <- OIM[j, i] <- -0.5 * tr + drop(t(Py) %*% vcmp$V[[i]] %*% PV[[j]] %*% Py)
  }
  dPhi <- lapply(vcmp$V, function(A) Phi %*% t(X) %*% Vi %*% A %*% Vi %*% X %*% Phi)
  list(Phi = Phi, dPhi = dPhi, EIM = EIM, OIM = OIM, comps = vcmp, V = V, Vinv = Vi, P = P,
       score = score, X = X, y = y)
}

