"""dlcli: train deep-learning models from TOML specs on a NumPy tensor core.

OpenBLAS keeps its worker threads spinning for about 2^28 cycles (0.1 s) after each matrix product. On a
machine with as many cores as BLAS threads, the Numba kernels that run next (the recurrent time loops) then
share their cores with idle spinners: an LSTM(32) step over 128 x 500 took 80 ms instead of 54 (measured
here). The convolutions' Numba passes run between products too, and 2^20 cycles (about 0.4 ms) was still too
long for them: the MNIST convnet's layers took 10.8 ms a step against 9.1 with 2^12 (about 1.5 us; the
Winograd transforms after a product ran 1.8x slower). 2^12 still keeps the threads awake between
back-to-back products (the 16 of a batched matmul; the MNIST MLP step is within noise: 1.26 ms against 1.21,
one A/B). OpenBLAS reads the variable when NumPy loads it, so it is set here, before any dlcli module imports
NumPy, unless the user set it.
"""

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "12")

__version__ = "0.1.0"
