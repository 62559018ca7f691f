"""Optimizer backends and the record of an optimization."""
from .backends import BACKENDS, minimize, minimize_newton, minimize_scalar_with_gradient, minimize_with_gradient
from .optsummary import OptSummary

__all__ = ["BACKENDS", "OptSummary", "minimize", "minimize_newton", "minimize_scalar_with_gradient", "minimize_with_gradient"]
