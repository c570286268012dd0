"""Plots: dlcli plot (text and files), eval --confusion-matrix, summary --graph."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.cli.runs_fixture import CLASSES, history, invoke, train, write_spec


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plot")
    train(write_spec(folder, epochs=5), folder / "run")
    return folder / "run"


def test_plot_draws_each_metric_as_text_with_the_best_epoch_starred(run: Path) -> None:
    result = invoke("plot", str(run), "--width", "80")
    assert result.exit_code == 0, result.output
    text = result.stdout
    loss, accuracy = text.split("\n\naccuracy\n")
    rows = history(run)
    best = min(rows, key=lambda row: row["val_loss"])
    assert loss.startswith("loss\n")
    assert f"★ best run val_loss: epoch {best['epoch']} ({best['val_loss']:.4g})" in loss
    top = max(max(r["loss"], r["val_loss"]) for r in rows)
    assert loss.splitlines()[1].split()[0] == f"{top:.4g}"  # the axis runs from the highest value down
    assert "● run loss" in loss and "○ run val_loss" in loss and "★" not in accuracy
    assert sum(line.count("●") for line in loss.splitlines()[1:13]) <= 5  # one marker per epoch at most
    assert all(ord(char) < 0x2600 or char in "●○■□▲△◆◇★✚✜⬟⬠" for char in text)  # plain text, no colour codes
    assert "\x1b" not in text


def test_plot_selects_metrics_and_rejects_unknown_ones(run: Path) -> None:
    only = invoke("plot", str(run), "--metric", "val_accuracy").stdout
    assert only.startswith("accuracy\n") and "\nloss\n" not in only
    rate = invoke("plot", str(run), "--metric", "learning_rate").stdout
    assert rate.startswith("learning_rate\n")
    wrong = invoke("plot", str(run), "--metric", "accuracyy")
    assert wrong.exit_code == 2 and "did you mean accuracy?" in wrong.stderr


def test_plot_json_gives_the_curves_values(run: Path) -> None:
    charts = [json.loads(line) for line in invoke("plot", str(run), "--json").stdout.splitlines()]
    assert [c["metric"] for c in charts] == ["loss", "accuracy"]
    series = {s["label"]: s for s in charts[0]["series"]}
    assert series["run val_loss"]["values"] == [row["val_loss"] for row in history(run)]
    assert series["run val_loss"]["epochs"] == [1, 2, 3, 4, 5] and series["run val_loss"]["validation"]


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_plot_writes_a_figure_file_through_matplotlib(run: Path, tmp_path: Path, suffix: str, magic: bytes) -> None:
    path = tmp_path / f"curves{suffix}"
    result = invoke("plot", str(run), str(run), "--output", str(path))
    assert result.exit_code == 0, result.output
    assert path.read_bytes().startswith(magic) and result.stdout.strip() == f"figure path={path} charts=2"


def test_a_figure_without_matplotlib_names_the_extra(run: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if dlcli[plot] were not installed
    result = invoke("plot", str(run), "--output", str(tmp_path / "c.png"))
    assert result.exit_code == 2 and "pip install 'dlcli[plot]'" in result.stderr
    assert not (tmp_path / "c.png").exists()
    text = invoke("plot", str(run))  # the terminal needs no extra
    assert text.exit_code == 0


def test_plot_refuses_a_bad_suffix_a_run_without_epochs_and_a_missing_run(run: Path, tmp_path: Path) -> None:
    bad = invoke("plot", str(run), "--output", str(tmp_path / "c.jpg"))
    assert bad.exit_code == 2 and "write .png, .svg or .pdf" in bad.stderr
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    assert invoke("plot", str(empty)).exit_code == 4
    assert invoke("plot", str(tmp_path / "missing")).exit_code == 4


def test_eval_prints_the_confusion_matrix_with_class_names_precision_and_recall(run: Path, tmp_path: Path) -> None:
    record = json.loads(invoke("eval", str(run), "--data", str(run.parent / "blobs.csv"), "--confusion-matrix",
                               "--json").stdout)
    (matrix,) = record["confusion_matrices"]
    assert matrix["classes"] == list(CLASSES)
    counts = matrix["matrix"]
    assert sum(map(sum, counts)) == record["samples"] == 160
    # the matrix agrees with the accuracy the metric computed on the same predictions
    assert sum(counts[k][k] for k in range(3)) / 160 == pytest.approx(record["accuracy"])
    for k in range(3):
        column = sum(counts[j][k] for j in range(3))
        assert matrix["precision"][k] == pytest.approx(counts[k][k] / column if column else 0.0)
        assert matrix["recall"][k] == pytest.approx(counts[k][k] / sum(counts[k]))
    text = invoke("eval", str(run), "--data", str(run.parent / "blobs.csv"), "--confusion-matrix",
                  "--output", str(tmp_path / "cm.png")).stdout.splitlines()
    header = text.index("confusion matrix of output 'dense_1' (160 examples)")
    assert text[header + 1].split() == ["true", "\\", "predicted", "cat", "dog", "fox"]
    assert text[header + 2].split() == ["cat", *map(str, counts[0])]
    assert text[header + 6].split() == ["class", "precision", "recall", "support"]
    assert text[header + 7].split() == ["cat", f"{matrix['precision'][0]:.4f}", f"{matrix['recall'][0]:.4f}",
                                        str(sum(counts[0]))]
    assert (tmp_path / "cm.png").read_bytes().startswith(b"\x89PNG")
    assert text[-1] == f"figure path={tmp_path / 'cm.png'}"


def test_eval_confusion_matrix_errors(run: Path, tmp_path: Path) -> None:
    alone = invoke("eval", str(run), "--output", str(tmp_path / "cm.png"))
    assert alone.exit_code == 2 and "add --confusion-matrix" in alone.stderr
    (tmp_path / "r.csv").write_text("a,b\n" + "".join(f"{i},{i / 2}\n" for i in range(20)))
    (tmp_path / "r.toml").write_text('name = "r"\n[data]\ntrain = "r.csv"\ntarget = "b"\n[model]\n'
                                     'input = { shape = [1] }\n[[model.layers]]\ntype = "dense"\nunits = 1\n'
                                     '[train]\nloss = "mse"\nepochs = 1\n')
    train(tmp_path / "r.toml", tmp_path / "r")
    regression = invoke("eval", str(tmp_path / "r"), "--data", str(tmp_path / "r.csv"), "--confusion-matrix")
    assert regression.exit_code == 2 and "needs a classification output" in regression.stderr
    assert "this model has dense (mse)" in regression.stderr  # the loss as the spec names it


def test_summary_graph_writes_dot_with_every_node_and_connection(tmp_path: Path) -> None:
    spec = Path(__file__).resolve().parents[2] / "specs" / "seq2seq_reverse.toml"
    result = invoke("summary", str(spec), "--graph", str(tmp_path / "g.dot"))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"graph path={tmp_path / 'g.dot'}"
    dot = (tmp_path / "g.dot").read_text()
    assert dot.startswith('digraph "seq2seq-reverse" {')
    for line in ('"source" [label="source (InputLayer)\\n(None, 6, 10)"];', '"source" -> "encoder";',
                 '"encoder" -> "decoder" [label="state_h"];', '"encoder" -> "decoder" [label="state_c"];',
                 '"decoder" -> "next";', '"next" [label="next (Dense)\\n(None, 6, 10)", peripheries=2];'):
        assert f"  {line}\n" in dot, line


def test_summary_graph_of_a_run_and_the_svg_without_graphviz(run: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke("summary", str(run), "--graph", str(tmp_path / "g.gv")).exit_code == 0
    assert '"dense" -> "dense_1";' in (tmp_path / "g.gv").read_text()
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot program on it
    svg = invoke("summary", str(run), "--graph", str(tmp_path / "g.svg"))
    assert svg.exit_code == 2 and "needs Graphviz's dot program" in svg.stderr and "g.dot" in svg.stderr
    bad = invoke("summary", str(run), "--graph", str(tmp_path / "g.txt"))
    assert bad.exit_code == 2 and "unsupported suffix" in bad.stderr


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed on this machine")
def test_summary_graph_renders_svg_through_graphviz(run: Path, tmp_path: Path) -> None:
    assert invoke("summary", str(run), "--graph", str(tmp_path / "g.svg")).exit_code == 0
    assert "<svg" in (tmp_path / "g.svg").read_text() and "dense_1 (Dense)" in (tmp_path / "g.svg").read_text()


def test_help_and_text_plots_import_none_of_the_optional_extras(run: Path, tmp_path: Path) -> None:
    import subprocess

    probe = ("import sys\nfrom dlcli.cli.main import main\nsys.argv = ['dlcli'] + sys.argv[1:]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('LOADED', sorted(m for m in ('matplotlib', 'mlflow', 'tensorboardX', 'tensorboard', 'numba') "
             "if m in sys.modules))\n")
    for args in (["--help"], ["plot", str(run)], ["runs", str(run.parent)], ["compare", str(run), str(run)]):
        result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "LOADED []", (args, result.stdout[-300:])
