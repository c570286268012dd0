"""Fine-tuning: model.init_from (the mismatch table, --strict, shapes), frozen layers and weights (trainable = false,
train.freeze), frozen batch normalization in inference mode, parameter counts, exact resume of a fine-tuning
run, and use_ema's averaged weights at the end of training."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli.checkpoint import load_checkpoint
from dlcli.errors import CheckpointError, DataError, SpecError
from dlcli.graph import build_model
from dlcli.layers import create_layer
from dlcli.spec.load import validate_spec
from dlcli.tensor import Tensor
from dlcli.train.callbacks import Callback, Run
from tests.train.test_fit import fit, weights_digest, write_blobs

BASE_LAYERS = [{"type": "dense", "units": 8, "activation": "relu", "name": "features"},
               {"type": "batch_normalization", "name": "norm"},
               {"type": "dense", "units": 3, "activation": "softmax", "name": "head"}]


def doc(data: Path, layers: list[dict[str, Any]], **train: Any) -> dict[str, Any]:
    return {"name": "tune", "seed": 3, "data": {"train": str(data), "validation_split": 0.25},
            "model": {"input": {"shape": [2]}, "layers": copy.deepcopy(layers)},
            "train": {"loss": "sparse_categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
                      "metrics": ["accuracy"], "epochs": 2, "batch_size": 16, **train}}


class StartInfo(Callback):
    """Keeps what on_train_begin reported."""

    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        self.info = info


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data, a trained base run) shared by the tests."""
    folder = tmp_path_factory.mktemp("base")
    data = write_blobs(folder / "blobs.npz")
    fit(doc(data, BASE_LAYERS), folder / "base")
    return data, folder / "base"


def _arrays(run: Path, which: str = "best") -> dict[str, np.ndarray]:
    return load_checkpoint(run / "checkpoints" / f"{which}.safetensors")[0]


def test_init_from_loads_by_name_and_reports_the_mismatch_table(base: tuple[Path, Path], tmp_path: Path) -> None:
    data, base_run = base
    layers = [*BASE_LAYERS[:2], {"type": "dense", "units": 3, "activation": "softmax", "name": "new_head"}]
    spec = doc(data, layers, epochs=1, freeze=["features", "norm"])
    spec["model"]["init_from"] = str(base_run)
    start = StartInfo()
    fit(spec, tmp_path / "tuned", [start])
    report = start.info["init_from"]
    assert report == {"source": str(base_run / "checkpoints" / "best.safetensors"),
                      "loaded": ["features/kernel", "features/bias", "norm/gamma", "norm/beta", "norm/moving_mean",
                                 "norm/moving_variance"],
                      "missing": ["new_head/kernel", "new_head/bias"],
                      "unexpected": ["head/bias", "head/kernel"]}
    before, after = _arrays(base_run), _arrays(tmp_path / "tuned", "last")
    for name in ("param/features/kernel", "param/features/bias", "param/norm/gamma", "state/norm/moving_mean",
                 "state/norm/moving_variance"):
        # frozen through a whole epoch: bit-identical to the base run's, moving statistics included
        assert before[name].tobytes() == after[name].tobytes(), name
    assert not any(k.startswith("optimizer/features") for k in after)  # frozen weights have no optimizer slots
    assert start.info["trainable_params"] == 8 * 3 + 3 and start.info["non_trainable_params"] == 2 * 8 + 8 + 4 * 8


def test_strict_refuses_missing_and_unexpected_weights(base: tuple[Path, Path], tmp_path: Path) -> None:
    data, base_run = base
    layers = [*BASE_LAYERS[:2], {"type": "dense", "units": 3, "activation": "softmax", "name": "new_head"}]
    spec = doc(data, layers)
    spec["model"]["init_from"] = str(base_run)
    with pytest.raises(SpecError, match=r"model.init_from: .* does not match this model exactly \(--strict\): missing "
                                        r"new_head/kernel, new_head/bias; unexpected head/bias, head/kernel"):
        fit(spec, tmp_path / "strict", strict=True)
    same = doc(data, BASE_LAYERS, epochs=1)
    same["model"]["init_from"] = str(base_run / "checkpoints" / "last.safetensors")  # a file works too
    fit(same, tmp_path / "exact", strict=True)


def test_a_shape_mismatch_names_both_shapes(base: tuple[Path, Path], tmp_path: Path) -> None:
    data, base_run = base
    layers = [{**BASE_LAYERS[0], "units": 5}, *BASE_LAYERS[1:]]
    spec = doc(data, layers)
    spec["model"]["init_from"] = str(base_run)
    with pytest.raises(SpecError, match=r"features/kernel: checkpoint \[2, 8\], model \[2, 5\]; features/bias: "
                                        r"checkpoint \[8\], model \[5\]"):
        fit(spec, tmp_path / "shapes")
    assert not (tmp_path / "shapes" / "checkpoints").exists()


def test_resuming_a_fine_tuning_run_is_exact_and_does_not_load_again(base: tuple[Path, Path], tmp_path: Path) -> None:
    data, base_run = base
    layers = [*BASE_LAYERS[:2], {"type": "dense", "units": 3, "activation": "softmax", "name": "new_head"}]
    spec = doc(data, layers, epochs=3, freeze=["features/*"])
    spec["model"]["init_from"] = str(base_run)
    fit(spec, tmp_path / "straight")
    first = copy.deepcopy(spec)
    first["train"]["epochs"] = 1
    fit(first, tmp_path / "resumed")
    fit(spec, tmp_path / "resumed", resume=tmp_path / "resumed" / "checkpoints" / "last.safetensors")
    assert weights_digest(tmp_path / "straight" / "checkpoints" / "last.safetensors") == \
        weights_digest(tmp_path / "resumed" / "checkpoints" / "last.safetensors")
    # the unfrozen batch normalization trained on: its statistics moved away from the base's
    assert not np.array_equal(_arrays(tmp_path / "straight", "last")["state/norm/moving_mean"],
                              _arrays(base_run)["state/norm/moving_mean"])


def test_trainable_false_and_freeze_patterns_freeze_and_count(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    layers = [{**BASE_LAYERS[0], "trainable": False}, *BASE_LAYERS[1:]]
    spec = validate_spec(doc(data, layers, freeze=["*/beta"]), Path("s.toml"))
    model = build_model(spec.model, np.random.default_rng(0), spec)
    assert model.parameter_counts() == (8 + 3 * 8 + 3, 2 * 8 + 8 + 8 + 2 * 8)  # gamma and the head train
    assert list(model.trainable_parameters()) == ["norm/gamma", "head/kernel", "head/bias"]
    assert not model.layers[0].trainable and model.layers[1].trainable  # gamma still trains: norm is not frozen
    rows = {row["name"]: row["params"] for row in model.summary_rows()}
    assert rows == {"features": 24, "norm": 32, "head": 27}
    with pytest.raises(SpecError, match=r"train.freeze: 'feature' matches no layer and no weight \(did you mean "
                                        r"features\?\); layers: features, norm, head"):
        build_model(spec.model, np.random.default_rng(0), validate_spec(doc(data, layers, freeze=["feature"]),
                                                                        Path("s.toml")))


@pytest.mark.parametrize("how", ["freeze", "trainable"])
def test_a_model_with_every_weight_frozen_trains_as_keras_does_updating_nothing(base: tuple[Path, Path],
                                                                               tmp_path: Path, how: str) -> None:
    """Keras 3 computes and reports the loss of a model with no trainable weights and updates nothing; dlcli
    failed in the first step's backward (an internal error)."""
    data, base_run = base
    layers = [{**layer, "trainable": False} for layer in BASE_LAYERS] if how == "trainable" else BASE_LAYERS
    spec = doc(data, layers, **({"freeze": ["*"]} if how == "freeze" else {}))
    spec["model"]["init_from"] = str(base_run)
    summary = fit(spec, tmp_path / "frozen")
    assert summary["epochs_run"] == 2
    history = [json.loads(line) for line in (tmp_path / "frozen" / "history.jsonl").read_text().splitlines()]
    # the same weights over the same examples: each epoch's mean loss is the same, up to the order of the sum
    assert history[0]["loss"] > 0 and history[0]["loss"] == pytest.approx(history[1]["loss"], rel=1e-5)
    assert history[0]["val_loss"] == history[1]["val_loss"]
    frozen, original = _arrays(tmp_path / "frozen", "last"), _arrays(base_run)
    kept = [name for name in original if name.startswith(("param/", "state/"))]
    assert kept and all(np.array_equal(frozen[name], original[name]) for name in kept)


def test_frozen_batch_normalization_runs_in_inference_mode_in_training() -> None:
    layer = create_layer({"type": "batch_normalization"})
    layer.build((3,), np.random.default_rng(0))
    layer.moving_mean[...] = [1.0, -1.0, 0.5]
    layer.moving_variance[...] = [4.0, 1.0, 0.25]
    x = Tensor(np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32))
    layer.freeze()
    trained, inferred = layer(x, training=True).data, layer(x, training=False).data
    np.testing.assert_array_equal(trained, inferred)
    assert layer.moving_mean.tolist() == [1.0, -1.0, 0.5]  # Keras 3: a frozen layer's statistics stay put


def test_use_ema_ends_with_the_averaged_weights_in_last_and_raw_ones_in_best(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    spec = doc(data, [BASE_LAYERS[0], BASE_LAYERS[2]], epochs=2)
    spec["train"]["optimizer"] = {"type": "adam", "learning_rate": 0.01, "use_ema": True, "ema_momentum": 0.9}
    fit(spec, tmp_path / "ema")
    last, metadata = load_checkpoint(tmp_path / "ema" / "checkpoints" / "last.safetensors")
    previous, _ = load_checkpoint(tmp_path / "ema" / "checkpoints" / "previous.safetensors")
    assert metadata["weights"] == "averaged" and metadata["epoch"] == 2
    for name in ("features/kernel", "head/bias"):
        np.testing.assert_array_equal(last[f"param/{name}"], previous[f"optimizer/{name}/average"])
        assert not np.array_equal(previous[f"param/{name}"], previous[f"optimizer/{name}/average"])
    best, best_metadata = load_checkpoint(tmp_path / "ema" / "checkpoints" / "best.safetensors")
    assert "weights" not in best_metadata  # best holds the weights validation scored: the raw ones, as in Keras


def test_train_strict_on_the_command_line_exits_2_with_one_paragraph(base: tuple[Path, Path], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dlcli.cli import commands  # noqa: F401 - adds the subcommands to the group
    from dlcli.cli.main import cli

    data, base_run = base
    spec = tmp_path / "tune.toml"
    spec.write_text(f'''name = "tune"
[data]
train = "{data}"
[model]
input = {{ shape = [2] }}
init_from = "{base_run}"
[[model.layers]]
type = "dense"
units = 3
activation = "softmax"
name = "new_head"
[train]
loss = "sparse_categorical_crossentropy"
epochs = 1
''')
    result = CliRunner().invoke(cli, ["train", str(spec), "--strict", "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: tune.toml: model.init_from: ") and result.output.count("\n") == 1, \
        result.output
    assert "missing new_head/kernel, new_head/bias; unexpected " in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()
    loose = CliRunner().invoke(cli, ["train", str(spec), "--run-dir", str(tmp_path / "loose"), "--json"])
    assert loose.exit_code == 0, loose.output
    start = next(json.loads(line) for line in loose.output.splitlines() if '"start"' in line)
    assert start["init_from"]["missing"] == ["new_head/kernel", "new_head/bias"]
    assert start["init_from"]["loaded"] == []


def test_a_wrong_init_from_is_refused_before_the_data_loads(base: tuple[Path, Path], tmp_path: Path) -> None:
    # the data file does not exist either: the init_from error comes first, before any data loads or kernel
    # compiles (on an empty kernel cache, checking it after the data came seconds later)
    _, base_run = base
    missing_data = tmp_path / "missing.npz"
    spec = doc(missing_data, BASE_LAYERS)
    spec["model"]["init_from"] = str(tmp_path / "no_such_run")
    with pytest.raises(CheckpointError, match="no_such_run: no such checkpoint or run directory"):
        fit(spec, tmp_path / "typo")
    spec = doc(missing_data, [{**BASE_LAYERS[0], "units": 5}, *BASE_LAYERS[1:]])
    spec["model"]["init_from"] = str(base_run)
    with pytest.raises(SpecError, match=r"features/kernel: checkpoint \[2, 8\], model \[2, 5\]"):
        fit(spec, tmp_path / "shapes")
    spec = doc(missing_data, BASE_LAYERS)
    spec["model"]["init_from"] = str(base_run)  # a good init_from: the data's own error
    with pytest.raises(DataError, match="missing.npz"):
        fit(spec, tmp_path / "data")


def test_validate_checks_init_from_as_train_does(base: tuple[Path, Path], tmp_path: Path) -> None:
    # validate promises train's checks before the first step: a missing base run, a shape that does not fit and
    # (with --strict) a name on one side only are train's errors, with train's exit codes
    import tomli_w
    from click.testing import CliRunner

    from dlcli.cli import commands  # noqa: F401 - adds the subcommands to the group
    from dlcli.cli.main import cli

    data, base_run = base

    def validate(layers: list[dict[str, Any]], init_from: Path, *flags: str) -> Any:
        spec = doc(data, layers)
        spec["model"]["init_from"] = str(init_from)
        path = tmp_path / "tune.toml"
        path.write_text(tomli_w.dumps(spec))
        return CliRunner().invoke(cli, ["validate", str(path), *flags])

    missing = validate(BASE_LAYERS, tmp_path / "no_such_run")
    assert missing.exit_code == 4, missing.output
    assert missing.output.startswith("error: model.init_from: ") and "no_such_run: no such checkpoint" in \
        missing.output, missing.output
    shapes = validate([{**BASE_LAYERS[0], "units": 5}, *BASE_LAYERS[1:]], base_run)
    assert shapes.exit_code == 2, shapes.output
    assert shapes.output.startswith("error: tune.toml: model.init_from: ") and \
        "features/kernel: checkpoint [2, 8], model [2, 5]" in shapes.output, shapes.output
    head = [*BASE_LAYERS[:2], {**BASE_LAYERS[2], "name": "new_head"}]
    assert validate(head, base_run).exit_code == 0
    strict = validate(head, base_run, "--strict")
    assert strict.exit_code == 2 and "missing new_head/kernel, new_head/bias" in strict.output, strict.output
    assert validate(BASE_LAYERS, base_run, "--strict").exit_code == 0
