"""Imports every module that registers components, so each registry is complete."""

from __future__ import annotations


def load_all() -> None:
    """Fill every registry (layers, activations, initializers, losses, optimizers, schedules, metrics, callbacks)."""
    import dlcli.activations  # noqa: F401
    import dlcli.initializers  # noqa: F401
    import dlcli.layers  # noqa: F401
    import dlcli.losses  # noqa: F401
    import dlcli.metrics  # noqa: F401
    import dlcli.optimizers  # noqa: F401
    import dlcli.schedules  # noqa: F401
    import dlcli.train.callbacks  # noqa: F401 - ranked with the components, as a spec names them (test_layering)
