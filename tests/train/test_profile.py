"""dlcli profile: per-node times from the one instrumentation, FLOPs, kept activations, phases; its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from dlcli.cli.commands import cli
from dlcli.graph import build_model
from dlcli.optimizers import create_optimizer
from dlcli.spec.load import validate_spec
from dlcli.tensor import Tensor, profile
from dlcli.train.loop import Objective, Split
from dlcli.train.profile import profile_training, report

SPEC = {
    "name": "tiny",
    "data": {"dataset": "digits"},
    "model": {"input": {"shape": [6, 6, 1]}, "layers": [
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "flatten"},
        {"type": "dense", "units": 3, "activation": "softmax"}]},
    "train": {"loss": "sparse_categorical_crossentropy", "optimizer": "sgd", "metrics": ["accuracy"],
              "batch_size": 8},
}


def _profiled(steps: int = 4, doc: dict = SPEC) -> tuple[profile.Profile, dict]:
    spec = validate_spec(doc, Path("tiny.toml"))
    model = build_model(spec.model, np.random.default_rng(0), spec)
    rng = np.random.default_rng(1)
    data = Split({"input": rng.random((20, 6, 6, 1), dtype=np.float32)}, {"output": rng.integers(0, 3, 20)})
    data = Split({next(iter(model.inputs)): data.inputs["input"]}, {next(iter(model.outputs)): data.targets["output"]})
    optimizer = create_optimizer({"type": "sgd"}, model.parameters())
    measured = profile_training(model, Objective(model), optimizer, data, 8, steps, 2, rng)
    return measured, report(measured, "tiny", 8, steps, 2)


def test_every_node_gets_one_forward_and_one_backward_time_per_timed_step() -> None:
    measured, result = _profiled(steps=4)
    assert list(measured.nodes) == ["conv2d", "flatten", "dense"]
    for record in measured.nodes.values():
        assert len(record.forward_s) == 4 and len(record.backward_s) == 4
        assert all(t > 0 for t in record.forward_s)
    assert all(t > 0 for t in measured.nodes["conv2d"].backward_s)
    for phase in ("data", "loss", "loss backward", "optimizer", "metrics", "total"):
        assert len(measured.phases[phase]) == 4
    assert result["total_ms"] > 0 and result["phases"]["other"] >= 0


def test_flops_of_dense_and_conv_follow_their_shapes() -> None:
    measured, result = _profiled()
    # conv2d: 8 images x 4 x 4 positions x (3 x 3 x 1 x 4) kernel, 2 FLOPs each; its input needs no gradient
    assert measured.nodes["conv2d"].forward_flops == 2 * 8 * 16 * 36
    assert measured.nodes["conv2d"].backward_flops == 2 * 8 * 16 * 36
    # dense: 8 rows x (64 x 3) kernel; backward also sends a gradient to the conv below it
    assert measured.nodes["dense"].forward_flops == 2 * 8 * 64 * 3
    assert measured.nodes["dense"].backward_flops == 2 * 2 * 8 * 64 * 3
    assert measured.nodes["flatten"].forward_flops == 0
    rows = {n["node"]: n for n in result["nodes"]}
    assert rows["flatten"]["forward_gflops"] is None
    assert rows["dense"]["forward_gflops"] == 2 * 8 * 64 * 3 / rows["dense"]["forward_ms"] / 1e6


def test_kept_bytes_count_what_the_ops_hold_for_backward_once() -> None:
    measured, _ = _profiled()
    # a 1-channel first conv2d whose input needs no gradient keeps its (valid: unpadded) image, 8 x 6 x 6, for the
    # fused backward (kernels/conv_one_channel.py) and its output (128 x 4), in float32; the kernel is a parameter
    assert measured.nodes["conv2d"].kept_bytes == (8 * 6 * 6 + 128 * 4) * 4
    assert measured.nodes["flatten"].kept_bytes == 0


def test_a_conv_that_computes_its_max_pool_has_the_pairs_row() -> None:
    layers = SPEC["model"]["layers"]
    doc = {**SPEC, "model": {**SPEC["model"], "layers": [layers[0], {"type": "max_pooling2d"}, *layers[1:]]}}
    measured, _ = _profiled(steps=3, doc=doc)
    conv, pool = measured.nodes["conv2d"], measured.nodes["max_pooling2d"]
    # the fused forward and backward (ops.conv2d_max_pool2d) in the conv's row; FLOPs of the conv's own output
    assert conv.forward_flops == 2 * 8 * 16 * 36 and all(t > 0 for t in conv.backward_s)
    assert pool.backward_s == [0.0] * 3 and pool.kept_bytes == 0
    # the image, the pooled output (8 x 2 x 2 x 4, float32) and its argmax (int32): no 4 x 4 conv output
    assert conv.kept_bytes == (8 * 6 * 6 + 2 * 8 * 2 * 2 * 4) * 4


def test_nothing_is_recorded_without_an_active_profile() -> None:
    x = Tensor(np.ones((2, 2), np.float32), requires_grad=True)
    (x * 2.0).sum().backward()
    assert profile.state.active is None
    with profile.recording(profile.Profile()) as active:
        y = x * 3.0
    assert y.op.node is None and active.ops and active.ops[0][1] is y.op
    assert (x * 4.0).op.node is None and len(active.ops) == 1


def test_profile_cli_prints_a_table_and_json_and_refuses_set_on_a_run(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.toml"
    spec.write_text('name = "tiny"\n[data]\ndataset = "digits"\n[model]\ninput = { shape = [64] }\n'
                    '[[model.layers]]\ntype = "dense"\nunits = 10\nactivation = "softmax"\n'
                    '[train]\nloss = "sparse_categorical_crossentropy"\nbatch_size = 16\n')
    runner = CliRunner()
    table = runner.invoke(cli, ["profile", str(spec), "--steps", "3", "--warmup", "1"])
    assert table.exit_code == 0, table.output
    assert "dense" in table.output and "optimizer" in table.output and "total step" in table.output
    result = runner.invoke(cli, ["profile", str(spec), "--steps", "3", "--warmup", "1", "--json",
                                "--set", "train.batch_size=4"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["event"] == "profile" and record["batch_size"] == 4 and record["steps"] == 3
    assert [n["node"] for n in record["nodes"]] == ["dense"]
    assert record["nodes"][0]["forward_gflops"] > 0
    run = tmp_path / "run"
    trained = runner.invoke(cli, ["train", str(spec), "--quiet", "--run-dir", str(run)])
    assert trained.exit_code == 0, trained.output
    of_run = runner.invoke(cli, ["profile", str(run), "--steps", "2", "--warmup", "0", "--json"])
    assert of_run.exit_code == 0, of_run.output
    assert json.loads(of_run.output)["batch_size"] == 16
    refused = runner.invoke(cli, ["profile", str(run), "--set", "train.epochs=2"])
    assert refused.exit_code == 2 and "--set changes a spec file" in refused.output
