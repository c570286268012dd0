"""dlcli: train deep-learning models from TOML specs on a NumPy tensor core.

OpenBLAS keeps its worker threads spinning for about 2^28 cycles (0.1 s) after each matrix product. On a
machine with as many cores as BLAS threads, the Numba kernels that run next (the recurrent time loops) then
share their cores with idle spinners: an LSTM(32) step over 128 x 500 took 80 ms instead of 54 (measured
here). 2^20 cycles (under 1 ms) still keeps the threads awake between back-to-back products (the MNIST MLP
step is unchanged). OpenBLAS reads the variable when NumPy loads it, so it is set here, before any dlcli module
imports NumPy, unless the user set it.
"""

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

__version__ = "0.1.0"
