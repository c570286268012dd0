"""The environment variables dlcli reads (dlcli/train/environment.py): OMP_NUM_THREADS limits the Numba kernels
too, and a value dlcli cannot use is an error naming the variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SPEC = """name = "tiny"
[data]
dataset = "iris"
[model]
input = { shape = [4] }
[[model.layers]]
type = "dense"
units = 3
activation = "softmax"
[train]
loss = "sparse_categorical_crossentropy"
epochs = 1
batch_size = 64
"""


def dlcli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                                                "DLCLI_PRECOMPILE")}
    return subprocess.run([sys.executable, "-m", "dlcli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**clean, "CI": "true", **env})


def test_omp_num_threads_limits_the_numba_kernels(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(SPEC)
    result = dlcli("train", "tiny.toml", "--quiet", "--run-dir", "run", cwd=tmp_path, OMP_NUM_THREADS="1",
                   DLCLI_PRECOMPILE="OFF")  # any case: OFF is off
    assert result.returncode == 0, result.stderr
    threads = json.loads((tmp_path / "run" / "run.json").read_text())["environment"]["threads"]
    assert threads["numba"] == 1 and threads["OMP_NUM_THREADS"] == "1"


def test_a_value_dlcli_cannot_use_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    for name, value, expected in [
        ("DLCLI_PRECOMPILE", "bogus", "DLCLI_PRECOMPILE='bogus': must be one of process, thread, off"),
        ("OMP_NUM_THREADS", "abc", "OMP_NUM_THREADS='abc': must be a positive whole number of threads"),
        ("OMP_NUM_THREADS", "0", "OMP_NUM_THREADS='0': must be a positive whole number of threads"),
        ("OMP_NUM_THREADS", "1.5", "OMP_NUM_THREADS='1.5': must be a positive whole number of threads"),
    ]:
        result = dlcli("list", "layers", cwd=tmp_path, **{name: value})
        assert result.returncode == 2 and result.stdout == "", (name, value, result.stderr)
        assert result.stderr.startswith(f"error: {expected}") and "\n" == result.stderr[-1:], result.stderr
    assert dlcli("list", "layers", cwd=tmp_path, OMP_NUM_THREADS="2,1").returncode == 0  # OpenMP's nested form
