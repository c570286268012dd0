"""Every gradient-case table (`CASES`) in tests/ops and tests/layers, found by module, so coverage tests
need no second list: a new test file with a CASES table counts as soon as it exists."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import tests.layers
import tests.ops


def collect_cases(package: Any) -> dict[str, Any]:
    """The union of the CASES dicts of every test module in `package`."""
    found: dict[str, Any] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        found.update(getattr(module, "CASES", {}))
    return found


def op_cases() -> dict[str, Any]:
    """Gradient cases of every op test module, and of the activation table's ops (dlcli/activations.py)."""
    from tests import test_activations

    return {**collect_cases(tests.ops), **test_activations.CASES}


def layer_cases() -> dict[str, Any]:
    """Gradient cases of every layer test module."""
    return collect_cases(tests.layers)


def covers(name: str, cases: dict[str, Any]) -> bool:
    """Whether a case is named `name` or `name_<variant>`."""
    return any(case == name or case.startswith(name + "_") for case in cases)
