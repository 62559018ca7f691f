# Reference values for tests/test_postestimation.py, computed with R + lme4.
# Run from the repository root:  Rscript tests/references/postestimation/make_refs.R
# Writes tests/references/postestimation/lme4_refs.json (committed; the tests never need R).
#
# ICC standard errors are the delta method over the observed information of the
# ML log likelihood (beta profiled out by GLS) in Stata's metric (log SDs), from a
# dense V = Z G Z' + s2 I and numDeriv::hessian: an independent computation.
suppressPackageStartupMessages({library(lme4); library(jsonlite); library(numDeriv)})
dat <- function(f) read.csv(file.path("tests", "data", f))
pig <- dat("pig.csv"); pastes <- dat("pastes.csv"); sleep <- dat("sleepstudy.csv")
pastes$cask_in_batch <- interaction(pastes$batch, pastes$cask)

ml_fit <- function(f, d, reml = FALSE)
  lmer(f, d, REML = reml, control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))

# profiled (over beta) ML log likelihood of a variance-components model:
# Zs = list of indicator matrices, phi = (log sd_1, ..., log sd_m, log sd_e)
vc_loglik <- function(phi, y, X, Zs) {
  n <- length(y); V <- diag(exp(2 * phi[length(phi)]), n)
  for (i in seq_along(Zs)) V <- V + exp(2 * phi[i]) * tcrossprod(Zs[[i]])
  Vi <- solve(V); b <- solve(t(X) %*% Vi %*% X, t(X) %*% Vi %*% y); r <- y - X %*% b
  -0.5 * (n * log(2 * pi) + as.numeric(determinant(V)$modulus) + sum(r * (Vi %*% r)))
}
indicator <- function(g) { g <- factor(g); m <- matrix(0, length(g), nlevels(g)); m[cbind(seq_along(g), as.integer(g))] <- 1; m }
icc_delta <- function(phi, y, X, Zs, which_num) {
  H <- numDeriv::hessian(vc_loglik, phi, y = y, X = X, Zs = Zs)
  V <- solve(-H)
  f <- function(p) { v <- exp(2 * p); sum(v[which_num]) / sum(v) }
  g <- numDeriv::grad(f, phi)
  est <- f(phi); se <- sqrt(as.numeric(t(g) %*% V %*% g))
  z <- qnorm(0.975); l <- qlogis(est); sel <- se / (est * (1 - est))
  list(icc = est, se = se, lower = plogis(l - z * sel), upper = plogis(l + z * sel))
}
sds <- function(m) c(sapply(VarCorr(m), function(v) attr(v, "stddev")), sigma(m))

out <- list(provenance = list(
  software = paste("R", getRversion(), "lme4", packageVersion("lme4"), "numDeriv", packageVersion("numDeriv")),
  script = "tests/references/postestimation/make_refs.R", optimizer = "bobyqa"))

# --- pig: random intercept, ML -------------------------------------------------------
ri <- ml_fit(weight ~ week + (1 | id), pig)
phi <- log(sds(ri)); X <- cbind(1, pig$week)
icc <- icc_delta(phi, pig$weight, X, list(indicator(pig$id)), 1)
new <- data.frame(week = c(1, 5, 9, 3), id = c(1, 2, 3, 999))
out$pig_ri_ml <- list(
  stata = "mixed weight week || id:", loglik = as.numeric(logLik(ri)), AIC = AIC(ri), BIC = BIC(ri),
  df = attr(logLik(ri), "df"), var_id = VarCorr(ri)$id[1], var_resid = sigma(ri)^2, icc = icc,
  fitted_first5 = unname(fitted(ri)[1:5]), resid_first5 = unname(residuals(ri)[1:5]),
  xb_first5 = unname(predict(ri, re.form = NA)[1:5]),
  newdata = new, predict_new = unname(predict(ri, newdata = new, allow.new.levels = TRUE)),
  predict_new_xb = unname(predict(ri, newdata = new, re.form = NA)),
  fixef = unname(fixef(ri)), vcov = unname(as.matrix(vcov(ri))))
# Wald test week = 6 and lincom week + _cons, from lme4's estimates (direct formulas)
b <- fixef(ri); V <- as.matrix(vcov(ri))
out$pig_ri_ml$wald_week_6 <- list(chi2 = (b[["week"]] - 6)^2 / V[2, 2], df = 1,
                                   p = pchisq((b[["week"]] - 6)^2 / V[2, 2], 1, lower.tail = FALSE))
L <- c(1, 1)
out$pig_ri_ml$lincom_week_cons <- list(estimate = sum(L * b), se = sqrt(as.numeric(t(L) %*% V %*% L)))
out$pig_ri_ml$wald_joint <- list(chi2 = as.numeric(t(b) %*% solve(V) %*% b), df = 2)

# within-cluster covariance for id == 1 (Stata's estat wcorrelation)
Z1 <- matrix(1, 9, 1)
Vc <- VarCorr(ri)$id[1] * tcrossprod(Z1) + sigma(ri)^2 * diag(9)
out$pig_ri_ml$wcorr_id1 <- list(sd = sqrt(diag(Vc)), corr = unname(cov2cor(Vc)))

# --- pig: random slopes, ML; LR tests --------------------------------------------------
rs_ind <- ml_fit(weight ~ week + (week || id), pig)
rs_un <- ml_fit(weight ~ week + (week | id), pig)
lr <- function(a, b) { s <- 2 * (as.numeric(logLik(b)) - as.numeric(logLik(a)))
  list(chi2 = s, df = attr(logLik(b), "df") - attr(logLik(a), "df")) }
out$pig_lr <- list(
  ri_vs_rs_ind = c(lr(ri, rs_ind), list(stata = c("mixed weight week || id:", "mixed weight week || id: week"))),
  rs_ind_vs_rs_un = c(lr(rs_ind, rs_un), list(stata = c("mixed weight week || id: week",
                                                        "mixed weight week || id: week, covariance(unstructured)"))),
  loglik = c(ri = as.numeric(logLik(ri)), rs_ind = as.numeric(logLik(rs_ind)), rs_un = as.numeric(logLik(rs_un))))
m_noweek <- ml_fit(weight ~ 1 + (1 | id), pig)
out$pig_lr$noweek_vs_ri <- c(lr(m_noweek, ri), list(stata = c("mixed weight || id:", "mixed weight week || id:")))
Vu <- VarCorr(rs_un)$id
Zc <- cbind(pig$week[pig$id == 1], 1)
Vw <- Zc %*% Vu[c(2, 1), c(2, 1)] %*% t(Zc) + sigma(rs_un)^2 * diag(nrow(Zc))
out$pig_rs_un_ml <- list(stata = "mixed weight week || id: week, covariance(unstructured)",
                         AIC = AIC(rs_un), BIC = BIC(rs_un), wcov_id1 = unname(Vw),
                         recov = unname(as.matrix(Vu[c(2, 1), c(2, 1)])))

# --- pastes: nested, ML: ICCs per level ------------------------------------------------
ps <- ml_fit(strength ~ 1 + (1 | batch) + (1 | cask_in_batch), pastes)
vc <- VarCorr(ps)
phi <- log(c(attr(vc$batch, "stddev"), attr(vc$cask_in_batch, "stddev"), sigma(ps)))
Zs <- list(indicator(pastes$batch), indicator(pastes$cask_in_batch))
Xp <- matrix(1, nrow(pastes), 1)
out$pastes_nested_ml <- list(stata = "mixed strength || batch: || cask:",
  loglik = as.numeric(logLik(ps)), AIC = AIC(ps), BIC = BIC(ps),
  icc_batch = icc_delta(phi, pastes$strength, Xp, Zs, 1),
  icc_cask_batch = icc_delta(phi, pastes$strength, Xp, Zs, c(1, 2)),
  fitted_first5 = unname(fitted(ps)[1:5]),
  fitted_batch_first5 = unname(predict(ps, re.form = ~ (1 | batch))[1:5]))

# --- sleepstudy: REML (AIC/BIC from the restricted log likelihood) ---------------------
ss <- lmer(Reaction ~ Days + (Days | Subject), sleep, REML = TRUE)
out$sleepstudy_rs_un_reml <- list(stata = "mixed Reaction Days || Subject: Days, covariance(unstructured) reml",
  loglik = as.numeric(logLik(ss)), AIC = AIC(ss), BIC = BIC(ss))

# --- the data of stats.stackexchange.com/q/48254 (Stata reses 2.13 REML, 1.32 ML) ----------
se_d <- data.frame(id = rep(1:12, 2), g = c(12, 8, 22, 10, 10, 6, 8, 4, 14, 6, 2, 22, 12, 7, 24, 14, 8, 4, 5, 6, 14, 5, 5, 16))
se_m <- lmer(g ~ (1 | id), se_d, REML = TRUE)
out$stackexchange_48254 <- list(condvar_sd_reml = sqrt(attr(ranef(se_m, condVar = TRUE)$id, "postVar")[1, 1, 1]))

write(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
      file.path("tests", "references", "postestimation", "lme4_refs.json"))
