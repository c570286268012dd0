"""Row scatter-add kernel against np.add.at."""

from __future__ import annotations

import numpy as np

from dlcli.kernels.sparse import scatter_add_rows


def test_scatter_add_rows_matches_numpy_add_at_with_repeats() -> None:
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 7, size=50)  # many repeats
    values = rng.normal(size=(50, 4))
    out = rng.normal(size=(7, 4))
    expected = out.copy()
    np.add.at(expected, rows, values)
    scatter_add_rows(out, rows, values)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
