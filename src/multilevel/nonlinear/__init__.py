"""``menl``: nonlinear mixed-effects models with Stata's substitutable expressions."""
