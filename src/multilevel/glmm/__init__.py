"""Generalized linear mixed models: families, PIRLS, quadrature, fit and results."""
