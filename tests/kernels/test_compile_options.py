"""Compile options every kernel shares (kernels/__init__.py says why): no C-callable wrapper, which Numba otherwise
builds around every compiled function and which dlcli never calls."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

import numba
import numpy as np
from numba.core.registry import CPUDispatcher

import dlcli.kernels


def _kernels() -> Iterator[tuple[str, CPUDispatcher]]:
    for info in pkgutil.iter_modules(dlcli.kernels.__path__):
        module = importlib.import_module("dlcli.kernels." + info.name)
        for name, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.__module__ == module.__name__:
                yield f"{module.__name__}.{name}", value


def test_every_kernel_is_compiled_without_a_cfunc_wrapper() -> None:
    kernels = dict(_kernels())
    assert len(kernels) > 60  # every family module was found
    assert [name for name, kernel in kernels.items() if not kernel.targetoptions.get("no_cfunc_wrapper")] == []


def test_a_kernel_compiled_with_its_options_has_its_function_and_no_cfunc_wrapper() -> None:
    from dlcli.kernels.sparse import scatter_add_rows

    # a fresh dispatcher with the kernel's own options (no cache: its LLVM IR is kept, a cached load has none)
    options = {k: v for k, v in scatter_add_rows.targetoptions.items() if k not in ("cache", "nopython")}
    fresh = numba.njit(**options)(scatter_add_rows.py_func)
    target = np.zeros((3, 2), np.float32)
    fresh(target, np.array([0, 2, 0]), np.ones((3, 2), np.float32))
    np.testing.assert_array_equal(target, [[2, 2], [0, 0], [1, 1]])
    compiled = next(iter(fresh.overloads.values()))
    ir = compiled.library.get_llvm_str()
    assert compiled.fndesc.llvm_func_name in ir
    assert compiled.fndesc.llvm_cfunc_wrapper_name not in ir
