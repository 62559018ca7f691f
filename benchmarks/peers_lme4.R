# lme4 peer for benchmarks/run.py --peers (run only when Rscript exists).
# Usage: Rscript peers_lme4.R PROBLEM CSV REPS
# GLMMs: glmer with nAGQ = 1 (Laplace) or 7 (mode-curvature adaptive quadrature; Stata's
# default mvaghermite is mean-variance adaptive, a slightly different 7-point rule).
# Prints one line "RESULT {json}" in run.py's worker format.
suppressPackageStartupMessages({ library(jsonlite); library(lme4) })
args <- commandArgs(trailingOnly = TRUE)
problem <- args[1]; path <- args[2]; reps <- as.integer(args[3])
dat <- read.csv(path)
fac <- function(d, cols) { for (c in cols) d[[c]] <- factor(d[[c]]); d }
fa <- c_use ~ urban + age + age2 + child1 + child2 + child3 + (1 | district)
fb <- y ~ x1 + x2 + x3 + (1 | g)
f <- switch(sub("_1e.*", "", problem),
  B1 = { dat <- fac(dat, "id"); function() lmer(weight ~ week + (1 | id), dat, REML = FALSE) },
  B2 = { dat <- fac(dat, "Subject"); function() lmer(Reaction ~ Days + (Days | Subject), dat, REML = TRUE) },
  B3 = { dat <- fac(dat, c("s", "d", "dept")); dat$service <- factor(dat$service)
         function() lmer(y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service), dat, REML = FALSE) },
  B4 = { dat <- fac(dat, "g")
         function() lmer(y ~ x1 + x2 + x3 + x4 + x5 + (1 + x1 | g), dat, REML = FALSE) },
  B5a_lap = { dat <- fac(dat, "district"); function() glmer(fa, dat, family = binomial, nAGQ = 1) },
  B5a_agq7 = { dat <- fac(dat, "district"); function() glmer(fa, dat, family = binomial, nAGQ = 7) },
  B5b_lap = { dat <- fac(dat, "g"); function() glmer(fb, dat, family = binomial, nAGQ = 1) },
  B5b_agq7 = { dat <- fac(dat, "g"); function() glmer(fb, dat, family = binomial, nAGQ = 7) },
  B6 = { dat <- fac(dat, c("year", "brood", "location"))
         function() glmer(ticks ~ year + height_s + (1 | brood) + (1 | location), dat, family = poisson) },
  stop("unknown problem ", problem))
times <- c(); fit <- NULL
for (r in seq_len(max(reps, 1))) {
  invisible(gc(verbose = FALSE))
  t0 <- proc.time()[["elapsed"]]
  fit <- suppressWarnings(suppressMessages(f()))
  times <- c(times, proc.time()[["elapsed"]] - t0)
}
warm <- if (length(times) > 1) times[-1] else times
out <- list(problem = problem, peer = "lme4", status = "ok", rows = nrow(dat), times = times,
            first_s = times[1], median_s = median(warm), n_warm = length(times) - 1,
            loglik = as.numeric(logLik(fit)), n_evals = fit@optinfo$feval,
            versions = list(lme4 = as.character(packageVersion("lme4")), R = R.version.string))
cat("RESULT", toJSON(out, auto_unbox = TRUE, digits = NA), "\n")
