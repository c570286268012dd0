"""The local dataset mirror tests read MNIST from: $DLCLI_DATASETS_MIRROR, or ../shared/datasets beside the checkout.

Located once, at import, because fixtures clear the environment variable for each test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_BESIDE_CHECKOUT = Path(__file__).resolve().parents[2] / "shared" / "datasets"
_FOUND = next((Path(c) for c in (os.environ.get("DLCLI_DATASETS_MIRROR"), _BESIDE_CHECKOUT)
               if c and (Path(c) / "mnist").is_dir()), None)


def mnist_mirror() -> Path:
    """The mirror folder holding mnist/; a test that needs it fails (never skips) when it is absent."""
    if _FOUND is None:
        pytest.fail("no MNIST mirror: set DLCLI_DATASETS_MIRROR to a folder holding mnist/*.gz "
                    "(CI uses ../shared/datasets beside the checkout)")
    return _FOUND
