"""One BLAS thread while a model is fitted.

A fit's dense algebra is many small and medium BLAS/LAPACK calls (k×k blocks, (p+1)²
systems, factors a few hundred to a thousand square).  With OpenBLAS's default of one thread
per core its threads spin and wait on every call: on a 2-core machine, even idle, the crossed
Poisson GLMM of the benchmarks (B6) took 0.5 s instead of 0.12 s, the 10⁶-row model (B4)
0.31–0.54 s instead of 0.26 s, the InstEval-sized crossed model (B3) 2.0 s instead of 1.4 s.
So the fitting entry points run with one BLAS thread and restore the caller's setting after
(threadpoolctl, for numpy's and scipy's own OpenBLAS alike).  The environment variable
``MULTILEVEL_BLAS_THREADS`` sets another count; ``0`` leaves the BLAS libraries alone.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_controllers: list | None = None


def _blas_libraries() -> list:
    """threadpoolctl's controllers of the loaded BLAS libraries (found once, after scipy's
    LAPACK is loaded: scipy ships its own OpenBLAS)."""
    global _controllers
    if _controllers is None:
        import scipy.linalg.lapack  # noqa: F401  (loads scipy's BLAS before the search)
        from threadpoolctl import ThreadpoolController

        _controllers = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    return _controllers


def fitting_threads(func: F) -> F:
    """Run ``func`` with ``MULTILEVEL_BLAS_THREADS`` (default 1) BLAS threads."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wanted = int(os.environ.get("MULTILEVEL_BLAS_THREADS", "1") or 0)
        libraries = _blas_libraries() if wanted > 0 else []
        before = [lib.get_num_threads() for lib in libraries]
        for lib, n in zip(libraries, before):
            if n != wanted:
                lib.set_num_threads(wanted)
        try:
            return func(*args, **kwargs)
        finally:
            for lib, n in zip(libraries, before):
                if n != wanted:
                    lib.set_num_threads(n)

    return wrapper  # type: ignore[return-value]
