"""return_state and initial states in graph models: an encoder hands its final states to a decoder (Keras'
seq2seq), gradient-checked through both, with the ports' names, shapes and errors, and a model that learns."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from click.testing import CliRunner

from dlcli.cli import commands  # noqa: F401 - registers the subcommands
from dlcli.cli.main import cli
from dlcli import ops
from dlcli.errors import SpecError
from dlcli.graph import Model, build_model
from dlcli.ops.recurrent import RecurrentOptions
from dlcli.spec.load import validate_spec
from dlcli.tensor import Tensor, no_grad
from dlcli.train.fit import fit_run
from tests.gradcheck import check_param_gradients

STEPS, VOCAB = 4, 5


def seq2seq(cell: str = "lstm", units: int = 6) -> dict[str, Any]:
    """Encoder over `source`, decoder over `target_in` started from the encoder's final states."""
    states = ["encoder.state_h", "encoder.state_c"] if cell == "lstm" else ["encoder.state_h"]
    return {"name": "s2s", "seed": 0, "data": {"train": "d.npz", "inputs": {"source": "source", "target_in": "target_in"},
                                               "targets": {"next": "next"}},
            "model": {"inputs": {"source": {"shape": [STEPS, VOCAB]}, "target_in": {"shape": [STEPS, VOCAB]}},
                      "nodes": {"encoder": {"type": cell, "units": units, "return_state": True, "input": "source"},
                                "decoder": {"type": cell, "units": units, "return_sequences": True,
                                            "inputs": ["target_in", *states]},
                                "next": {"type": "dense", "units": VOCAB, "activation": "softmax",
                                         "input": "decoder"}},
                      "outputs": {"next": {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}}},
            "train": {"optimizer": {"type": "adam", "learning_rate": 0.02}, "epochs": 1, "batch_size": 32}}


def built(document: dict[str, Any]) -> Model:
    spec = validate_spec(document, Path("s.toml"))
    return build_model(spec.model, np.random.default_rng(0), spec)


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple_rnn"])
def test_gradients_flow_from_the_decoder_into_the_encoder(cell: str) -> None:
    model = built(seq2seq(cell, units=3))
    params = list(model.parameters().values())
    for p in params:
        p.data = p.data.astype(np.float64)
    rng = np.random.default_rng(1)
    inputs = {"source": Tensor(rng.normal(size=(2, STEPS, VOCAB))), "target_in": Tensor(rng.normal(size=(2, STEPS, VOCAB)))}
    check_param_gradients(lambda: model(inputs)["next"], params, rtol=1e-5, atol=1e-8)
    encoder = [p for p in params if p.name.startswith("encoder/")]
    assert encoder and all(np.abs(p.grad).max() > 0 for p in encoder)  # the states carried the gradient back


@pytest.mark.parametrize("return_sequences", [False, True])
def test_the_ports_are_the_final_states(return_sequences: bool) -> None:
    document = seq2seq()
    document["model"]["nodes"]["encoder"]["return_sequences"] = return_sequences
    model = built(document)
    assert model.shapes["encoder.state_h"] == (6,) and model.shapes["encoder.state_c"] == (6,)
    rng = np.random.default_rng(2)
    source = rng.normal(size=(3, STEPS, VOCAB)).astype(np.float32)
    with no_grad():
        values = model.trace({"source": Tensor(source), "target_in": Tensor(source)})
    encoder = values["encoder"].data
    np.testing.assert_array_equal(values["encoder.state_h"].data, encoder[:, -1] if return_sequences else encoder)
    # the states are those that continue the sequence: the last step run alone from the first three's (h, c)
    layer = model.nodes[0].layer
    weights = [layer.kernel, layer.recurrent_kernel, layer.bias]
    with no_grad():
        _, h, c = ops.lstm(Tensor(source[:, :3]), *weights, options=RecurrentOptions(), return_state=True)
        _, last_h, last_c = ops.lstm(Tensor(source[:, 3:]), *weights, options=RecurrentOptions(),
                                     initial_state=[h, c], return_state=True)
    np.testing.assert_allclose(values["encoder.state_c"].data, last_c.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values["encoder.state_h"].data, last_h.data, rtol=1e-5, atol=1e-6)


def _error(change: Any) -> str:
    document = seq2seq()
    change(document)
    with pytest.raises(SpecError) as info:
        built(document)
    return str(info.value)


def test_port_and_state_mistakes_are_spec_errors_naming_the_node() -> None:
    nodes = lambda d: d["model"]["nodes"]  # noqa: E731
    assert "unknown input or node 'encoder.state_x' (did you mean encoder.state_h?)" in _error(
        lambda d: nodes(d)["decoder"]["inputs"].__setitem__(1, "encoder.state_x"))
    assert "unknown input or node 'encoder.state_h'" in _error(
        lambda d: nodes(d)["encoder"].pop("return_state"))
    message = _error(lambda d: nodes(d)["decoder"]["inputs"].pop())
    assert message.startswith("model.nodes.decoder.inputs: lstm takes its sequence, then optionally its initial "
                              "state_h and state_c (3 inputs), got 2 inputs")
    message = _error(lambda d: (nodes(d)["encoder"].__setitem__("units", 5)))
    assert message == "model.nodes.decoder.inputs: the initial state_h must have shape [6] (the layer's units), got [5]"
    assert "dense takes one input, got 2" in _error(
        lambda d: nodes(d)["next"].update({"input": None, "inputs": ["decoder", "encoder.state_h"]}) or
        nodes(d)["next"].pop("input"))
    message = _error(lambda d: nodes(d)["encoder"].update({"input": None, "inputs": ["source", "decoder.state_h"]}) or
                     nodes(d)["encoder"].pop("input"))
    assert "unknown input or node 'decoder.state_h'" in message


def test_return_state_in_a_sequential_model_or_a_bidirectional_layer_is_refused() -> None:
    document = {"name": "s", "data": {"train": "d.npz"}, "model": {
        "input": {"shape": [STEPS, VOCAB]},
        "layers": [{"type": "gru", "units": 3, "return_state": True}, {"type": "dense", "units": 1}]},
        "train": {"loss": "mse"}}
    with pytest.raises(SpecError, match=r"model.layers\[0\].return_state: a sequential model passes on one output"):
        built(document)
    document["model"]["layers"][0] = {"type": "bidirectional", "layer": {"type": "gru", "units": 3,
                                                                         "return_state": True}}
    with pytest.raises(SpecError, match="return_state is not supported inside it"):
        built(document)


def _reversal_data(path: Path, n: int, seed: int) -> None:
    """Decode the source reversed, one token a step, teacher-forced: target_in is the answer shifted right."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCAB, size=(n, STEPS))
    answer = tokens[:, ::-1]
    shifted = np.concatenate([np.zeros((n, 1), int), answer[:, :-1]], axis=1)  # 0 starts the answer
    eye = np.eye(VOCAB, dtype=np.float32)
    np.savez(path, source=eye[tokens], target_in=eye[shifted], next=answer)


def test_an_encoder_decoder_learns_to_reverse_sequences(tmp_path: Path) -> None:
    _reversal_data(tmp_path / "d.npz", 1536, 0)
    _reversal_data(tmp_path / "test.npz", 256, 1)
    document = copy.deepcopy(seq2seq(units=32))
    document["data"]["test"] = "test.npz"
    document["train"]["epochs"] = 12
    fit_run(validate_spec(document, tmp_path / "s.toml"), tmp_path / "run", [])
    result = CliRunner().invoke(cli, ["eval", str(tmp_path / "run"), "--json"])  # from the checkpoint
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.splitlines()[-1])
    assert record["accuracy"] > 0.95 and record["loss"] < 0.2, record
    out = tmp_path / "p.npy"
    predicted = CliRunner().invoke(cli, ["predict", str(tmp_path / "run"), str(tmp_path / "test.npz"), "--output",
                                         str(out)])
    assert predicted.exit_code == 0, predicted.output
    probabilities = np.load(out, allow_pickle=False).reshape(256, STEPS, VOCAB)
    answer = np.load(tmp_path / "test.npz")["next"]
    assert np.mean((probabilities.argmax(-1) == answer).all(axis=1)) > 0.8  # every step right
