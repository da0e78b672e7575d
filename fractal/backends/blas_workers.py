"""BLAS's idle worker threads, stopped before a run that needs the cores (`stop_blas_workers`).

OpenBLAS's workers spin for a while after each multi-threaded call (the caller's own NumPy
products included, and OpenBLAS starting them again when its thread count is raised), on
the cores a run's own threads need next: a cpu-backend run right after one took 1.9x as long
(124 ms against 66), a native flash attention run 2.5x (169 ms against 68).  OpenBLAS starts
them again at its next multi-threaded call.  Both host backends, and the benchmark between
systems, call this one function.  Other BLAS libraries: nothing to do.
"""

from __future__ import annotations

import ctypes
import functools


def stop_blas_workers() -> bool:
    """Stops every loaded OpenBLAS's worker threads (`blas_thread_shutdown_`, found through
    threadpoolctl; about 0.1 ms).  Returns whether there was one to stop."""
    stops = _shutdowns()
    for stop in stops:
        stop()
    return bool(stops)


@functools.lru_cache(maxsize=None)
def _shutdowns() -> tuple:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:   # (a core dependency; without it there is no OpenBLAS to find)
        return ()
    out = []
    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        if lib.internal_api == "openblas":
            fn = getattr(ctypes.CDLL(lib.filepath), "blas_thread_shutdown_", None)
            if fn is not None:
                out.append(fn)
    return tuple(out)
