"""Covariance structures for random effects (one class per Stata ``covariance()``)."""
from .structures import Exchangeable, Identity, Independent, Unstructured, make

__all__ = ["Identity", "Independent", "Exchangeable", "Unstructured", "make"]
