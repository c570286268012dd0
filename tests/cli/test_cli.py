"""The command line in a subprocess, as scripts and CI run it: exit codes, output formats, run directories."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.mirror import mnist_mirror

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"
PAIR = r'[a-z_.0-9]+=("[^"]*"|[^\s"]+)'
PLAIN_LINE = re.compile(rf"^(start|checkpoint|end)( {PAIR})+$|^epoch=\d+/\d+( {PAIR})+$")


def dlcli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `dlcli ARGS` as a user would, not on a terminal and with CI set."""
    full_env = {**os.environ, "CI": "true", "DLCLI_CACHE": str(cwd / "cache"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "dlcli", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's first command, run once for the tests that inspect its results."""
    folder = tmp_path_factory.mktemp("digits")
    result = dlcli("train", str(SPECS / "digits_mlp.toml"), cwd=folder)
    assert result.returncode == 0, result.stderr
    (folder / "stdout.txt").write_text(result.stdout)
    return folder


def test_the_readme_quick_start_makes_the_files_it_uses(digits_run: Path) -> None:
    # its predict line read an x.npy and its compare line a runs/digits-mlp-2 that no line made (exit 3 and 4)
    readme = (REPO / "README.md").read_text()
    quick_start = re.findall(r"```bash\n(.*?)```", readme, re.S)[1]
    lines = [line.split("  #")[0].strip() for line in quick_start.splitlines()
             if any(word in line for word in ("x.npy", "digits-mlp-2"))]
    assert len(lines) >= 3, lines
    for line in lines:
        program, *args = shlex.split(line)
        args = [str(REPO / arg) if arg.startswith("specs/") else arg for arg in args]  # the README runs in the checkout
        command = [sys.executable, *args] if program == "python" else [sys.executable, "-m", "dlcli", *args]
        assert program in ("python", "dlcli"), line
        result = subprocess.run(command, cwd=digits_run, env={**os.environ, "CI": "true"}, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, (line, result.stderr)
    assert (digits_run / "predictions.csv").is_file()


def test_cli_md_export_example_is_what_the_readme_run_exports(digits_run: Path) -> None:
    # it showed epoch=30 while that run's best checkpoint (val_loss 0.1045 @29 in the compare example) is epoch 29
    shown = re.search(r"^export path=runs/digits-mlp/best\.onnx .*$", (REPO / "docs" / "cli.md").read_text(), re.M)
    result = dlcli("export", "runs/digits-mlp", cwd=digits_run)
    assert result.returncode == 0, result.stderr
    fields = [dict(pair.split("=", 1) for pair in line.split()[1:]) for line in (shown[0], result.stdout.strip())]
    for key in ("path", "format", "opset", "epoch"):  # not bytes: the metadata holds dlcli's and onnx's versions
        assert fields[0][key] == fields[1][key], key


def test_train_plain_output_is_one_parseable_line_per_epoch(digits_run: Path) -> None:
    lines = (digits_run / "stdout.txt").read_text().splitlines()
    assert all(PLAIN_LINE.match(line) for line in lines), lines
    assert lines[0].startswith("start run=digits-mlp") and lines[-1].startswith("end ")
    assert sum(line.startswith("epoch=") for line in lines) == 30
    run = digits_run / "runs" / "digits-mlp"
    for name in ("spec.json", "history.jsonl", "history.csv", "summary.json", "checkpoints/last.safetensors",
                 "checkpoints/best.safetensors"):
        assert (run / name).is_file(), name


def test_eval_reaches_95_percent_on_digits_and_prints_json(digits_run: Path) -> None:
    result = dlcli("eval", "runs/digits-mlp", "--json", cwd=digits_run)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["event"] == "eval" and record["samples"] == 360 and record["accuracy"] >= 0.95


def test_eval_of_a_missing_data_file_says_it_does_not_exist(digits_run: Path) -> None:
    # a registry-dataset run names no target column: the missing file must be found first (exit 3, not 2)
    for name in ("nope.csv", "nope.npy"):
        result = dlcli("eval", "runs/digits-mlp", "--data", name, cwd=digits_run)
        assert result.returncode == 3, result.stderr
        assert result.stderr == f"error: {name} does not exist; check the path\n"


def test_predict_writes_labels_and_probabilities(digits_run: Path) -> None:
    x = np.random.default_rng(0).integers(0, 17, (5, 64)).astype(np.float32)
    np.save(digits_run / "x.npy", x)
    out = dlcli("predict", "runs/digits-mlp", "x.npy", "--json", cwd=digits_run)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 5 and all(0 <= r["label"] < 10 for r in rows)
    assert all(abs(sum(r[f"probability_{k}"] for k in range(10)) - 1) < 1e-4 for r in rows)
    for suffix in (".csv", ".npy", ".jsonl"):
        written = dlcli("predict", "runs/digits-mlp", "x.npy", "--output", f"p{suffix}", cwd=digits_run)
        assert written.returncode == 0 and (digits_run / f"p{suffix}").is_file(), written.stderr
    assert np.load(digits_run / "p.npy").shape == (5, 10)
    header = (digits_run / "p.csv").read_text().splitlines()[0]
    assert header.startswith("label,probability_0,")


def test_summary_of_a_spec_and_of_a_run_agree(digits_run: Path) -> None:
    from_spec = dlcli("summary", str(SPECS / "digits_mlp.toml"), cwd=digits_run)
    from_run = dlcli("summary", "runs/digits-mlp", cwd=digits_run)
    assert from_spec.returncode == from_run.returncode == 0
    assert from_spec.stdout == from_run.stdout
    assert "Total params: 4,810" in from_spec.stdout and "dense_1 (Dense)" in from_spec.stdout
    for name in ("DIGITS.TOML", "digits_spec"):  # read as a spec, not refused as a damaged checkpoint (exit 4)
        (digits_run / name).write_text((SPECS / "digits_mlp.toml").read_text())
        other = dlcli("summary", name, cwd=digits_run)
        assert other.returncode == 0 and other.stdout == from_spec.stdout, other.stderr


def test_json_mode_prints_only_json_events(tmp_path: Path) -> None:
    result = dlcli("train", str(SPECS / "digits_mlp.toml"), "--json", "--set", "train.epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events if e["event"] != "checkpoint"] == ["start", "epoch", "epoch", "end"]
    assert events[1]["epoch"] == 1 and "val_accuracy" in events[1]


def test_quiet_prints_nothing(tmp_path: Path) -> None:
    result = dlcli("train", str(SPECS / "digits_mlp.toml"), "--quiet", "--set", "train.epochs=1",
                   "--run-dir", "elsewhere", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    assert (tmp_path / "elsewhere" / "checkpoints" / "last.safetensors").is_file()


def _one_paragraph_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_spec_errors_exit_2(tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text((SPECS / "digits_mlp.toml").read_text().replace("units = 64", "units = -3"))
    _one_paragraph_error(dlcli("train", str(spec), cwd=tmp_path), 2,
                         "bad.toml: model.layers[1].units: must be a positive integer, got -3")
    _one_paragraph_error(dlcli("validate", str(spec), cwd=tmp_path), 2, "must be a positive integer")
    _one_paragraph_error(dlcli("train", "missing.toml", cwd=tmp_path), 2, "missing.toml: no such spec file")
    _one_paragraph_error(dlcli("train", str(SPECS / "digits_mlp.toml"), "--set", "train.epoch=3", cwd=tmp_path), 2,
                         "train.epoch: unknown key", "did you mean epochs?")
    # found when the model is built (a cycle, a shape): the file first too, as for a key (it named only the key)
    graph = tmp_path / "cycle.toml"
    graph.write_text('name = "g"\n[data]\ndataset = "digits"\n[model.inputs]\nx = { shape = [64] }\n'
                     '[model.nodes.a]\ntype = "dense"\ninput = "b"\nunits = 4\n'
                     '[model.nodes.b]\ntype = "dense"\ninput = "a"\nunits = 4\n'
                     '[model.outputs]\nb = { loss = "mse" }\n')
    for command in ("validate", "train"):
        result = dlcli(command, str(graph), cwd=tmp_path)
        _one_paragraph_error(result, 2)
        assert result.stderr == "error: cycle.toml: model.nodes: cycle a -> b -> a; a model must be a DAG\n"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = dlcli("train", cwd=tmp_path)
    assert result.returncode == 2 and "Missing argument 'SPEC'" in result.stderr
    assert dlcli("frobnicate", cwd=tmp_path).returncode == 2


def test_data_errors_exit_3(tmp_path: Path) -> None:
    (tmp_path / "data.npz").write_bytes(b"PK\x03\x04 not really a zip")
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\n[data]\ntrain = "data.npz"\n[model]\ninput = { shape = [2] }\n'
                    '[[model.layers]]\ntype = "dense"\nunits = 1\n[train]\nloss = "mse"\n')
    _one_paragraph_error(dlcli("train", str(spec), cwd=tmp_path), 3, "data.npz")


def test_offline_dataset_exits_3_and_says_how_to_fix(tmp_path: Path) -> None:
    # tests run without network: the download fails, and the message must name the file and how to fix it
    result = dlcli("train", str(SPECS / "mnist_mlp.toml"), cwd=tmp_path,
                   env={"DLCLI_DATASETS_MIRROR": str(tmp_path / "empty")})
    assert result.returncode == 3, result.stderr
    assert "train-images-idx3-ubyte.gz" in result.stderr and "DLCLI_DATASETS_MIRROR" in result.stderr


def test_checkpoint_errors_exit_4(tmp_path: Path, digits_run: Path) -> None:
    good = (digits_run / "runs" / "digits-mlp" / "checkpoints" / "best.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[: len(good) // 3])
    _one_paragraph_error(dlcli("eval", "cut.safetensors", cwd=tmp_path), 4, "cut.safetensors")
    flipped = bytearray(good)
    flipped[-10] ^= 0x01
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    _one_paragraph_error(dlcli("eval", "flip.safetensors", cwd=tmp_path), 4, "checksum")
    _one_paragraph_error(dlcli("eval", "no_such_run", cwd=tmp_path), 4, "no_such_run")


def test_divergence_exits_5(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2)).astype(np.float32)
    np.savez(tmp_path / "r.npz", x=x, y=x.sum(axis=1).astype(np.float32))
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\n[data]\ntrain = "r.npz"\n[model]\ninput = { shape = [2] }\n'
                    '[[model.layers]]\ntype = "dense"\nunits = 1\n[train]\nloss = "mse"\nepochs = 200\n'
                    'batch_size = 64\noptimizer = { type = "sgd", learning_rate = 2.0 }\n')
    _one_paragraph_error(dlcli("train", str(spec), cwd=tmp_path), 5, "the loss became")


def test_json_errors_are_json_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = dlcli("train", "missing.toml", "--json", cwd=tmp_path)
    assert result.returncode == 2
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record == {"event": "error", "exit_code": 2, "message": "missing.toml: no such spec file"}
    assert json.loads(result.stderr) == record
    debug = dlcli("--debug", "train", "missing.toml", cwd=tmp_path)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_help_and_validate_do_not_import_numba(tmp_path: Path) -> None:
    probe = ("import sys\nfrom dlcli.cli.main import main\nsys.argv = ['dlcli'] + sys.argv[1:]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('LOADED', 'numba' in sys.modules, 'rich' in sys.modules, 'torch' in sys.modules)\n")
    for args in (["--help"], ["validate", str(SPECS / "digits_mlp.toml")], ["list", "layers"],
                 ["list", "layers", "dense"], ["schema"]):
        result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "LOADED False False False", (args, result.stdout)


def test_openblas_spin_time_is_set_before_numpy_loads_unless_the_user_chose_one() -> None:
    probe = "import os, sys, dlcli; print(os.environ['OPENBLAS_THREAD_TIMEOUT'], 'numpy' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    for given, expected in ((None, "12 False"), ("6", "6 False")):
        run_env = env if given is None else {**env, "OPENBLAS_THREAD_TIMEOUT": given}
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=run_env)
        assert result.stdout.strip() == expected, result.stderr


def test_validate_checks_data_files_and_prints_the_summary(tmp_path: Path) -> None:
    ok = dlcli("validate", str(SPECS / "breast_cancer_binary.toml"), cwd=tmp_path)
    assert ok.returncode == 0 and "valid" in ok.stdout and "Non-trainable params: 61" in ok.stdout
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\n[data]\ntrain = "nope.npz"\n[model]\ninput = { shape = [2] }\n'
                    '[[model.layers]]\ntype = "dense"\nunits = 1\n[train]\nloss = "mse"\n')
    # a data problem: the same exit code as train gives for it (3), naming the spec key and the file
    _one_paragraph_error(dlcli("validate", str(spec), cwd=tmp_path), 3, "data.train", "nope.npz")
    # a registry dataset that loads offline (digits is bundled) is read as train reads it: an input shape that
    # does not fit it was "valid" and then exit 3 in train
    wrong = dlcli("validate", str(SPECS / "digits_mlp.toml"), "--set", "model.input.shape=[63]", cwd=tmp_path)
    _one_paragraph_error(wrong, 3, "data.dataset 'digits'", "each example has shape [64], but the model's input "
                                                            "takes [63]")


def test_datasets_and_list(tmp_path: Path) -> None:
    listing = dlcli("datasets", "--json", cwd=tmp_path)
    rows = {json.loads(line)["name"]: json.loads(line) for line in listing.stdout.splitlines()}
    assert {"mnist", "fashion_mnist", "imdb", "reuters", "boston_housing", "digits", "iris", "wine",
            "breast_cancer", "diabetes"} <= set(rows)
    assert rows["digits"]["bundled"] and not rows["mnist"]["bundled"]
    layers = dlcli("list", "layers", cwd=tmp_path)
    assert layers.returncode == 0 and re.search(r"^  dense +Fully connected layer", layers.stdout, re.M)


def test_resume_continues_a_finished_run_with_more_epochs(tmp_path: Path) -> None:
    first = dlcli("train", str(SPECS / "digits_mlp.toml"), "--set", "train.epochs=2", "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    more = dlcli("train", "runs/digits-mlp", "--resume", "--set", "train.epochs=3", "--json", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    epochs = [json.loads(l)["epoch"] for l in more.stdout.splitlines() if json.loads(l)["event"] == "epoch"]
    assert epochs == [3]
    changed = dlcli("train", "runs/digits-mlp", "--resume", "--set", "model.layers[1].units=32", cwd=tmp_path)
    _one_paragraph_error(changed, 2, "model.layers[1].units: 64 -> 32")


def test_mnist_mlp_from_the_mirror_reaches_95_percent_in_one_epoch(tmp_path: Path) -> None:
    env = {"DLCLI_DATASETS_MIRROR": str(mnist_mirror())}
    result = dlcli("train", str(SPECS / "mnist_mlp.toml"), "--set", "train.epochs=1", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    evaluated = dlcli("eval", "runs/mnist-mlp", "--json", cwd=tmp_path, env=env)
    record = json.loads(evaluated.stdout)
    assert record["samples"] == 10000 and record["accuracy"] > 0.95, record
