"""The test seam: extra callbacks for a `dlcli train` process, named by the environment.

`DLCLI_TEST_CALLBACKS=package.module` makes every training run add the callbacks that module's `callbacks()`
returns. The subprocess tests use it to slow steps down, hold writes half done and break ranks
(tests/train/faults.py); the faults' code lives there, not here. Unset (always, outside the tests), it adds
nothing and imports nothing.
"""

from __future__ import annotations

import importlib
import os

from dlcli.train.callbacks.base import Callback

SEAM = "DLCLI_TEST_CALLBACKS"


def injected_callbacks() -> list[Callback]:
    """The callbacks of the module DLCLI_TEST_CALLBACKS names, or none when it is unset."""
    module = os.environ.get(SEAM)
    return list(importlib.import_module(module).callbacks()) if module else []
