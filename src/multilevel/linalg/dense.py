"""Small dense systems."""
from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dposv, dpotrf


def spd_solve(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with A x = b for a symmetric positive definite A, by LAPACK's Cholesky solver ``dposv``
    (for the small Gram and covariance matrices here: a few µs where ``np.linalg.solve`` costs
    several times that).  Raises ``LinAlgError`` if A is not positive definite."""
    _, x, info = dposv(A, b, lower=1)
    if info:
        raise np.linalg.LinAlgError("the matrix is not positive definite")
    return x


def schur_pivots(A: np.ndarray) -> np.ndarray | None:
    """The squared diagonal of A's Cholesky factor: entry j is the Schur complement of A_jj on the
    leading j×j block (the squared norm of column j's residual on the columns before it, for a
    Gram matrix); None if A is not positive definite."""
    L, info = dpotrf(A, lower=1)
    return None if info else np.diag(L) ** 2
