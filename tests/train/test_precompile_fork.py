"""The child that compiles ahead, forked at the start of `dlcli train` on an empty cache (train/precompile_fork.py):
only when the run will want it, handed the spec by the run, and never left behind, whether the run never gets to
compiling (a spec that fails validation), is killed outright, or ends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tomli_w

from tests.train.test_fit import spec_doc, write_blobs
from tests.train.test_precompile import REPO, _children_left_after, _children_using, _env

# `dlcli train ARGS` in this process, noting the children it forks; prints its exit code, how many it forked,
# and which of them are still there (a zombie counts as gone) once the command is over
TRAIN_NOTING_FORKS = """
import json, os, sys
from dlcli.train import precompile_fork
from dlcli.cli.main import main

forked = []
fork_child = precompile_fork.fork_child

def noting(life):
    child = fork_child(life)
    forked.append(child.pid)
    return child

precompile_fork.fork_child = noting
sys.argv = ["dlcli", "train", *sys.argv[1:]]
try:
    main()
    code = 0
except SystemExit as done:
    code = done.code

def alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

print(json.dumps({"code": code, "forked": len(forked), "alive": [pid for pid in forked if alive(pid)]}))
"""


def _train_noting_forks(args: list[str], cache: Path, cwd: Path, mode: str = "process") -> tuple[dict, str]:
    out = subprocess.run([sys.executable, "-c", TRAIN_NOTING_FORKS, *args], cwd=cwd, env=_env(cache, mode),
                         capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.splitlines()[-1]), out.stderr


def test_a_spec_that_fails_validation_after_the_fork_leaves_no_child_and_prints_only_its_error(tmp_path: Path) -> None:
    doc = spec_doc(write_blobs(tmp_path / "blobs.npz"), epochs=1)
    doc["model"]["layers"][0]["unit"] = 16  # a misspelt key: validation fails after the child is forked
    spec = tmp_path / "bad.toml"
    spec.write_text(tomli_w.dumps(doc))
    cache = tmp_path / "numba-cache"
    result, stderr = _train_noting_forks([str(spec), "--run-dir", str(tmp_path / "run")], cache, tmp_path)
    assert result == {"code": 2, "forked": 1, "alive": []}
    assert stderr.startswith("error: bad.toml") and "unknown key" in stderr and "Traceback" not in stderr, stderr
    assert _children_using(cache) == []
    assert not (tmp_path / "run").exists()


def test_a_cold_run_hands_the_early_child_its_spec_and_reaps_it(tmp_path: Path) -> None:
    doc = spec_doc(write_blobs(tmp_path / "blobs.npz"), epochs=1)
    doc["model"]["layers"] = [{"type": "reshape", "target_shape": [2, 1]}, {"type": "gru", "units": 4},
                              *doc["model"]["layers"][1:]]
    spec = tmp_path / "gru.toml"
    spec.write_text(tomli_w.dumps(doc))
    cache = tmp_path / "numba-cache"
    result, stderr = _train_noting_forks([str(spec), "--quiet", "--run-dir", str(tmp_path / "run")], cache, tmp_path)
    # one child, forked early (the late fork finds it and forks no other), gone when the command returns
    assert result == {"code": 0, "forked": 1, "alive": []}, stderr
    assert stderr == ""
    cached = {path.name.split("-")[0] for path in cache.rglob("*.nbi")}
    assert "gru.gru_backward" in cached and not list(cache.rglob("dlcli-claim-*"))
    # a second run on the now warm cache forks nothing
    again, stderr = _train_noting_forks([str(spec), "--quiet", "--run-dir", str(tmp_path / "again")], cache,
                                        tmp_path)
    assert again == {"code": 0, "forked": 0, "alive": []}, stderr


def test_k_fold_training_hands_the_early_child_to_its_first_fold(tmp_path: Path) -> None:
    spec = tmp_path / "blobs.toml"
    doc = spec_doc(write_blobs(tmp_path / "blobs.npz"), epochs=1)
    del doc["data"]["validation_split"]  # the folds hold out the validation data
    spec.write_text(tomli_w.dumps(doc))
    cache = tmp_path / "numba-cache"
    result, stderr = _train_noting_forks([str(spec), "--quiet", "--folds", "2", "--run-dir", str(tmp_path / "kfold")],
                                         cache, tmp_path)
    # the first fold takes the early child; the second finds a warm cache and forks none
    assert result == {"code": 0, "forked": 1, "alive": []}, stderr
    assert sorted(path.name for path in (tmp_path / "kfold").glob("fold-*")) == ["fold-1", "fold-2"]
    assert not list(cache.rglob("dlcli-claim-*"))


def test_every_shipped_spec_reaches_the_early_child_as_it_was_validated() -> None:
    from dlcli.spec.load import load_spec
    from dlcli.spec.models import RunSpec

    for path in sorted((REPO / "specs").glob("*.toml")):
        spec = load_spec(path)
        # what the run sends down the pipe and the child validates again (precompile_fork.send_spec, compile_spec)
        sent = RunSpec.model_validate(json.loads(json.dumps(spec.model_dump(mode="json"))))
        assert sent == spec, path.name


# fork_early as `dlcli train` calls it; prints whether a child was forked and whether the cache looked empty
# (judged without Numba) and was (judged by Numba), then kills and reaps the child
FORK_EARLY = """
import json, sys, threading
from dlcli.train import precompile_fork

if sys.argv[2:] == ["thread"]:  # dlcli called in-process by a caller with a thread running
    threading.Thread(target=threading.Event().wait, daemon=True).start()
precompile_fork.fork_early(processes=int(sys.argv[1]))
forked = precompile_fork._early is not None
precompile_fork.drop_early_child()
looks_empty = precompile_fork.cache_looks_empty()
from dlcli.kernels.cache import holds_no_kernels
print(json.dumps({"forked": forked, "looks_empty": looks_empty, "empty": holds_no_kernels()}))
"""

FILL_CACHE = """
import numpy as np
from dlcli.kernels.recurrent import slope_terms
slope_terms(0, np.zeros(2, np.float32))
"""


def test_the_early_fork_happens_only_where_the_run_wants_a_child(tmp_path: Path) -> None:
    def fork_early(cache: Path, mode: str = "process", processes: int = 1, launcher: dict | None = None,
                   thread: bool = False) -> dict:
        env = {**_env(cache, mode), **(launcher or {})}
        out = subprocess.run([sys.executable, "-c", FORK_EARLY, str(processes), *(["thread"] if thread else [])],
                             cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.splitlines()[-1])

    empty, warm = tmp_path / "empty", tmp_path / "warm"
    assert fork_early(empty) == {"forked": True, "looks_empty": True, "empty": True}
    assert fork_early(empty, mode="thread")["forked"] is False
    assert fork_early(empty, mode="off")["forked"] is False
    assert fork_early(empty, processes=2)["forked"] is False
    assert fork_early(empty, launcher={"PMI_RANK": "0"})["forked"] is False  # one rank of an MPI launcher
    assert fork_early(empty, thread=True)["forked"] is False  # another thread's locks would stay held in the child
    out = subprocess.run([sys.executable, "-c", FILL_CACHE], cwd=REPO, env=_env(warm), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert fork_early(warm) == {"forked": False, "looks_empty": False, "empty": False}


# forks the early child as `dlcli train` does, prints its pid, and waits to be killed
RUN_WITH_AN_EARLY_CHILD = """
import time
from dlcli.train import precompile_fork

precompile_fork.fork_early()
print(precompile_fork._early.pid, flush=True)
time.sleep(600)
"""


def test_the_early_child_exits_when_the_run_dies(tmp_path: Path) -> None:
    cache = tmp_path / "numba-cache"
    parent = subprocess.Popen([sys.executable, "-c", RUN_WITH_AN_EARLY_CHILD], env=_env(cache), cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    assert sorted(_children_using(cache)) == sorted([parent.pid, child_pid])
    parent.kill()  # SIGKILL: no handler, no finally; the pipe closes with the process
    parent.wait()
    assert _children_left_after(cache, 60) == []


# holds the claim on batch normalization's forward kernel (as the child does while compiling it), then calls the
# kernel from two threads: one skipping claimed kernels (the run's compiling thread), one not (the run's others)
THREADS_MEET_A_CLAIM = """
import fcntl, json, threading, time
import numpy as np
from numba import typeof
from dlcli.kernels import batch_normalization
from dlcli.kernels.cache import ClaimedElsewhereError, _claim_path, claimed_kernels_skipped, \\
    share_compiles_between_processes

assert share_compiles_between_processes()
rows, one = np.zeros((2, 4), np.float32), np.ones(4, np.float32)
args = (rows, one, one, 1e-3, rows.copy(), one.copy(), one.copy(), one.copy())
claim_path = _claim_path(batch_normalization.batch_norm_forward._cache, tuple(typeof(a) for a in args))
claim_path.parent.mkdir(parents=True, exist_ok=True)
claim = open(claim_path, "a")
fcntl.flock(claim, fcntl.LOCK_EX)
seen = {}

def call(name, skipping):
    try:
        if skipping:
            with claimed_kernels_skipped():
                batch_normalization.batch_norm_forward(*args)
        else:
            batch_normalization.batch_norm_forward(*args)
        seen[name] = "ran"
    except ClaimedElsewhereError:
        seen[name] = "skipped"

skipping = threading.Thread(target=call, args=("skipping", True))
skipping.start()
skipping.join(30)
waiting = threading.Thread(target=call, args=("waiting", False))
waiting.start()
time.sleep(0.5)
seen["waited"] = waiting.is_alive()  # still waiting for the claim
claim_path.unlink()
claim.close()
waiting.join(300)
print(json.dumps(seen))
"""


def test_the_compiling_thread_skips_a_kernel_the_child_compiles_and_other_threads_wait_for_it(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", THREADS_MEET_A_CLAIM], cwd=REPO, env=_env(tmp_path / "numba"),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"skipping": "skipped", "waited": True, "waiting": "ran"}
