"""render_summary_table: the Keras-style summary of a small model, as exact plain text."""

from __future__ import annotations

from dlcli.report import render_summary_table
from dlcli.report.summary import format_shape

ROWS = [
    {"name": "dense", "type": "Dense", "output_shape": (None, 512), "params": 401920, "connected_to": ["flatten"]},
    {"name": "dense_1", "type": "Dense", "output_shape": (None, 10), "params": 5130, "connected_to": ["dense"]},
]
TOTALS = {"total": 407050, "trainable": 407050, "non_trainable": 0}


def test_two_layer_summary() -> None:
    assert render_summary_table(ROWS, TOTALS, title="mnist-mlp") == "\n".join([
        'Model: "mnist-mlp"',
        "_" * 56,
        " Layer (type)      Output Shape   Param #   Connected to",
        "=" * 56,
        " dense (Dense)     (None, 512)    401,920   flatten",
        "_" * 56,
        " dense_1 (Dense)   (None, 10)       5,130   dense",
        "=" * 56,
        "Total params: 407,050",
        "Trainable params: 407,050",
        "Non-trainable params: 0",
        "_" * 56,
    ])


def test_summary_is_plain_ascii() -> None:
    text = render_summary_table(ROWS, TOTALS)
    assert text.isascii() and "\x1b" not in text
    assert not text.startswith("Model:")
    assert all(line == line.rstrip() for line in text.splitlines())


def test_several_inputs_and_outputs_take_one_line_each() -> None:
    rows = [{"name": "merge", "type": "Concatenate", "output_shape": [(None, 4), (None, 2)], "params": 0,
             "connected_to": ["title", "body"]},
            {"name": "title", "type": "InputLayer", "output_shape": (None, 3), "params": 0, "connected_to": []}]
    lines = render_summary_table(rows, {"total": 0, "trainable": 0, "non_trainable": 0}).splitlines()
    assert lines[3:7] == [" merge (Concatenate)   (None, 4)            0   title",
                          "                       (None, 2)                body",
                          "_" * 60,
                          " title (InputLayer)    (None, 3)            0   -"]


def test_format_shape() -> None:
    assert format_shape((None, 28, 28, 1)) == "(None, 28, 28, 1)"
    assert format_shape((None,)) == "(None,)"
    assert format_shape([None, 5]) == "(None, 5)"
