"""Registries: one-line docs, no duplicates, did-you-mean, and a gradient case for every op."""

from __future__ import annotations

import pytest

from dlcli import ops, registry
from dlcli.components import load_all
from dlcli.errors import SpecError, UnknownNameError
from dlcli.registry import Registry
from tests import test_losses
from tests.cases import covers, op_cases

load_all()
REGISTRIES = [registry.layers, registry.activations, registry.initializers, registry.losses, registry.optimizers,
              registry.schedules, registry.metrics]
OP_CASES = op_cases()
# ops whose gradient is checked through the loss table (they are the fused losses' kernels)
LOSS_OPS = {"softmax_crossentropy": "categorical_crossentropy_logits",
            "sparse_softmax_crossentropy": "sparse_categorical_crossentropy_logits",
            "sigmoid_binary_crossentropy": "binary_crossentropy_logits"}


@pytest.mark.parametrize("reg", REGISTRIES, ids=lambda r: r.kind)
def test_every_entry_has_a_one_line_doc(reg: Registry) -> None:
    assert reg.names(), f"{reg.kind} registry is empty"
    for entry in reg:
        assert entry.doc and len(entry.doc) < 120, entry.name


@pytest.mark.parametrize("name", ops.__all__)
def test_every_op_has_a_gradient_case(name: str) -> None:
    if name in LOSS_OPS:
        assert LOSS_OPS[name] in test_losses.CASES
    else:
        assert covers(name, OP_CASES), name


def test_unknown_name_lists_known_names_and_closest() -> None:
    with pytest.raises(UnknownNameError) as info:
        registry.optimizers.get("rmsprp")
    message = str(info.value)
    assert "did you mean rmsprop?" in message and "adam, adagrad" not in message and "adagrad, adam" in message
    assert isinstance(info.value, SpecError) and info.value.exit_code == 2


def test_far_off_name_has_no_suggestion() -> None:
    with pytest.raises(UnknownNameError) as info:
        registry.losses.get("zzzzzz")
    assert "did you mean" not in str(info.value)


def test_duplicate_name_or_missing_doc_fails_at_registration() -> None:
    reg = Registry("thing")

    @reg.register("a")
    class A:
        """An a."""

    with pytest.raises(TypeError, match="registered twice"):
        reg.register("a")(type("B", (), {"__doc__": "A b."}))
    with pytest.raises(TypeError, match="docstring"):
        reg.register("c")(type("C", (), {}))


def test_aliases_resolve_to_the_same_entry() -> None:
    assert registry.losses.get("mse") is registry.losses.get("mean_squared_error")
    assert "mse" not in registry.losses.names() and "mse" in registry.losses.names(include_aliases=True)
