"""The exit-code contract of SPEC.md, in plain and --json modes: every code, one paragraph or one JSON object."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.train import faults

REPO = Path(__file__).resolve().parents[2]
DIGITS = str(REPO / "specs" / "digits_mlp.toml")


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, python: list[str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    command = (python or [sys.executable, "-m", "dlcli"]) + args
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CI": "true", **(env or {})})


def _diverging_spec(folder: Path) -> str:
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    np.savez(folder / "r.npz", x=x, y=x.sum(axis=1).astype(np.float32))
    (folder / "boom.toml").write_text(
        'name = "boom"\n[data]\ntrain = "r.npz"\n[model]\ninput = { shape = [2] }\n[[model.layers]]\n'
        'type = "dense"\nunits = 1\n[train]\nloss = "mse"\nepochs = 200\nbatch_size = 64\n'
        'optimizer = { type = "sgd", learning_rate = 2.0 }\n')
    return str(folder / "boom.toml")


# an internal error: a bug somewhere in training, simulated by replacing fit_run with a function that fails
BUG = ["-c", "import sys; import dlcli.train.fit as f\n"
             "def boom(*a, **k): raise RuntimeError('simulated bug')\n"
             "f.fit_run = boom\nfrom dlcli.cli.main import main\nsys.argv = ['dlcli'] + sys.argv[1:]\nmain()"]


def _cases(folder: Path) -> dict[int, list[str]]:
    (folder / "bad.toml").write_text('name = "bad"\n[data]\ndataset = "digits"\n')
    (folder / "corrupt.npz").write_bytes(b"PK\x03\x04 not a zip")
    (folder / "data.toml").write_text(
        'name = "d"\n[data]\ntrain = "corrupt.npz"\n[model]\ninput = { shape = [2] }\n[[model.layers]]\n'
        'type = "dense"\nunits = 1\n[train]\nloss = "mse"\n')
    (folder / "junk.safetensors").write_bytes(b"\x00" * 40)
    return {0: ["validate", DIGITS], 2: ["train", str(folder / "bad.toml")], 3: ["train", str(folder / "data.toml")],
            4: ["eval", str(folder / "junk.safetensors")], 5: ["train", _diverging_spec(folder)]}


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_every_exit_code_in_plain_and_json(tmp_path: Path, as_json: bool) -> None:
    flag = ["--json"] if as_json else []
    for code, args in _cases(tmp_path).items():
        command = [*args, *flag] if args[0] != "validate" else args
        result = _run(command, tmp_path)
        assert result.returncode == code, (code, result.stderr)
        if code == 0:
            continue
        _check_error(result, code, as_json)
    bug = _run(["train", DIGITS, *flag, "--run-dir", "bug"], tmp_path, python=[sys.executable, *BUG])
    assert bug.returncode == 1
    _check_error(bug, 1, as_json)
    assert "internal error (RuntimeError: simulated bug); rerun with --debug for the traceback and report it" \
        in (bug.stdout if as_json else bug.stderr)
    # --debug asks for the traceback
    debug = _run(["--debug", "train", DIGITS, *flag, "--run-dir", "bug-debug"], tmp_path,
                 python=[sys.executable, *BUG])
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "RuntimeError: simulated bug" in debug.stderr


def _check_error(result: subprocess.CompletedProcess[str], code: int, as_json: bool) -> None:
    if as_json:
        errors = [json.loads(line) for line in result.stdout.splitlines() if '"event": "error"' in line]
        assert len(errors) == 1 and errors[0]["exit_code"] == code, result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and json.loads(lines[0]) == errors[0], result.stderr
        assert all(json.loads(line) for line in result.stdout.splitlines())  # nothing but JSON on stdout
    else:
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr  # one paragraph


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_signals_give_130_and_143(tmp_path: Path, signum: int, code: int, as_json: bool) -> None:
    command = [sys.executable, "-m", "dlcli", "train", DIGITS, "--run-dir", "run", *(["--json"] if as_json else [])]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=faults.env(CI="true", DLCLI_TEST_PAUSE_STEP="0.02"))
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / "checkpoints" / "last.safetensors").exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signum  # died by the signal: a shell reports 128 + signum
    if as_json:
        record = json.loads(out.strip().splitlines()[-1])
        assert record["event"] == "error" and record["exit_code"] == code
    else:
        assert err.startswith("error: stopped by") and "Traceback" not in err


# `python -m dlcli ARGS`, sending itself SIGINT on the first call of one function (module:qualified name; a module's
# own code is `<module>`): a Ctrl-C that lands at a known point of the start-up, wherever the machine's speed puts it
INTERRUPT_AT = ["-c", "import os, signal, sys, runpy\n"
                      "target = sys.argv.pop(1)\n"
                      "def watch(frame, event, arg):\n"
                      "    if event == 'call' and f\"{frame.f_globals.get('__name__')}:{frame.f_code.co_qualname}\" "
                      "== target:\n"
                      "        sys.setprofile(None)\n"
                      "        os.kill(os.getpid(), signal.SIGINT)\n"
                      "sys.setprofile(watch)\n"
                      "sys.argv[0] = 'dlcli'\n"
                      "runpy.run_module('dlcli', run_name='__main__', alter_sys=True)\n"]


@pytest.mark.parametrize("where", [
    "click:<module>",  # importing the command line itself
    "dlcli.cli.train:<module>",  # importing the commands
    "click.core:Group.parse_args",  # click reading the group's options
    "numpy:<module>",  # the group setting up the command (NumPy's error state)
    "dlcli.cli.train:train_command",  # the command itself
])
@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_an_interrupt_while_the_command_starts_is_130_and_one_line(tmp_path: Path, where: str, as_json: bool) -> None:
    flag = ["--json"] if as_json else []
    result = _run([where, "train", DIGITS, "--run-dir", "run", *flag], tmp_path, python=[sys.executable, *INTERRUPT_AT])
    assert result.returncode == 130, result.stderr
    if as_json:
        assert json.loads(result.stdout) == {"event": "error", "exit_code": 130, "message": "interrupted"}
        assert json.loads(result.stderr) == json.loads(result.stdout)
    else:
        assert result.stdout == "" and result.stderr == "error: interrupted\n"
    assert not (tmp_path / "run").exists()
