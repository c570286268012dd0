"""dlcli validate --data-report: per split counts and class balance, label ranges, constant and missing columns,
and examples shared between training and validation (by content), as text and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.cli import commands  # noqa: F401 - registers the subcommands
from dlcli.cli.main import cli


def _spec(folder: Path, data: str, units: int = 3, loss: str = "sparse_categorical_crossentropy") -> Path:
    path = folder / "spec.toml"
    path.write_text(f'name = "r"\nseed = 0\n[data]\n{data}\n[model]\ninput = {{ shape = [3] }}\n[[model.layers]]\n'
                    f'type = "dense"\nunits = {units}\nactivation = "softmax"\n[train]\nloss = "{loss}"\n')
    return path


def test_the_report_counts_classes_flags_columns_and_finds_shared_examples(tmp_path: Path) -> None:
    lines = ["a,b,flat,label"]
    lines += [f"{i},{i % 7},1,{'cat' if i < 12 else 'dog' if i < 16 else 'fox'}" for i in range(20)]
    lines[5] = "4,NA,1,cat"  # a missing cell, filled with the training mean
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    # validation: two rows equal to training rows (ids 0 and 7), one new
    (tmp_path / "v.csv").write_text("a,b,flat,label\n0,0,1,cat\n7,0,1,cat\n99,3,1,dog\n")
    spec = _spec(tmp_path, 'train = "t.csv"\nvalidation = "v.csv"\ntarget = "label"\nmissing = "fill_mean"')
    result = CliRunner().invoke(cli, ["validate", str(spec), "--data-report", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["data_report"]
    train = report["files"]["train"]
    assert train["reader"] == "csv" and train["rows"] == 20 and train["missing_cells"] == {"b": 1}
    assert train["constant_columns"] == ["flat"] and train["text_columns"] == ["label"]
    split = report["splits"]["train"]
    assert split["examples"] == 20 and split["targets"]["dense"]["classes"] == {"cat": 12, "dog": 4, "fox": 4}
    assert split["targets"]["dense"]["largest_to_smallest"] == 3.0
    assert split["inputs"]["input"]["constant_features"] == {"count": 1, "of": 3, "first": ["flat"]}
    assert report["duplicates"]["validation"] == {"checked": True, "count": 2, "of": 3, "first": [0, 1]}
    text = CliRunner().invoke(cli, ["validate", str(spec), "--data-report"]).output
    assert "! target dense: cat 12 (60.0%), dog 4 (20.0%), fox 4 (20.0%)" in text
    assert "!duplicates train/validation: 2 of 3 validation examples have inputs equal to a training example's " \
           "(first: 0, 1)" in text
    assert "! missing_cells: b 1" in text and text.rstrip().endswith("spec.toml: valid")


def test_a_regression_target_reports_its_range_and_weights_theirs(tmp_path: Path) -> None:
    y = np.array([1.0, 2.0, 4.0, 9.0], np.float32)
    np.savez(tmp_path / "d.npz", x=np.ones((4, 3), np.float32), y=y, w=np.array([1, 1, 2, 0], np.float32))
    spec = _spec(tmp_path, 'train = "d.npz"\nsample_weight = "w"', units=1, loss="mse")
    report = json.loads(CliRunner().invoke(cli, ["validate", str(spec), "--data-report", "--json"]).output)
    split = report["data_report"]["splits"]["train"]
    assert split["targets"]["dense"]["range"] == pytest.approx({"min": 1, "max": 9, "mean": 4, "std": y.std()})
    assert split["weights"]["dense"] == pytest.approx({"min": 0, "max": 2, "mean": 1, "std": np.std([1, 1, 2, 0])})
    assert split["inputs"]["input"]["constant_features"]["count"] == 3


@pytest.mark.parametrize("command", [["validate", "--data-report"], ["debug", "data"]])
def test_a_data_problem_is_still_exit_3_and_one_json_object(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "t.csv").write_text("a,b,c,label\n1,2,x,0\n")
    spec = _spec(tmp_path, 'train = "t.csv"\ntarget = "label"')
    result = CliRunner().invoke(cli, [command[0], *command[1:], str(spec), "--json"])
    assert result.exit_code == 3
    error = json.loads(result.output.splitlines()[-1])
    assert "t.csv, line 2, column 'c': expected a number, found 'x'" in error["message"]


def test_debug_data_prints_the_data_report_of_validate(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,b,flat,label\n1,2,1,cat\n3,4,1,dog\n5,6,1,cat\n7,8,1,fox\n")
    spec = _spec(tmp_path, 'train = "t.csv"\ntarget = "label"\nvalidation_split = 0.34')
    by_validate = CliRunner().invoke(cli, ["validate", str(spec), "--data-report", "--json"])
    by_debug = CliRunner().invoke(cli, ["debug", "data", str(spec), "--json", "--set", "seed=0"])
    assert by_debug.exit_code == 0, by_debug.output
    assert json.loads(by_debug.output) == json.loads(by_validate.output)
    assert json.loads(by_debug.output)["data_report"]["splits"]["train"]["examples"] == 2  # int(4 * (1 - 0.34)), as Keras splits
    text = CliRunner().invoke(cli, ["debug", "data", str(spec)]).output
    assert "target dense: cat" in text and text.rstrip().endswith("spec.toml: valid")


class _LazyRows:
    """A lazy array as readers make them (data/readers/reader.py): rows gathered on demand, with describe()."""

    def __init__(self, values: np.ndarray) -> None:
        self.values, self.shape, self.dtype, self.ndim = values, values.shape, values.dtype, values.ndim
        self.gathered = 0  # the most rows one gather returned

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: np.ndarray | slice) -> np.ndarray:
        rows = self.values[index]
        self.gathered = max(self.gathered, len(rows))
        return rows

    def describe(self) -> dict[str, object]:
        return {"sizes": {"2x2": len(self.values)}}


def test_lazy_inputs_are_described_by_themselves_and_compared_by_hashes_batch_by_batch() -> None:
    from dlcli.train import data_report as module
    from dlcli.train.loop import Split

    rng = np.random.default_rng(0)
    train_values = rng.integers(0, 256, (600, 2, 2), dtype=np.uint8)
    # two training rows (5 and 599, in different batches of the hashing), then three that are not
    other_values = np.concatenate([train_values[[5, 599]], rng.integers(0, 256, (3, 2, 2), dtype=np.uint8)])
    assert not any((train_values == row).all(axis=(1, 2)).any() for row in other_values[2:])
    train, other = _LazyRows(train_values), _LazyRows(other_values)
    found = module.duplicates(Split({"x": train}, {}), Split({"x": other}, {}))
    assert found == {"checked": True, "count": 2, "of": 5, "first": [0, 1]}
    assert train.gathered == module.HASHED_BATCH  # never the whole split at once
    facts = module._input_report(train, None)
    assert facts == {"shape": [2, 2], "dtype": "uint8", "sizes": {"2x2": 600}}


def test_texts_are_compared_by_content_whatever_the_width_of_their_arrays() -> None:
    from dlcli.train.data_report import duplicates
    from dlcli.train.loop import Split

    train = Split({"text": np.array([["a long review, twenty-nine ch"], ["short"], ["é"]]),
                   "x": np.array([[1.0], [2.0], [3.0]], np.float32)}, {})
    other = Split({"text": np.array([["short"], ["é"], ["new"]]),  # '<U5' against '<U29'
                   "x": np.array([[2.0], [4.0], [9.0]], np.float32)}, {})
    assert duplicates(train, other) == {"checked": True, "count": 1, "of": 3, "first": [0]}
    lazy = Split({"text": _LazyRows(train.inputs["text"]), "x": train.inputs["x"]}, {})
    assert duplicates(lazy, other)["count"] == 1


def test_the_text_report_lists_what_a_lazy_input_tells_of_itself() -> None:
    from dlcli.report import render_data_report

    facts = {"shape": [1], "dtype": "string", "texts": 4, "words": {"min": 1, "max": 4}}
    report = {"files": {}, "splits": {"train": {"examples": 4, "inputs": {"input": facts}, "targets": {}}},
              "duplicates": {}}
    assert render_data_report(report).splitlines()[2:] == ["    input input: [1] string", "      texts: 4",
                                                           "      words: min 1, max 4"]


TEXT_MODEL = ('[model]\ninput = { shape = [1], dtype = "string" }\n[[model.layers]]\ntype = "text_vectorization"\n'
              'max_tokens = 30\noutput_mode = "multi_hot"\n[[model.layers]]\ntype = "dense"\nunits = 1\n'
              'activation = "sigmoid"\n[train]\nloss = "binary_crossentropy"\n')


def test_a_text_folder_report_counts_each_file_once_and_names_the_dtype_string(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / "train" / label).mkdir(parents=True)
        for i in range(10):
            (tmp_path / "train" / label / f"{i}.txt").write_text(f"common w{label}{i}")
    (tmp_path / "t.csv").write_text("review,label\nfine film,1\nbad,0\n")
    for data, checked in (('train = "train"', 20), ('train = "t.csv"\ntext = "review"\ntarget = "label"', None)):
        (tmp_path / "s.toml").write_text(f'name = "tv"\nseed = 3\n[data]\n{data}\n{TEXT_MODEL}')
        result = CliRunner().invoke(cli, ["validate", str(tmp_path / "s.toml"), "--data-report", "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)["data_report"]
        assert report["splits"]["train"]["inputs"]["input"]["dtype"] == "string"  # not numpy's <U0 or <U9
        if checked is not None:
            assert report["files"]["train"]["files_checked"] == checked  # one read's worth: 20 files, not 40
            assert report["splits"]["train"]["inputs"]["input"]["texts"] == checked
    text = CliRunner().invoke(cli, ["validate", str(tmp_path / "s.toml"), "--data-report"]).output
    assert "    input input: [1] string" in text


@pytest.mark.parametrize("command", [["validate"], ["validate", "--data-report"], ["debug", "data"]])
def test_a_registry_dataset_not_on_this_machine_is_never_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     command: list[str]) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DLCLI_CACHE", str(cache))
    monkeypatch.delenv("DLCLI_DATASETS_MIRROR", raising=False)
    spec = _spec(tmp_path, 'dataset = "imdb"', units=1, loss="mse")
    plain = CliRunner().invoke(cli, [*command, str(spec)])
    # the spec is valid; its data was not looked at, and validate says so and how to get it (it tried a 17 MB
    # download from validate --data-report and debug data, and exited 3 offline)
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.rstrip().endswith("spec.toml: valid")
    assert plain.stderr == (f"note: data.dataset: imdb (17.5 MB to download) is not on this machine, so its data was "
                            f"not checked (validate never downloads); `dlcli warmup {spec}` or the first `dlcli train` "
                            f"downloads it into the cache (DLCLI_CACHE), or set DLCLI_DATASETS_MIRROR to a folder "
                            f"holding its files\n")
    as_json = json.loads(CliRunner().invoke(cli, [*command, str(spec), "--json"]).stdout)
    assert as_json["valid"] is True and as_json["notes"] == [plain.stderr.removeprefix("note: ").rstrip()]
    if command != ["validate"]:  # the report gives what the registry knows, and no splits
        assert as_json["data_report"] == {
            "files": {"dataset": {"name": "imdb", "on_this_machine": False, "task": "binary", "num_classes": 2,
                                  "input_shape": [None], "size_bytes": 17_464_789}},
            "splits": {}, "duplicates": {}}
        assert "data.dataset: dataset imdb (registry)" in plain.stdout and "on_this_machine: False" in plain.stdout
    assert not cache.exists() or not any(cache.rglob("*"))
