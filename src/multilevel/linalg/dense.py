"""Small dense systems."""
from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dposv


def spd_solve(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with A x = b for a symmetric positive definite A, by LAPACK's Cholesky solver ``dposv``
    (for the small Gram and covariance matrices here: a few µs where ``np.linalg.solve`` costs
    several times that).  Raises ``LinAlgError`` if A is not positive definite."""
    _, x, info = dposv(A, b, lower=1)
    if info:
        raise np.linalg.LinAlgError("the matrix is not positive definite")
    return x
