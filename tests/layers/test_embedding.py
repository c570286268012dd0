"""embedding: gradients with repeated ids (densified), mask_zero, id checks, counts, and training with every
optimizer through its sparse gradient."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlcli import ops
from dlcli.errors import DataError
from dlcli.layers import Layer, create_layer
from dlcli.losses import create_loss
from dlcli.optimizers import create_optimizer
from dlcli.tensor import SparseRows, Tensor, no_grad
from tests.gradcheck import check_param_gradients
from tests.layers.test_layers import build64
from tests.test_optimizers import KERAS_CASES

_IDS = np.array([[1, 4, 4, 0, 7], [4, 1, 2, 2, 0], [7, 7, 7, 7, 7]])  # repeats across and within rows

# name -> (config, per-example input shape, expected per-example output shape)
CASES = {
    "embedding": ({"type": "embedding", "input_dim": 9, "output_dim": 3}, (5,), (5, 3)),
    "embedding_mask_zero_normal_init": ({"type": "embedding", "input_dim": 8, "output_dim": 2, "mask_zero": True,
                                         "embeddings_initializer": "glorot_normal"}, (5,), (5, 2)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_embedding_gradient_matches_finite_differences(name: str) -> None:
    config, in_shape, out_shape = CASES[name]
    layer, built = build64(config, in_shape)
    assert built == out_shape
    out = layer(Tensor(_IDS))
    assert out.shape == (3, *out_shape) and out.dtype == np.float64
    # a second use of the table: the two sparse gradients add up in the tape
    check_param_gradients(lambda: layer(Tensor(_IDS)) * layer(Tensor(_IDS[::-1])), list(layer.params.values()))


def test_embedding_gradient_is_sparse_over_the_ids_looked_up() -> None:
    layer, _ = build64(CASES["embedding"][0], (5,))
    layer(Tensor(_IDS)).sum().backward()
    grad = layer.params["embeddings"].grad
    assert isinstance(grad, SparseRows) and grad.indices.tolist() == [0, 1, 2, 4, 7]
    counts = np.bincount(_IDS.reshape(-1), minlength=9)[[0, 1, 2, 4, 7]]
    np.testing.assert_array_equal(grad.values, np.repeat(counts[:, None], 3, axis=1))


def test_embedding_spec_round_trips_and_defaults_to_keras() -> None:
    layer = create_layer({"type": "embedding", "input_dim": 10, "output_dim": 4})
    assert create_layer(layer.spec.model_dump()).spec == layer.spec
    assert layer.spec.embeddings_initializer == "uniform" and layer.spec.mask_zero is False
    layer.build((6,), np.random.default_rng(0))
    table = layer.params["embeddings"].data
    assert table.dtype == np.float32 and np.abs(table).max() <= 0.05 and np.abs(table).max() > 0.04


def test_embedding_weights_are_named_and_counted_as_keras() -> None:
    layer = create_layer({"type": "embedding", "input_dim": 10000, "output_dim": 32, "name": "embedding_1"})
    assert layer.build((500,), np.random.default_rng(0)) == (500, 32)
    assert list(layer.weights()) == ["embedding_1/embeddings"]
    assert layer.parameter_counts() == (10000 * 32, 0)


def test_mask_zero_sets_the_mask_and_rows_are_looked_up() -> None:
    layer = create_layer({"type": "embedding", "input_dim": 9, "output_dim": 2, "mask_zero": True})
    layer.build((5,), np.random.default_rng(0))
    out = layer(Tensor(_IDS.astype(np.int32)))
    np.testing.assert_array_equal(out.mask, _IDS != 0)
    np.testing.assert_array_equal(out.data, layer.params["embeddings"].data[_IDS])
    plain = create_layer({"type": "embedding", "input_dim": 9, "output_dim": 2})
    plain.build((5,), np.random.default_rng(0))
    assert plain(Tensor(_IDS)).mask is None


@pytest.mark.parametrize("bad,shown", [(9, "found id 9"), (-1, "found id -1")])
def test_out_of_range_ids_are_a_data_error_naming_layer_and_value(bad: int, shown: str) -> None:
    layer = create_layer({"type": "embedding", "input_dim": 9, "output_dim": 2, "name": "words"})
    layer.build((5,), np.random.default_rng(0))
    ids = _IDS.copy()
    ids[1, 3] = bad
    with pytest.raises(DataError, match=shown) as info:
        layer(Tensor(ids))
    assert "'words'" in str(info.value) and "input_dim = 9" in str(info.value)
    assert info.value.exit_code == 3


def test_float_ids_are_cast_and_fractions_rejected() -> None:
    layer = create_layer({"type": "embedding", "input_dim": 9, "output_dim": 2})
    layer.build((5,), np.random.default_rng(0))
    table = layer.params["embeddings"].data
    np.testing.assert_array_equal(layer(Tensor(_IDS.astype(np.float32))).data, table[_IDS])
    with pytest.raises(DataError, match='dtype = "int32"'):
        layer(Tensor(np.array([[1.5, 2.0]], np.float32)))


def _tokens(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of 12 ids from 1..39: the label says whether ids below 20 are the majority."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 40, size=(n, 12))
    y = ((ids < 20).sum(axis=1) > 6).astype(np.int64)
    return ids, y


def _bag_of_embeddings(seed: int) -> tuple[Layer, Layer]:
    rng = np.random.default_rng(seed)
    embedding = create_layer({"type": "embedding", "input_dim": 40, "output_dim": 8})
    dense = create_layer({"type": "dense", "units": 2, "activation": "softmax"})
    dense.build(embedding.build((12,), rng)[1:], rng)
    return embedding, dense


# learning rates that suit a mean of tiny (+-0.05) embeddings: SGD needs large steps
TRAINING_RATES = {"sgd": 5.0, "sgd_momentum": 0.5, "sgd_nesterov": 0.5, "rmsprop": 0.01,
                  "rmsprop_centered_momentum": 0.01, "adagrad": 0.5, "adam": 0.02, "adam_amsgrad": 0.02, "adamw": 0.02}


@pytest.mark.parametrize("name", sorted(KERAS_CASES))
def test_embedding_mean_dense_model_trains_with_every_optimizer(name: str) -> None:
    x, y = _tokens(1024, seed=0)
    embedding, dense = _bag_of_embeddings(seed=1)
    params = {**embedding.weights(), **dense.weights()}
    optimizer = create_optimizer({**KERAS_CASES[name], "learning_rate": TRAINING_RATES[name]}, params)
    loss_fn = create_loss("sparse_categorical_crossentropy")
    batches = np.random.default_rng(2)
    first_loss = None
    for _ in range(300):
        idx = batches.integers(0, len(x), size=32)
        loss = loss_fn(dense(ops.mean(embedding(Tensor(x[idx])), axis=1)), y[idx])
        first_loss = first_loss if first_loss is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        assert isinstance(params["embedding/embeddings"].grad, SparseRows)
        optimizer.step()
    with no_grad():
        final = loss_fn(dense(ops.mean(embedding(Tensor(x)), axis=1)), y).item()
    assert first_loss > 0.6 and final < 0.1, f"{name}: loss {first_loss:.3f} -> {final:.3f} in 300 steps"


def test_embedding_model_trains_from_a_spec_and_resumes_bit_for_bit(tmp_path: Path) -> None:
    # the whole path: int32 input, train loop, sparse Adam, checkpointed slots, exact resume
    from dlcli.checkpoint import load_checkpoint
    from dlcli.spec.load import validate_spec
    from dlcli.train.fit import fit_run

    x, y = _tokens(400, seed=3)
    np.savez(tmp_path / "tokens.npz", x=x.astype(np.int32), y=y)
    doc = {"name": "bag", "seed": 0, "data": {"train": str(tmp_path / "tokens.npz"), "validation_split": 0.25},
           "model": {"input": {"shape": [12], "dtype": "int32"},
                     "layers": [{"type": "embedding", "input_dim": 40, "output_dim": 8, "mask_zero": True},
                                {"type": "global_average_pooling1d"},
                                {"type": "dense", "units": 2, "activation": "softmax"}]},
           "train": {"loss": "sparse_categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.05},
                     "metrics": ["accuracy"], "epochs": 10, "batch_size": 32}}

    def fit(epochs: int, run: str, resume: Path | None = None) -> dict[str, np.ndarray]:
        spec = validate_spec({**doc, "train": {**doc["train"], "epochs": epochs}}, Path("bag.toml"))
        fit_run(spec, tmp_path / run, [], resume=resume)
        return load_checkpoint(tmp_path / run / "checkpoints" / "last.safetensors")[0]

    straight = fit(10, "straight")
    fit(4, "resumed")
    resumed = fit(10, "resumed", resume=tmp_path / "resumed" / "checkpoints" / "last.safetensors")
    assert straight["param/embedding/embeddings"].shape == (40, 8)
    assert straight.keys() == resumed.keys()
    for key in straight:
        np.testing.assert_array_equal(straight[key], resumed[key], err_msg=key)
    history = [json.loads(line) for line in (tmp_path / "straight" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["val_accuracy"] > 0.85, history[-1]
