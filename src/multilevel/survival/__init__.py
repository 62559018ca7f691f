"""``mestreg``: parametric survival models with random effects (after ``stset``)."""
