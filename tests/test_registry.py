"""Registries: one-line docs, no duplicates, did-you-mean, synonyms and retired names, a gradient case per op."""

from __future__ import annotations

import warnings

import pytest

from dlcli import ops, registry
from dlcli.components import load_all
from dlcli.errors import SpecError, UnknownNameError
from dlcli.registry import Registry, RetiredNameWarning
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


@pytest.mark.parametrize("kind,synonym,name", [
    ("losses", "mse", "mean_squared_error"), ("losses", "mae", "mean_absolute_error"), ("metrics", "acc", "accuracy"),
    ("metrics", "mse", "mean_squared_error"), ("metrics", "top_k_accuracy", "top_k_categorical_accuracy"),
    ("initializers", "random_uniform", "uniform"),
])
def test_synonyms_users_write_resolve_without_a_warning(kind: str, synonym: str, name: str) -> None:
    reg = getattr(registry, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        assert reg.get(synonym) is reg.get(name) and reg.entry(synonym).alias_of == name


def test_a_retired_name_resolves_and_warns_once() -> None:
    reg = Registry("thing")

    @reg.register("new_name", aliases=("short",), retired=("old_name",))
    class Thing:
        """A thing."""

    with pytest.warns(RetiredNameWarning, match="thing 'old_name' is a retired name; write 'new_name'"):
        assert reg.get("old_name") is Thing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reg.get("old_name") is Thing and reg.get("short") is Thing  # once per name; synonyms never
    assert reg.names() == ["new_name"] and reg.names(include_aliases=True) == ["new_name", "old_name", "short"]
    assert reg.spellings("new_name") == ("new_name", "short", "old_name")
