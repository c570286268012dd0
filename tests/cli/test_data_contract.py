"""Issue 13's data contract, through the command line as users run it: never a wrong answer with exit 0, CSV columns
by name, class names, missing values by policy, and every data problem exit 3 naming its file and line or row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

N = 40


def dlcli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `dlcli ARGS` in a subprocess, as a user would (not on a terminal, CI set)."""
    return subprocess.run([sys.executable, "-m", "dlcli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "CI": "true"})


def error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """The one-paragraph error message, after checking the exit code and that every fragment is in it."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    return result.stderr


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    return path


def write_spec(folder: Path, name: str, train: str, data: str = 'target = "label"', units: int = 2,
               loss: str = "sparse_categorical_crossentropy") -> str:
    (folder / f"{name}.toml").write_text(
        f'name = "{name}"\nseed = 0\n[data]\ntrain = "{train}"\n{data}\n[model]\ninput = {{ shape = [3] }}\n'
        f'[[model.layers]]\ntype = "dense"\nunits = {units}\nactivation = "softmax"\n[train]\nloss = "{loss}"\n'
        f'epochs = 1\nbatch_size = 8\n')
    return f"{name}.toml"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data files and a trained run, `numbers` (a,b,c -> label 0/1)."""
    folder = tmp_path_factory.mktemp("contract")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 3)).round(3)
    labels = (x[:, 0] + x[:, 1] > 0).astype(int)
    rows = [[*x[i], labels[i]] for i in range(N)]
    write_csv(folder / "t.csv", ["a", "b", "c", "label"], rows)
    write_csv(folder / "plain.csv", ["a", "b", "c"], [row[:3] for row in rows[:6]])
    animals = np.array(["dog", "cat", "fox"])[np.digitize(x[:, 0], [-0.5, 0.5])]
    write_csv(folder / "animals.csv", ["a", "b", "c", "species"], [[*x[i], animals[i]] for i in range(N)])
    assert dlcli("train", write_spec(folder, "numbers", "t.csv"), "--run-dir", "numbers", cwd=folder).returncode == 0
    return folder


@pytest.fixture(scope="module")
def animals(folder: Path) -> Path:
    """A run trained on class names: a,b,c -> species (cat, dog or fox)."""
    spec = write_spec(folder, "animals", "animals.csv", 'target = "species"', units=3)
    trained = dlcli("train", spec, "--run-dir", "animals", cwd=folder)
    assert trained.returncode == 0, trained.stderr
    return folder


def test_predict_refuses_nan_and_infinite_rows_naming_their_lines(folder: Path) -> None:
    rows = [line.split(",") for line in (folder / "plain.csv").read_text().splitlines()[1:6]]
    rows[1][2], rows[3][0] = "nan", "inf"
    write_csv(folder / "bad.csv", ["a", "b", "c"], rows)
    error(dlcli("predict", "numbers", "bad.csv", cwd=folder), 3,
          "bad.csv, lines 3, 5: NaN, infinity or a missing value in 2 of 5 examples", "--allow-nonfinite")
    x = np.ones((6, 3), np.float32)
    x[2, 1] = np.nan
    np.savez(folder / "bad.npz", x=x)
    error(dlcli("predict", "numbers", "bad.npz", cwd=folder), 3, "bad.npz, row 2 (counting from 0)", "1 of 6")


def test_allow_nonfinite_predicts_those_rows_marked(folder: Path) -> None:
    rows = [line.split(",") for line in (folder / "plain.csv").read_text().splitlines()[1:6]]
    rows[1][2], rows[3][0] = "nan", "inf"
    write_csv(folder / "marked.csv", ["a", "b", "c"], rows)
    result = dlcli("predict", "numbers", "marked.csv", "--allow-nonfinite", "--json", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["nonfinite"] for line in result.stdout.splitlines()] == [False, True, False, True, False]
    plain = dlcli("predict", "numbers", "marked.csv", "--allow-nonfinite", cwd=folder).stdout.splitlines()
    assert plain[1].endswith(" nonfinite=true") and plain[0].endswith(" nonfinite=false")
    written = dlcli("predict", "numbers", "marked.csv", "--allow-nonfinite", "--output", "m.csv", cwd=folder)
    assert written.returncode == 0, written.stderr
    assert (folder / "m.csv").read_text().splitlines()[0].split(",")[-1] == "nonfinite"


def test_csv_columns_are_matched_by_name_not_position(folder: Path) -> None:
    rows = [line.split(",") for line in (folder / "plain.csv").read_text().splitlines()[1:]]
    write_csv(folder / "reordered.csv", ["c", "a", "b"], [[c, a, b] for a, b, c in rows])
    write_csv(folder / "extra.csv", ["label", "b", "z", "c", "a"], [[0, b, 9, c, a] for a, b, c in rows])
    expected = dlcli("predict", "numbers", "plain.csv", cwd=folder)
    assert expected.returncode == 0 and len(expected.stdout.splitlines()) == 6
    for name in ("reordered.csv", "extra.csv"):  # other order; a target and an unknown column besides
        assert dlcli("predict", "numbers", name, cwd=folder).stdout == expected.stdout, name
    lines = (folder / "t.csv").read_text().splitlines()
    write_csv(folder / "t_reordered.csv", ["label", "c", "b", "a"],
              [list(reversed(line.split(","))) for line in lines[1:]])
    first, second = (json.loads(dlcli("eval", "numbers", "--data", data, "--json", cwd=folder).stdout)
                     for data in ("t.csv", "t_reordered.csv"))
    assert first["loss"] == second["loss"] and first["samples"] == second["samples"] == N


def test_a_missing_column_is_an_error_naming_it(folder: Path) -> None:
    write_csv(folder / "nocol.csv", ["a", "c"], [[1, 2]])
    error(dlcli("predict", "numbers", "nocol.csv", cwd=folder), 3,
          "nocol.csv has no column 'b'", "trained on the columns a, b, c")


def test_zero_rows_are_a_data_error_naming_the_file_in_every_command(folder: Path) -> None:
    np.save(folder / "x_empty.npy", np.zeros((0, 3), np.float32))
    np.save(folder / "y_empty.npy", np.zeros(0, np.int64))
    np.savez(folder / "empty.npz", x=np.zeros((0, 3), np.float32), y=np.zeros(0, np.int64))
    (folder / "header.csv").write_text("a,b,c,label\n")
    for train, fragment in (("x_empty.npy", "x_empty.npy holds no examples (zero rows, shape [0, 3])"),
                            ("empty.npz", "empty.npz, array 'x' holds no examples"),
                            ("header.csv", "header.csv has a header row but no examples (zero rows)")):
        spec = write_spec(folder, "empty", train)
        error(dlcli("train", spec, cwd=folder), 3, "data.train: ", fragment)
        error(dlcli("validate", spec, cwd=folder), 3, "data.train: ", fragment)
    error(dlcli("eval", "numbers", "--data", "header.csv", cwd=folder), 3, "header.csv has a header row but no")
    error(dlcli("eval", "numbers", "--data", "empty.npz", cwd=folder), 3, "empty.npz, array 'x' holds no examples")
    error(dlcli("predict", "numbers", "x_empty.npy", cwd=folder), 3, "x_empty.npy holds no examples")


def test_complex_datetime_and_boolean_text_features_are_refused_naming_the_array(folder: Path) -> None:
    x = np.ones((N, 3))
    np.savez(folder / "complex.npz", x=x + 1j, y=np.zeros(N, int))
    np.savez(folder / "dates.npz", x=np.full((N, 3), "2024-01-01", "datetime64[D]"), y=np.zeros(N, int))
    np.savez(folder / "words.npz", x=np.full((N, 3), "true"), y=np.zeros(N, int))
    write_csv(folder / "bools.csv", ["a", "b", "c", "label"], [[1, 2, "false", 0]] * 4)
    for train, fragment in (("complex.npz", "complex.npz, array 'x' holds complex numbers (dtype complex128)"),
                            ("dates.npz", "dates.npz, array 'x' holds dates or times (dtype datetime64[D])"),
                            ("words.npz", "words.npz, array 'x': the data is text (dtype <U4)"),
                            ("bools.csv", "bools.csv, line 2, column 'c': expected a number, found 'false'")):
        error(dlcli("train", write_spec(folder, "kinds", train), cwd=folder), 3, fragment)
    np.savez(folder / "complex_in.npz", x=np.ones((2, 3)) * 1j)
    error(dlcli("predict", "numbers", "complex_in.npz", cwd=folder), 3, "complex_in.npz, array 'x' holds complex")


def test_string_targets_become_sorted_class_ids_and_predict_reports_the_names(animals: Path) -> None:
    folder = animals
    result = dlcli("predict", "animals", "plain.csv", "--json", cwd=folder)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for record in records:
        probabilities = [record[f"probability_{k}"] for k in range(3)]
        assert record["label_id"] == int(np.argmax(probabilities))
        assert record["label"] == ["cat", "dog", "fox"][record["label_id"]]  # sorted, as Keras and scikit-learn
    first = dlcli("predict", "animals", "plain.csv", cwd=folder).stdout.splitlines()[0]
    assert f"label={records[0]['label']} label_id={records[0]['label_id']} " in first
    assert dlcli("predict", "animals", "plain.csv", "--output", "p.csv", cwd=folder).returncode == 0
    header, row = (folder / "p.csv").read_text().splitlines()[:2]
    assert header.startswith("label,label_id,") and row.startswith(f"{records[0]['label']},{records[0]['label_id']},")
    evaluated = dlcli("eval", "animals", "--data", "animals.csv", "--json", cwd=folder)
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["samples"] == N


def test_an_unknown_class_in_evaluation_data_is_named(animals: Path) -> None:
    folder = animals
    lines = (folder / "animals.csv").read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0] + ",cow"
    (folder / "unknown.csv").write_text("\n".join(lines) + "\n")
    error(dlcli("eval", "animals", "--data", "unknown.csv", cwd=folder), 3,
          "unknown.csv, line 5, column 'species': class 'cow' is not one of the 3 classes of the training data "
          "(cat, dog, fox)")


def test_missing_values_follow_the_declared_policy(folder: Path) -> None:
    rows = [line.split(",") for line in (folder / "t.csv").read_text().splitlines()[1:]]
    rows[4][1], rows[9][0], rows[20][2] = "", "NA", "null"
    write_csv(folder / "gaps.csv", ["a", "b", "c", "label"], rows)
    error(dlcli("train", write_spec(folder, "gaps", "gaps.csv"), cwd=folder), 3,
          "gaps.csv, line 6, column 'b': expected a number, found an empty cell, a missing value (3 missing cells "
          "in 3 rows)", 'data.missing = "drop_rows"')
    dropped = dlcli("train", write_spec(folder, "drop", "gaps.csv", 'target = "label"\nmissing = "drop_rows"'),
                    "--json", cwd=folder)
    assert dropped.returncode == 0 and json.loads(dropped.stdout.splitlines()[0])["samples"] == N - 3
    spec = write_spec(folder, "mean", "gaps.csv", 'target = "label"\nmissing = "fill_mean"')
    assert dlcli("train", spec, "--run-dir", "mean", cwd=folder).returncode == 0
    from dlcli.checkpoint import load_checkpoint

    _, metadata = load_checkpoint(folder / "mean" / "checkpoints" / "last.safetensors")
    missing = metadata["data"]["missing"]
    assert missing["policy"] == "fill_mean" and missing["cells_filled"] == 3 and missing["rows_dropped"] == 0
    # no validation part, so every row with a value trains; the mean of the float32 values the model sees
    column_a = np.array([row[0] for i, row in enumerate(rows) if i != 9], np.float32).astype(np.float64)
    assert missing["fill"]["a"] == pytest.approx(column_a.sum() / len(column_a), rel=1e-12)
    # predict fills a missing cell with the stored mean: the same answer as the mean written in
    write_csv(folder / "hole.csv", ["a", "b", "c"], [["", 0.5, 0.25]])
    write_csv(folder / "filled.csv", ["a", "b", "c"], [[repr(missing["fill"]["a"]), 0.5, 0.25]])
    holed = dlcli("predict", "mean", "hole.csv", cwd=folder)
    assert holed.returncode == 0 and holed.stdout == dlcli("predict", "mean", "filled.csv", cwd=folder).stdout


def test_data_errors_name_the_csv_line_or_npz_row_before_any_shuffle(folder: Path) -> None:
    rows = [line.split(",") for line in (folder / "t.csv").read_text().splitlines()[1:]]
    rows[36][0] = "nan"  # line 38: the header is line 1
    write_csv(folder / "nan38.csv", ["a", "b", "c", "label"], rows)
    spec = write_spec(folder, "nan38", "nan38.csv", 'target = "label"\nvalidation_split = 0.25')
    error(dlcli("train", spec, cwd=folder), 3, "nan38.csv, line 38, column 'a': expected a number, found 'nan'")
    x = np.ones((N, 3), np.float32)
    x[6, 0] = np.nan
    np.savez(folder / "nan.npz", x=x, y=np.zeros(N, int))
    spec = write_spec(folder, "nan_npz", "nan.npz", "validation_split = 0.25")
    error(dlcli("train", spec, cwd=folder), 3, "nan.npz, array 'x', row 6 holds nan")


def test_validate_gives_a_data_problem_the_exit_code_train_gives(folder: Path) -> None:
    rows = [line.split(",") for line in (folder / "t.csv").read_text().splitlines()[1:]]
    rows[2][1] = "NaN"
    write_csv(folder / "nan4.csv", ["a", "b", "c", "label"], rows)
    spec = write_spec(folder, "nan4", "nan4.csv")
    trained, validated = dlcli("train", spec, cwd=folder), dlcli("validate", spec, cwd=folder)
    error(validated, trained.returncode, "nan4.csv, line 4, column 'b'")
    assert trained.returncode == 3


def test_os_errors_on_data_paths_are_data_errors_naming_the_path(folder: Path) -> None:
    os.symlink("loop2.csv", folder / "loop1.csv")
    os.symlink("loop1.csv", folder / "loop2.csv")
    loop = "is a symbolic link that loops"
    error(dlcli("train", write_spec(folder, "loop", str(folder / "loop1.csv")), cwd=folder), 3, "loop1.csv " + loop)
    error(dlcli("predict", "numbers", "loop1.csv", cwd=folder), 3, "loop1.csv " + loop)
    error(dlcli("eval", "numbers", "--data", "loop1.csv", cwd=folder), 3, "loop1.csv " + loop)
    long = str(folder / ("x" * 300 + ".csv"))
    error(dlcli("train", write_spec(folder, "long", long), cwd=folder), 3, "is a name longer than this system allows")
    error(dlcli("predict", "numbers", "y" * 300 + ".npz", cwd=folder), 3, "is a name longer than this system allows")


def test_an_unsupported_output_suffix_is_a_usage_error_found_before_anything_runs(folder: Path) -> None:
    error(dlcli("predict", "numbers", "plain.csv", "--output", "p.txt", cwd=folder), 2,
          "--output p.txt: unsupported suffix '.txt'")
    # before the checkpoint is even read: a run directory that is not there is not reached
    error(dlcli("predict", "no-such-run", "plain.csv", "--output", "p.txt", cwd=folder), 2, "unsupported suffix")
    error(dlcli("predict", "numbers", "plain.csv", "--output", "nowhere/p.csv", cwd=folder), 2,
          "the folder nowhere does not exist")
    assert not (folder / "p.txt").exists()


def test_validation_split_messages_point_the_right_way_and_name_the_file(folder: Path) -> None:
    spec = write_spec(folder, "split", "t.csv", 'target = "label"\nvalidation_split = 0.999')
    error(dlcli("train", spec, cwd=folder), 3, "t.csv: validation_split = 0.999 of 40 examples leaves no example for "
          "training; use a smaller fraction")
    write_csv(folder / "one.csv", ["a", "b", "c", "label"], [[1, 2, 3, 0]])
    spec = write_spec(folder, "one", "one.csv", 'target = "label"\nvalidation_split = 0.5')
    error(dlcli("train", spec, cwd=folder), 3, "one.csv holds a single example")


def test_a_checkpoint_from_before_the_data_schema_predicts_and_evaluates_as_before(folder: Path) -> None:
    from dlcli.checkpoint import load_checkpoint, save_checkpoint

    old = folder / "old.safetensors"
    arrays, metadata = load_checkpoint(folder / "numbers" / "checkpoints" / "last.safetensors")
    metadata.pop("data", None)
    save_checkpoint(old, arrays, metadata)
    expected = dlcli("predict", "numbers", "plain.csv", cwd=folder)
    assert dlcli("predict", str(old), "plain.csv", cwd=folder).stdout == expected.stdout
    evaluated = dlcli("eval", str(old), "--data", "t.csv", "--json", cwd=folder)
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["samples"] == N


def test_an_unsupported_data_file_gets_the_one_message_listing_the_readers_in_every_command(folder: Path) -> None:
    (folder / "t.feather").write_bytes(b"PAR1")
    readers = (".csv or .csv.gz (a CSV table with a header row", ".npy (inputs in x_NAME.npy with their targets in "
               "y_NAME.npy", ".npz (arrays by name in an .npz archive", ".txt (one text a line",
               ".parquet or .pq (a parquet table")
    spec = write_spec(folder, "feather", "t.feather")
    messages = [error(dlcli("train", spec, cwd=folder), 3, "data.train: ", "t.feather: unsupported data file; "),
                error(dlcli("validate", spec, cwd=folder), 3, "data.train: ", "t.feather: unsupported data file; "),
                error(dlcli("eval", "numbers", "--data", "t.feather", cwd=folder), 3),
                error(dlcli("predict", "numbers", "t.feather", cwd=folder), 3)]
    assert messages[2] == messages[3] and messages[3].startswith("error: t.feather: unsupported data file; ")
    listed = {message.split("unsupported data file; ", 1)[1] for message in messages}
    assert len(listed) == 1, messages
    assert all(reader in next(iter(listed)) for reader in readers), messages
