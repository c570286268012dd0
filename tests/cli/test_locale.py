"""dlcli in a locale whose encoding is not UTF-8 (LC_ALL=C, PYTHONUTF8=0: stdout is ASCII, and argv holds a
non-ASCII path as surrogate escapes): a class name or a path it cannot encode is escaped, never a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SPEC = """name = "fleurs"
seed = 0
[data]
train = "fleurs.csv"
features = ["a", "b"]
target = "espèce"
[model]
input = { shape = [2] }
[[model.layers]]
type = "dense"
units = 2
activation = "softmax"
[train]
loss = "sparse_categorical_crossentropy"
epochs = 1
batch_size = 8
"""


def ascii_locale(*args: str | bytes, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """`dlcli ARGS` with the C locale and Python's UTF-8 mode off, as on a machine without a UTF-8 locale."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "LANG", "LC_CTYPE")}
    return subprocess.run([sys.executable, "-m", "dlcli", *args], cwd=cwd, capture_output=True, timeout=300,
                          env={**env, "LC_ALL": "C", "PYTHONUTF8": "0", "CI": "true"})


def test_non_ascii_run_dir_and_class_names_in_an_ascii_locale(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 2)).round(3)
    names = np.where(x[:, 0] > 0, "sétosa", "virgínica 日本")
    (tmp_path / "fleurs.csv").write_text("a,b,espèce\n" + "".join(f"{a},{b},{n}\n" for (a, b), n in zip(x, names)),
                                         encoding="utf-8")
    (tmp_path / "x.csv").write_text("a,b\n1.0,0.5\n-1.0,0.5\n")
    (tmp_path / "fleurs.toml").write_text(SPEC, encoding="utf-8")
    run_dir = "runs/été".encode()  # bytes: in the C locale Python decodes them to surrogate escapes
    trained = ascii_locale("train", "fleurs.toml", "--run-dir", run_dir, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert b"run_dir=runs/\\udcc3\\udca9t\\udcc3\\udca9" in trained.stdout  # escaped, not an encoding crash
    assert {"checkpoints", "run.json", "summary.json"} <= set(os.listdir(tmp_path / "runs" / "été"))
    lock = (tmp_path / "runs" / "été" / ".lock").read_bytes()
    assert b"--run-dir runs/\xc3\xa9t\xc3\xa9" in lock  # the bytes the user typed
    predicted = ascii_locale("predict", run_dir, "x.csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    lines = predicted.stdout.decode("ascii").splitlines()
    assert lines[0].startswith("index=0 label=s\\xe9tosa label_id=")
    assert lines[1].startswith('index=1 label="virg\\xednica \\u65e5\\u672c" label_id=')
