"""Optimizer backends and the record of an optimization."""
from .backends import BACKENDS, minimize
from .optsummary import OptSummary

__all__ = ["BACKENDS", "OptSummary", "minimize"]
