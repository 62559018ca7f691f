"""Inference: information-matrix SEs, tests, and the frozen results."""
