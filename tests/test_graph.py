"""Model graphs: sequential and DAG forms, shapes, Keras parameter counts and every structural error."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli.errors import SpecError
from dlcli.graph import build_model
from dlcli.spec.load import validate_spec
from dlcli.tensor import Tensor

TRIAGE: dict[str, Any] = {
    "name": "ticket-triage", "seed": 7,
    "data": {"train": "t.npz"},
    "model": {
        "inputs": {"title": {"shape": [100]}, "text_body": {"shape": [100]}, "tags": {"shape": [10]}},
        "nodes": {
            "features": {"type": "concatenate", "inputs": ["title", "text_body", "tags"]},
            "hidden": {"type": "dense", "input": "features", "units": 8, "activation": "relu"},
            "priority": {"type": "dense", "input": "hidden", "units": 1, "activation": "sigmoid"},
            "department": {"type": "dense", "input": "hidden", "units": 4, "activation": "softmax"},
        },
        "outputs": {"priority": {"loss": "mse"}, "department": {"loss": "categorical_crossentropy",
                                                                "metrics": ["accuracy"]}},
    },
    "train": {"optimizer": "rmsprop"},
}


def _build(doc: dict[str, Any]):
    spec = validate_spec(doc, Path("g.toml"))
    return build_model(spec.model, np.random.default_rng(0), spec)


def test_graph_builds_in_order_with_keras_counts() -> None:
    model = _build(copy.deepcopy(TRIAGE))
    assert [n.name for n in model.nodes][0] == "features"
    assert model.shapes["features"] == (210,) and model.shapes["department"] == (4,)
    assert model.parameter_counts() == (210 * 8 + 8 + 9 + 36, 0)
    out = model({k: Tensor(np.ones((2, *s.shape), np.float32)) for k, s in model.inputs.items()})
    assert out["priority"].shape == (2, 1) and out["department"].shape == (2, 4)
    rows = model.summary_rows()
    assert rows[0]["type"] == "InputLayer" and rows[3]["connected_to"] == ["title[0][0]", "text_body[0][0]",
                                                                          "tags[0][0]"]


def test_sequential_names_layers_as_keras_and_counts_mnist_mlp() -> None:
    doc = {"name": "m", "data": {"dataset": "mnist"},
           "model": {"input": {"shape": [28, 28]},
                     "layers": [{"type": "flatten"}, {"type": "dense", "units": 512, "activation": "relu"},
                                {"type": "dense", "units": 10, "activation": "softmax"}]},
           "train": {"loss": "sparse_categorical_crossentropy"}}
    model = _build(doc)
    assert [n.name for n in model.nodes] == ["flatten", "dense", "dense_1"]
    assert model.parameter_counts() == (407050, 0)  # Keras' summary for Chollet's ch. 2 model
    assert list(model.parameters()) == ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]


def _mutated(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(TRIAGE)
    for path, value in changes.items():
        node = doc["model"]
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[key]
        if value is None:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return doc


@pytest.mark.parametrize("changes,message", [
    ({"nodes__hidden__input": "featurs"},
     "model.nodes.hidden.input: unknown input or node 'featurs' (did you mean features?)"),
    ({"nodes__features__inputs": ["title", "text_body", "tags", "department"]},
     "model.nodes: cycle "),
    ({"nodes__extra": {"type": "dense", "input": "hidden", "units": 3}},
     "model.nodes.extra: not used by any output; connect it or remove it"),
    ({"inputs__unused": {"shape": [3]}}, "model.inputs.unused: not used by any node"),
    ({"outputs__hiden": {"loss": "mse"}}, "model.outputs.hiden: not a node (did you mean hidden?)"),
    ({"nodes__hidden__inputs": ["features", "title"]}, 'model.nodes.hidden: give exactly one of input = "NAME"'),
    ({"nodes__features": {"type": "concatenate", "input": "title"}},
     "model.nodes.features.inputs: concatenate merges two or more inputs, got 1"),
    ({"nodes__features": {"type": "add", "inputs": ["title", "text_body", "tags"]}},
     "model.nodes.features: add needs inputs of one shape, got [100], [100], [10]"),
    ({"nodes__hidden__name": "other"}, "model.nodes.hidden.name: a node is named by its table (hidden)"),
    ({"nodes__title": {"type": "dense", "input": "tags", "units": 2}},
     "model.nodes.title: this name is also a model input"),
    ({"inputs__tags": {"shape": [10**12]}}, "model.inputs.tags.shape: one example of this input has shape"),
    ({"nodes__hidden__units": 10**12}, "model.nodes.hidden: a weight of shape [210, 1000000000000] would need"),
])
def test_graph_errors_name_the_node(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        _build(_mutated(**changes))
    assert str(info.value).startswith(message), str(info.value)


def _with_encoder(extra: dict[str, Any], out_input: str) -> dict[str, Any]:
    """An lstm node `enc` with return_state (ports enc.state_h, enc.state_c), the nodes of `extra`, and the output
    node reading `out_input`."""
    return {"name": "ports", "data": {"train": "x.npz"},
            "model": {"inputs": {"x": {"shape": [8, 8]}},
                      "nodes": {"enc": {"type": "lstm", "input": "x", "units": 4, "return_state": True}, **extra,
                                "out": {"type": "dense", "input": out_input, "units": 10,
                                        "activation": "softmax"}},
                      "outputs": {"out": {"loss": "sparse_categorical_crossentropy"}}}}


@pytest.mark.parametrize("name", ["enc.state_h", "enc.hidden", "enc.a.b"])
def test_a_node_name_that_reads_as_a_port_is_refused(name: str) -> None:
    # a node named like a port of enc was silently shadowed by the port: out read enc's state, not the node
    doc = _with_encoder({name: {"type": "dense", "input": "enc", "units": 3}}, name)
    with pytest.raises(SpecError) as info:
        _build(doc)
    stem = name.replace(".", "_")
    assert str(info.value) == (f"model.nodes.{name}: reads as a port of 'enc' ('.' separates a node from its ports, "
                               f"as in enc.state_h); rename it, e.g. {stem!r}")


def test_a_dotted_name_that_is_no_port_stays_valid() -> None:
    # "block1.conv", as PyTorch users name modules: no node block1, so nothing to shadow (and runs trained with
    # such names must still load)
    model = _build(_with_encoder({"h.1": {"type": "dense", "input": "enc", "units": 3}}, "h.1"))
    assert model.shapes["h.1"] == (3,) and model.nodes[-1].inputs == ["h.1"]


def test_an_input_name_with_a_dot_is_refused() -> None:
    doc = _with_encoder({}, "enc")
    doc["model"]["inputs"] = {"enc.state_c": {"shape": [8, 8]}}
    doc["model"]["nodes"]["enc"]["input"] = "enc.state_c"
    with pytest.raises(SpecError) as info:
        _build(doc)
    assert str(info.value).startswith("model.inputs.enc.state_c: reads as a port of 'enc'")


def test_a_node_name_with_a_slash_is_refused_since_it_would_merge_weight_names() -> None:
    # weights are <node>/<weight>: a node named "enc/lstm_cell" could save a weight under another's name
    doc = _with_encoder({"enc/kernel": {"type": "dense", "input": "enc", "units": 3}}, "enc/kernel")
    with pytest.raises(SpecError) as info:
        _build(doc)
    assert str(info.value) == ("model.nodes.enc/kernel: 'enc/kernel' contains '/', which separates a layer's name "
                               "from its weights' names (dense_1/kernel), so two layers could save a weight under one "
                               "name; write 'enc_kernel'")


def test_a_port_is_still_taken_by_its_name() -> None:
    model = _build(_with_encoder({}, "enc.state_h"))
    assert model.shapes["enc.state_h"] == (4,) and model.nodes[-1].inputs == ["enc.state_h"]


def test_cycle_is_spelled_out() -> None:
    doc = _mutated(nodes__features={"type": "concatenate", "inputs": ["title", "department"]})
    with pytest.raises(SpecError, match=r"cycle (\w+ -> )+\w+; a model must be a DAG"):
        _build(doc)


def test_cycle_names_each_node_once_from_the_first_in_the_spec_in_the_direction_data_flows() -> None:
    doc = _mutated(nodes__features={"type": "concatenate", "inputs": ["title", "department"]})
    with pytest.raises(SpecError) as info:
        _build(doc)
    assert str(info.value) == ("model.nodes: cycle features -> hidden -> department -> features; "
                               "a model must be a DAG")


def test_nodes_run_in_spec_order_where_the_graph_allows() -> None:
    doc = {"name": "order", "data": {"train": "x.npz"},
           "model": {"inputs": {"x": {"shape": [3]}},
                     "nodes": {"late": {"type": "dense", "input": "early", "units": 2},  # needs early first
                               "b": {"type": "dense", "input": "x", "units": 2},
                               "a": {"type": "dense", "input": "x", "units": 2},
                               "early": {"type": "dense", "input": "x", "units": 2},
                               "joined": {"type": "concatenate", "inputs": ["late", "a", "b"]},
                               "out": {"type": "dense", "input": "joined", "units": 1}},
                     "outputs": {"out": {"loss": "mse"}}}}
    # ready from the start, in spec order: b, a, early; late becomes ready after early, joined after late
    assert [node.name for node in _build(doc).nodes] == ["b", "a", "early", "late", "joined", "out"]


def test_output_without_loss_is_a_spec_error() -> None:
    doc = _mutated(outputs__priority={"weight": 1.0})
    with pytest.raises(SpecError, match="model.outputs.priority.loss: required key missing"):
        validate_spec(doc, Path("g.toml"))


def test_graph_form_rejects_train_loss() -> None:
    doc = copy.deepcopy(TRIAGE)
    doc["train"]["loss"] = "mse"
    with pytest.raises(SpecError, match="a graph model gives each output its loss"):
        validate_spec(doc, Path("g.toml"))


def test_inception_and_residual_blocks() -> None:
    doc = {"name": "blocks", "data": {"train": "x.npz"},
           "model": {"inputs": {"x": {"shape": [6]}},
                     "nodes": {"a": {"type": "dense", "input": "x", "units": 4, "activation": "relu"},
                               "b": {"type": "dense", "input": "x", "units": 3, "activation": "tanh"},
                               "c": {"type": "dense", "input": "x", "units": 4},
                               "inception": {"type": "concatenate", "inputs": ["a", "b", "c"]},
                               "proj": {"type": "dense", "input": "inception", "units": 4},
                               "residual": {"type": "add", "inputs": ["proj", "a"]},
                               "out": {"type": "dense", "input": "residual", "units": 1}},
                     "outputs": {"out": {"loss": "mse"}}}}
    model = _build(doc)
    assert model.shapes["inception"] == (11,) and model.shapes["residual"] == (4,)
    order = [n.name for n in model.nodes]
    assert order.index("inception") > max(order.index(k) for k in "abc") and order[-1] == "out"


def test_a_sequential_input_too_big_for_memory_is_refused_before_any_allocation() -> None:
    doc = {"name": "big", "data": {"dataset": "boston_housing"},
           "model": {"input": {"shape": [10**12]}, "layers": [{"type": "normalization"}, {"type": "dense", "units": 1}]},
           "train": {"loss": "mse", "optimizer": "rmsprop"}}
    with pytest.raises(SpecError, match=r"^model.input.shape: one example of this input has shape \[1000000000000\] "
                                        r"and would need 3,725.3 GiB"):
        _build(doc)


@pytest.mark.parametrize("layer,in_shape,message", [
    ({"type": "max_pooling1d"}, [28, 28, 1], "expected rank 3 (batch, steps, channels), found rank 4 (batch, 28, 28, "
                                             '1); add a reshape layer first, e.g. type = "reshape", target_shape = '
                                             "[28, 28]"),
    ({"type": "conv1d", "filters": 2, "kernel_size": 3}, [10, 4, 2],
     "expected rank 3 (batch, steps, channels), found rank 4 (batch, 10, 4, 2); add a reshape layer first, e.g. "
     'type = "reshape", target_shape = [10, 8]'),
    ({"type": "global_average_pooling2d"}, [5, 5], "expected rank 4 (batch, height, width, channels), found rank 3 "
                                                   '(batch, 5, 5); add a reshape layer first, e.g. type = "reshape", '
                                                   "target_shape = [5, 5, 1]"),
    ({"type": "random_flip"}, [784], "expected rank 4 (batch, height, width, channels), found rank 2 (batch, 784); "
                                     'add a reshape layer first, e.g. type = "reshape", target_shape = [28, 28, 1]'),
    ({"type": "gru", "units": 2}, [3, 4, 5, 6], "expected rank 3 (batch, timesteps, features), found rank 5 (batch, "
                                                "3, 4, 5, 6); add a reshape layer first"),
])
def test_the_graph_checks_each_declared_input_rank_with_one_message(layer: dict[str, Any], in_shape: list[int],
                                                                    message: str) -> None:
    doc = {"name": "ranks", "data": {"train": "x.npz"},
           "model": {"input": {"shape": in_shape}, "layers": [layer, {"type": "flatten"}, {"type": "dense", "units": 1}]},
           "train": {"loss": "mse"}}
    with pytest.raises(SpecError) as info:
        _build(doc)
    assert str(info.value) == f"model.layers[0]: {message}"


# A first 3x3 conv2d on 1-channel images whose output only a max pool reads computes the pool's output itself
# (graph._fused_pairs, ops.conv2d_max_pool2d); with another reader the two layers run apart.
CONVNET: dict[str, Any] = {
    "name": "convnet", "seed": 3, "data": {"train": "t.npz"},
    "model": {"input": {"shape": [14, 14, 1]}, "layers": [
        {"type": "conv2d", "filters": 8, "kernel_size": 3, "activation": "relu"},
        {"type": "max_pooling2d", "pool_size": 2},
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]},
    "train": {"loss": "sparse_categorical_crossentropy", "optimizer": "rmsprop"},
}


def test_a_conv_read_only_by_a_max_pool_computes_the_pools_output() -> None:
    from dlcli.ops.pool import ConvMaxPool

    model = _build(CONVNET)
    assert model.fused == {"conv2d": "max_pooling2d"}  # not conv2d_1: 8 input channels
    x = Tensor(np.random.default_rng(0).random((3, 14, 14, 1), dtype=np.float32))
    values = model.trace({"input": x}, training=True)
    pooled = values["max_pooling2d"]
    assert type(pooled.op) is ConvMaxPool and pooled.op.inputs[0] is x and pooled.shape == (3, 6, 6, 8)
    assert values["conv2d"] is pooled  # the conv's value is the pooled one, which only the pool reads
    conv, pool = model.nodes[0].layer, model.nodes[1].layer
    apart = pool(conv(x))
    np.testing.assert_allclose(pooled.data, apart.data, rtol=0, atol=4e-7 * np.abs(apart.data).max())


@pytest.mark.parametrize("change", [{"algorithm": "winograd"}, {"kernel_size": 5}, {"activation": "gelu"}])
def test_a_first_conv_the_fused_forward_cannot_take_runs_apart_from_its_pool(change: dict[str, Any]) -> None:
    doc = copy.deepcopy(CONVNET)
    doc["model"]["layers"][0].update(change)
    assert _build(doc).fused == {}


def test_a_conv_with_another_reader_keeps_its_output() -> None:
    doc = {**CONVNET, "train": {"optimizer": "rmsprop"}, "model": {
        "inputs": {"image": {"shape": [14, 14, 1]}},
        "nodes": {"conv": {"type": "conv2d", "input": "image", "filters": 8, "kernel_size": 3, "activation": "relu"},
                  "pool": {"type": "max_pooling2d", "input": "conv", "pool_size": 2},
                  "wide": {"type": "global_average_pooling2d", "input": "conv"},
                  "narrow": {"type": "global_average_pooling2d", "input": "pool"},
                  "both": {"type": "concatenate", "inputs": ["wide", "narrow"]},
                  "out": {"type": "dense", "input": "both", "units": 3, "activation": "softmax"}},
        "outputs": {"out": {"loss": "sparse_categorical_crossentropy"}}}}
    model = _build(doc)
    assert model.fused == {}
    x = Tensor(np.random.default_rng(0).random((3, 14, 14, 1), dtype=np.float32))
    values = model.trace({"image": x}, training=True)
    conv, pool = model.nodes[0].layer, model.nodes[1].layer
    assert values["conv"].shape == (3, 12, 12, 8)  # the other reader gets the whole conv output
    np.testing.assert_array_equal(values["wide"].data, values["conv"].data.mean(axis=(1, 2)))
    np.testing.assert_array_equal(values["pool"].data, pool(conv(x)).data)
    (values["out"] * Tensor(np.arange(9, dtype=np.float32).reshape(3, 3))).sum().backward()  # softmax sums to 1
    assert conv.kernel.grad is not None and np.abs(conv.kernel.grad).max() > 0


def test_training_steps_give_the_weights_of_the_unfused_layers() -> None:
    from dlcli.optimizers import create_optimizer
    from dlcli.train.loop import Objective

    rng = np.random.default_rng(5)
    batches = [(rng.random((16, 14, 14, 1), dtype=np.float32), rng.integers(0, 3, 16)) for _ in range(4)]
    weights, first_gradients, initial = [], [], None
    for fused in (True, False):
        model = _build(CONVNET)
        if not fused:
            model.fused = {}
        objective, params = Objective(model), model.parameters()
        initial = initial or {name: t.data.copy() for name, t in params.items()}
        optimizer = create_optimizer({"type": "rmsprop"}, params)
        for step, (images, labels) in enumerate(batches):
            for t in params.values():
                t.zero_grad()
            loss, _ = objective.loss(model({"input": Tensor(images)}, training=True), {"dense": labels})
            loss.backward()
            if step == 0:
                first_gradients.append({name: t.grad.copy() for name, t in params.items()})
            optimizer.step()
        weights.append({name: t.data.copy() for name, t in params.items()})
    for name, value in weights[0].items():
        largest = np.abs(first_gradients[1][name]).max()
        np.testing.assert_allclose(first_gradients[0][name], first_gradients[1][name], rtol=0, atol=1e-5 * largest,
                                   err_msg=name)  # float32 summation order
        # RMSprop moves each weight by about lr a step whatever its gradient's size: the weights moved, alike
        assert np.abs(value - initial[name]).max() > 1e-3
        np.testing.assert_allclose(value, weights[1][name], rtol=0, atol=1e-5, err_msg=name)


def test_a_deep_copy_of_a_model_with_a_fused_pair_runs_its_own_layers() -> None:
    # lr_range trains a deep copy and leaves the model as it was: the copy's fused conv must use its own kernel
    model = _build(CONVNET)
    trained = copy.deepcopy(model)
    x = Tensor(np.random.default_rng(0).random((3, 14, 14, 1), dtype=np.float32))
    (trained({"input": x}, training=True)["dense"] * Tensor(np.arange(9.0).reshape(3, 3))).sum().backward()
    assert trained.nodes[0].layer.kernel.grad is not None and model.nodes[0].layer.kernel.grad is None


def _text_to_embedding(vectorizer: dict[str, Any], embedding: dict[str, Any], graph: bool = False) -> dict[str, Any]:
    layers = [{"type": "text_vectorization", "output_sequence_length": 4, **vectorizer}, embedding,
              {"type": "global_average_pooling1d"}, {"type": "dense", "units": 1}]
    doc: dict[str, Any] = {"name": "t", "data": {"train": "t"}, "train": {} if graph else {"loss": "mse"}}
    if not graph:
        doc["model"] = {"input": {"shape": [1], "dtype": "string"}, "layers": layers}
        return doc
    names = ["vec", "emb", "pool", "out"]
    nodes = {name: {**layer, "input": source} for name, layer, source in zip(names, layers, ["text", *names])}
    doc["model"] = {"inputs": {"text": {"shape": [1], "dtype": "string"}}, "nodes": nodes,
                    "outputs": {"out": {"loss": "mse"}}}
    return doc


@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("vectorizer, embedding, message", [
    ({"max_tokens": 100}, {"type": "embedding", "input_dim": 10, "output_dim": 2},
     "{emb}.input_dim: embedding 'embedding' has rows for ids 0..9 (input_dim = 10), but {vec} (text_vectorization) "
     "can make ids up to 99: max_tokens = 100 counts the padding and OOV entries (ids 0 and 1), as in Keras; set "
     "{emb}.input_dim to at least 100, or {vec}.max_tokens to at most 10"),
    ({"vocabulary": ["a", "b", "c"]}, {"type": "positional_embedding", "input_dim": 4, "output_dim": 2,
                                       "sequence_length": 4},
     "{emb}.input_dim: positional_embedding 'positional_embedding' has rows for ids 0..3 (input_dim = 4), but {vec} "
     "(text_vectorization) can make ids up to 4: its vocabulary has 3 tokens after the padding and OOV entries "
     "(ids 0 and 1); set {emb}.input_dim to at least 5, or shorten {vec}.vocabulary"),
])
def test_a_vectorizer_whose_ids_outgrow_the_next_embedding_is_refused_naming_both_keys(
        vectorizer: dict[str, Any], embedding: dict[str, Any], message: str, graph: bool) -> None:
    from dlcli.graph import check_ids_fit

    keys = {"vec": "model.nodes.vec", "emb": "model.nodes.emb"} if graph else \
        {"vec": "model.layers[0]", "emb": "model.layers[1]"}
    model = _build(_text_to_embedding(vectorizer, embedding, graph))
    if graph:
        message = message.replace("'embedding'", "'emb'").replace("'positional_embedding'", "'emb'")
    with pytest.raises(SpecError) as info:
        check_ids_fit(model)
    assert str(info.value) == message.format(**keys)
    fits = {**embedding, "input_dim": 100 if "max_tokens" in vectorizer else 5}  # exactly enough rows
    check_ids_fit(_build(_text_to_embedding(vectorizer, fits, graph)))


def test_an_unbounded_vectorizer_outgrowing_its_embedding_in_training_names_max_tokens() -> None:
    from dlcli.errors import DataError

    embedding = {"type": "embedding", "input_dim": 5, "output_dim": 2}
    model = _build(_text_to_embedding({}, embedding))  # no max_tokens: adapting decides, so no check can
    vectorizer = model.nodes[0].layer
    vectorizer.adapt(np.array([["a b c d e f g"]]))  # 7 words + 2 reserved: ids up to 8
    with pytest.raises(DataError) as info:
        model({"input": Tensor(np.array([["g a"]]))})
    assert str(info.value) == (
        "model.layers[1] (embedding 'embedding'): found id 8, but ids must lie in 0..4 (input_dim = 5); set "
        "input_dim to at least 9, or cap the vocabulary of model.layers[0] (text_vectorization): max_tokens = 5, "
        "which counts its padding and OOV entries")
    plain = _build({"name": "n", "data": {"train": "t"}, "train": {"loss": "mse"},
                    "model": {"input": {"shape": [2], "dtype": "int64"}, "layers": [
                        embedding, {"type": "global_average_pooling1d"}, {"type": "dense", "units": 1}]}})
    with pytest.raises(DataError, match=r"set input_dim to at least 8, or give the data fewer distinct ids"):
        plain({"input": Tensor(np.array([[7, 1]]))})


def test_validate_and_train_refuse_it_before_reading_the_data(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dlcli.cli import commands  # noqa: F401 - registers the subcommands
    from dlcli.cli.main import cli

    spec = tmp_path / "t.toml"
    spec.write_text('name = "t"\n[data]\ntrain = "missing_folder"\n[model]\ninput = { shape = [1], dtype = "string" }\n'
                    '[[model.layers]]\ntype = "text_vectorization"\nmax_tokens = 100\noutput_sequence_length = 8\n'
                    '[[model.layers]]\ntype = "embedding"\ninput_dim = 10\noutput_dim = 4\n[[model.layers]]\n'
                    'type = "global_average_pooling1d"\n[[model.layers]]\ntype = "dense"\nunits = 1\n'
                    '[train]\nloss = "mse"\n')
    for arguments in (["validate", str(spec)], ["train", str(spec), "--run-dir", str(tmp_path / "run")]):
        result = CliRunner().invoke(cli, arguments)
        assert result.exit_code == 2, result.output  # not 3: the data folder does not exist
        assert "t.toml: model.layers[1].input_dim: embedding 'embedding' has rows for ids 0..9" in result.output
        assert "model.layers[0].max_tokens to at most 10" in result.output
