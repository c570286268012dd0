"""The BLAS that np.dot calls inside Numba kernels (SciPy's OpenBLAS), held to one thread while a kernel runs.

Numba's np.dot calls BLAS through scipy.linalg.cython_blas, a different OpenBLAS from NumPy's. Recurrent
kernels make one small GEMM per time step ((128, 32) @ (32, 128) for LSTM(32)); OpenBLAS splits that over its
threads, and waking them costs more than the product: 51 us a step with two threads against 21 us with one
(measured here), and 10x worse when other processes hold the cores. NumPy's large GEMMs keep their threads,
except where an op runs its own blocks of small ones on threads (the Winograd convolution: one_thread(numpy=True)).
"""

from __future__ import annotations

import contextlib
import ctypes
from pathlib import Path
from typing import Callable, Iterator


def _thread_controls(package: str) -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """(get, set) for the number of threads of the OpenBLAS bundled with `package` (scipy, numpy), or None where
    it cannot be found (another BLAS, another wheel layout): then kernels simply run with whatever threading
    that BLAS has."""
    try:
        module = __import__(package)
        if package == "scipy":
            import scipy.linalg.cython_blas  # noqa: F401 - loads the library, so CDLL below finds it loaded
    except ImportError:  # pragma: no cover - scipy is a dependency
        return None
    for path in sorted((Path(module.__file__).parent.parent / f"{package}.libs").glob("libscipy_openblas*")):
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:  # pragma: no cover - a file we cannot load is not the library
            continue
        for prefix in ("scipy_", ""):
            for suffix in ("", "64_"):  # NumPy's is the 64-bit-integer build, its symbols suffixed
                get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                    return get, set_
    return None  # pragma: no cover - depends on how scipy was built


_CONTROLS = _thread_controls("scipy")
_NUMPY_CONTROLS = _thread_controls("numpy")


@contextlib.contextmanager
def one_thread(numpy: bool = False) -> Iterator[None]:
    """Run the block with SciPy's OpenBLAS (or with numpy=True, NumPy's) on one thread, then restore its thread
    count."""
    controls = _NUMPY_CONTROLS if numpy else _CONTROLS
    if controls is None:  # pragma: no cover - depends on how scipy and numpy were built
        yield
        return
    get, set_ = controls
    previous = get()
    set_(1)
    try:
        yield
    finally:
        set_(previous)
