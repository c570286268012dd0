"""dlcli export on the command line, as CI runs it: the file and its check, plain and --json, every error's exit code
(1, as for any disagreement dlcli cannot blame on the user, for a check that fails: SPEC.md's list of codes stays as
scripts know it), text models with and without their tokenizer in the graph, and --help loading neither
onnx nor onnxruntime."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from tests.cli.test_cli import SPECS, dlcli
from tests.cli.test_robust_cli import unwritable_folder
from tests.cli.test_text_cli import SPEC as TEXT_SPEC
from tests.train.test_text_input import write_reviews


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits MLP trained for two epochs: a run directory with best and last checkpoints."""
    folder = tmp_path_factory.mktemp("export-cli")
    result = dlcli("train", str(SPECS / "digits_mlp.toml"), "--set", "train.epochs=2", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


def test_export_writes_the_best_checkpoint_as_onnx_and_checks_it(run: Path) -> None:
    result = dlcli("export", "runs/digits-mlp", "--check", "--examples", "50", cwd=run)
    assert result.returncode == 0, result.stderr
    export, check = result.stdout.splitlines()
    assert re.fullmatch(r"export path=runs/digits-mlp/best\.onnx format=onnx opset=17 ir_version=\d+ epoch=\d "
                        r"bytes=\d+ seconds=[\d.]+", export), export
    assert re.fullmatch(r"check output=dense_1 examples=50 data=test max_abs=\S+ max_rel=\S+ ok", check), check
    model = onnx.load(run / "runs" / "digits-mlp" / "best.onnx")
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["dense_1"]


def test_export_json_reports_the_file_and_every_outputs_errors(run: Path) -> None:
    result = dlcli("export", "runs/digits-mlp", "--checkpoint", "last", "--output", "digits.onnx", "--check",
                   "--json", cwd=run)
    assert result.returncode == 0, result.stderr
    export, check = (json.loads(line) for line in result.stdout.splitlines())
    assert export["event"] == "export" and export["path"] == "digits.onnx" and export["epoch"] == 2
    assert export["inputs"] == {"input": "float32 [batch, 64]"}
    assert export["outputs"] == {"dense_1": "float32 [batch, 10]"}
    assert export["opset"] == 17 and export["bytes"] == (run / "digits.onnx").stat().st_size
    assert check["event"] == "check" and check["passed"] is True and check["examples"] == 256
    assert check["data"] == "test" and check["outputs"]["dense_1"]["max_abs"] < 1e-5
    assert check["rtol"] == 1e-4 and check["atol"] == 1e-5


def test_a_checkpoint_file_is_exported_beside_itself(run: Path) -> None:
    result = dlcli("export", "runs/digits-mlp/checkpoints/last.safetensors", cwd=run)
    assert result.returncode == 0, result.stderr
    assert (run / "runs" / "digits-mlp" / "checkpoints" / "last.onnx").is_file()


def test_a_check_beyond_the_tolerance_exits_1_naming_the_output(run: Path) -> None:
    # onnxruntime's and NumPy's float32 sums round differently: with no tolerance at all some value differs
    plain = dlcli("export", "runs/digits-mlp", "--check", "--rtol", "0", "--atol", "0", cwd=run)
    assert plain.returncode == 1, plain.stderr
    assert "check output=dense_1" in plain.stdout and "FAILED" in plain.stdout
    assert plain.stderr.startswith("error: runs/digits-mlp/best.onnx: the exported model differs from dlcli predict")
    assert "in output dense_1 (example" in plain.stderr and len(plain.stderr.strip().splitlines()) == 1
    as_json = dlcli("export", "runs/digits-mlp", "--check", "--rtol", "0", "--atol", "0", "--json", cwd=run)
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert as_json.returncode == 1 and [r["event"] for r in records] == ["export", "check", "error"]
    assert records[1]["passed"] is False and records[2]["exit_code"] == 1
    # a script tells the failed gate from a crash by the check event (a crash has none) and the message's words
    assert records[1]["outputs"]["dense_1"]["passed"] is False and "differs from dlcli predict" in records[2]["message"]


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_every_error_has_its_exit_code_and_one_paragraph(run: Path, as_json: bool) -> None:
    cases = {
        2: [["runs/digits-mlp", "--format", "onnnx"], ["runs/digits-mlp", "--data", "x.npz"],
            ["runs/digits-mlp", "--opset", "13"], ["runs/digits-mlp", "--opset", "0"],
            ["runs/digits-mlp", "--output", "nowhere/m.onnx"],
            ["runs/digits-mlp", "--output", str(unwritable_folder(run) / "m.onnx")]],
        3: [["runs/digits-mlp", "--check", "--data", "missing.npz"]],
        4: [["runs/nothing-here"], ["not-a-run"]],
    }
    (run / "not-a-run").mkdir(exist_ok=True)
    expected = {"onnnx": "did you mean onnx", "x.npz": "--data only apply with --check",
                "13": "dlcli writes opset 14 or later", "0": "dlcli writes opset 14 or later", "nowhere/m.onnx": "does not exist; create it first",
                "missing.npz": "missing.npz", "runs/nothing-here": "no such checkpoint or run directory",
                "not-a-run": "no checkpoint in not-a-run/checkpoints",
                str(unwritable_folder(run) / "m.onnx"): "m.onnx: Permission denied; check that the folder exists"}
    for code, argument_lists in cases.items():
        for arguments in argument_lists:
            result = dlcli("export", *arguments, *(["--json"] if as_json else []), cwd=run)
            assert result.returncode == code, (arguments, result.stderr)
            message = json.loads(result.stderr)["message"] if as_json else result.stderr
            assert expected[arguments[-1]] in message, (arguments, message)
            assert as_json or (message.startswith("error: ") and len(message.strip().splitlines()) == 1), message


@pytest.mark.parametrize("standardize", ["lower_and_strip_punctuation", "strip_punctuation"])
def test_a_text_model_is_checked_on_a_text_file(standardize: str, tmp_path: Path) -> None:
    write_reviews(tmp_path / "reviews.csv")
    spec = TEXT_SPEC.replace('output_mode = "multi_hot"', f'output_mode = "multi_hot"\nstandardize = "{standardize}"')
    (tmp_path / "reviews.toml").write_text(spec.replace("epochs = 8", "epochs = 1"))
    assert dlcli("train", "reviews.toml", cwd=tmp_path).returncode == 0
    (tmp_path / "new.txt").write_text("A superb, moving film!\nBoring... the WORST movie\n\nsuperb\tfilm\n",
                                      encoding="utf-8")
    result = dlcli("export", "runs/reviews", "--check", "--data", "new.txt", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    export, check = (json.loads(line) for line in result.stdout.splitlines())
    assert check["passed"] and check["examples"] == 4 and check["data"] == "new.txt"
    # the tokenizer, lowercasing included, is in the graph: the file takes the texts
    assert export["inputs"] == {"input": "string [batch, 1]"} and export["opset"] == 20
    assert export["notes"] == [] and export["files"] == []


def test_help_loads_neither_onnx_nor_onnxruntime(tmp_path: Path) -> None:
    probe = ("import sys\nfrom dlcli.cli.main import main\nsys.argv = ['dlcli'] + sys.argv[1:]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('LOADED', 'onnx' in sys.modules, 'onnxruntime' in sys.modules, 'numba' in sys.modules)\n")
    for arguments in (["--help"], ["export", "--help"]):
        result = subprocess.run([sys.executable, "-c", probe, *arguments], capture_output=True, text=True,
                                cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "LOADED False False False", (arguments, result.stdout)


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_a_missing_package_is_exit_2_naming_the_install_command(run: Path, missing: str) -> None:
    # the package made unimportable in this process, as on a machine without the extra
    probe = (f"import sys\nsys.modules[{missing!r}] = None\nfrom dlcli.cli.main import main\n"
             "sys.argv = ['dlcli'] + sys.argv[1:]\nmain()\n")
    result = subprocess.run([sys.executable, "-c", probe, "export", "runs/digits-mlp", "--output",
                             f"without-{missing}.onnx", "--check"], capture_output=True, text=True, cwd=run)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"error: the onnx format needs the {missing} package, which is not installed; install "
                             "the extra with: pip install 'dlcli[onnx]'\n")
    # the file is written before the check needs onnxruntime
    assert (run / f"without-{missing}.onnx").is_file() == (missing == "onnxruntime")
