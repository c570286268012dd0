"""A run on an empty kernel cache compiles its kernels ahead while its data loads, in a background thread and a
child process, and trains exactly the weights of a run that compiles nothing ahead; the child leaves nothing
behind: no process, no claim file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import tomli_w

from tests.train.test_fit import spec_doc, weights_digest, write_blobs

REPO = Path(__file__).resolve().parents[2]

# trains the blobs spec (dropout included, so its random stream is checked too) for one epoch; prints whether
# the cache was empty, the threads that compiled a kernel, and the weights
TRAIN = """
import json, sys, threading
from pathlib import Path
from numba.core import event
from dlcli.kernels.cache import holds_no_kernels
from tests.train.test_fit import fit, spec_doc, weights_digest

threads = set()

class CompilingThreads(event.Listener):
    def on_start(self, ev):
        threads.add(threading.current_thread().name)

    def on_end(self, ev):
        pass

event.register("numba:compile", CompilingThreads())
folder, run = Path(sys.argv[1]), Path(sys.argv[1]) / sys.argv[2]
empty = holds_no_kernels()
fit(spec_doc(folder / "blobs.npz", epochs=1), run)
print(json.dumps({"empty": empty, "threads": sorted(threads),
                  "weights": weights_digest(run / "checkpoints" / "last.safetensors")}))
"""


def _env(cache: Path, mode: str = "process") -> dict[str, str]:
    return {**os.environ, "NUMBA_CACHE_DIR": str(cache), "DLCLI_PRECOMPILE": mode,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _train(folder: Path, run: str, cache: Path, mode: str = "process") -> dict:
    env = _env(cache, mode)
    out = subprocess.run([sys.executable, "-c", TRAIN, str(folder), run], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_an_empty_cache_compiles_in_the_background_and_trains_the_same_weights(tmp_path: Path) -> None:
    write_blobs(tmp_path / "blobs.npz")
    cache = tmp_path / "numba-cache"
    cold = _train(tmp_path, "cold", cache)
    # the thread and the forked child (whose compiles this process does not see) compiled all the run calls
    assert cold["empty"] and "MainThread" not in cold["threads"]
    alone = _train(tmp_path, "alone", tmp_path / "numba-thread", mode="thread")  # the thread without a child
    assert alone["empty"] and alone["threads"] == ["dlcli-precompile"]
    warm = _train(tmp_path, "warm", cache)  # the same cache, now filled: nothing compiles (the thread loads)
    assert not warm["empty"] and warm["threads"] == []
    assert cold["weights"] == alone["weights"] == warm["weights"]


def _children_using(cache: Path) -> list[int]:
    """Live processes whose NUMBA_CACHE_DIR is `cache` (a zombie counts as gone): once the run that forked a
    child has ended, any of them is a stray child."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if f"NUMBA_CACHE_DIR={cache}".encode() not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(proc.name))
        except OSError:  # not a process, not ours, or gone meanwhile
            continue
    return found


def _children_left_after(cache: Path, seconds: float) -> list[int]:
    """_children_using(cache) once it is empty, or after `seconds` (a stopped child takes a moment to exit)."""
    deadline = time.monotonic() + seconds
    while _children_using(cache) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _children_using(cache)


def test_a_cold_run_with_the_child_trains_the_weights_of_one_without_and_leaves_nothing_behind(tmp_path: Path) -> None:
    doc = spec_doc(write_blobs(tmp_path / "blobs.npz"), epochs=1)
    # a GRU and an LSTM: seconds of compiling, for the thread and the child to share
    doc["model"]["layers"] = [{"type": "reshape", "target_shape": [2, 1]},
                              {"type": "gru", "units": 4, "return_sequences": True}, {"type": "lstm", "units": 3},
                              *doc["model"]["layers"][1:]]
    spec = tmp_path / "blobs.toml"
    spec.write_text(tomli_w.dumps(doc))
    digests = {}
    for mode in ("process", "off"):
        cache = tmp_path / f"numba-{mode}"
        out = subprocess.run([sys.executable, "-m", "dlcli", "train", str(spec), "--quiet", "--run-dir",
                              str(tmp_path / mode)], cwd=tmp_path, env=_env(cache, mode), capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        digests[mode] = weights_digest(tmp_path / mode / "checkpoints" / "last.safetensors")
        assert list(cache.rglob("*.nbi"))  # the run's kernels are cached
        assert not list(cache.rglob("dlcli-claim-*"))
        assert _children_using(cache) == []
    assert digests["process"] == digests["off"]


def test_the_child_compiles_the_backward_passes_into_an_empty_cache(tmp_path: Path) -> None:
    from dlcli.spec.load import validate_spec

    spec = validate_spec({"name": "gru", "data": {"train": "x.npz"}, "model": {"input": {"shape": [5, 3]},
                          "layers": [{"type": "gru", "units": 4, "return_sequences": True},
                                     {"type": "dense", "units": 2, "activation": "softmax"}]},
                          "train": {"loss": "sparse_categorical_crossentropy", "optimizer": {"type": "adam"}}},
                         Path("s.toml"))
    cache = tmp_path / "numba-cache"
    out = subprocess.run([sys.executable, "-c", CHILD_ALONE, json.dumps(spec.model_dump(mode="json"))], cwd=REPO,
                         env=_env(cache), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"exit_status": 0}
    cached = {path.name.split("-")[0] for path in cache.rglob("*.nbi")}
    # the GRU's backward time loop (on zeros of its input) and the optimizer's update; the forward time loop is
    # the run's thread's to compile meanwhile
    assert {"gru.gru_backward", "optim.adam_update"} <= cached, cached
    assert "gru.gru_forward" not in cached
    assert not list(cache.rglob("dlcli-claim-*"))


def test_the_child_exits_when_the_run_dies(tmp_path: Path) -> None:
    """A run killed outright (SIGKILL: no handler, no finally) still takes its child along: its pipe closes."""
    cache = tmp_path / "numba-cache"
    parent = subprocess.Popen([sys.executable, "-c", RUN_THAT_STARTS_A_CHILD], env=_env(cache), cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    assert sorted(_children_using(cache)) == sorted([parent.pid, child_pid])
    parent.kill()
    parent.wait()
    assert _children_left_after(cache, 60) == []


# forks the child for the spec given as JSON (holding its pipe open: it compiles everything, then exits by itself)
# and prints its exit status
CHILD_ALONE = """
import json, os, sys
from dlcli.kernels.cache import share_compiles_between_processes
from dlcli.spec.models import RunSpec
from dlcli.train.precompile import _start_child

assert share_compiles_between_processes()
child = _start_child(RunSpec.model_validate(json.loads(sys.argv[1])))
_, status = os.waitpid(child.pid, 0)
print(json.dumps({"exit_status": os.waitstatus_to_exitcode(status)}))
"""


# starts a child on a recurrent model (seconds of compiling) as a run does, prints its pid, and waits to be killed
RUN_THAT_STARTS_A_CHILD = """
import time
from typing import Any
from pathlib import Path
from dlcli.spec.load import validate_spec
from dlcli.train.precompile import _start_child

spec = validate_spec({"name": "gru", "data": {"train": "x.npz"}, "model": {"input": {"shape": [5, 3]},
                      "layers": [{"type": "gru", "units": 4, "return_sequences": True}, {"type": "lstm", "units": 4},
                                 {"type": "dense", "units": 2, "activation": "softmax"}]},
                      "train": {"loss": "sparse_categorical_crossentropy"}}, Path("s.toml"))
child = _start_child(spec)
print(child.pid, flush=True)
time.sleep(600)
"""


# start_precompile on an empty cache: as one process, and as one rank of two (MPI). Whether a child is forked
# depends on the processes and the launcher, not on the model: a dense one compiles in a second (a GRU and an LSTM
# made the test 28 s)
STARTS = """
import json, sys
from pathlib import Path
from dlcli.spec.load import validate_spec
from dlcli.train.precompile import start_precompile

spec = validate_spec({"name": "dense", "data": {"train": "x.npz"}, "model": {"input": {"shape": [3]},
                      "layers": [{"type": "dense", "units": 2, "activation": "softmax"}]},
                      "train": {"loss": "sparse_categorical_crossentropy"}}, Path("s.toml"))
compiling = start_precompile(spec, processes=int(sys.argv[1]))
compiling.join()
started = compiling.child is not None
compiling.stop()
print(json.dumps({"thread": compiling.stepped, "child": started}))
"""


def test_a_rank_of_several_compiles_ahead_without_a_child(tmp_path: Path) -> None:
    started = {}
    for processes, launcher in ((1, {}), (2, {}), (1, {"PMI_RANK": "0"})):
        env = {**_env(tmp_path / f"numba-{processes}-{len(launcher)}"), **launcher}
        out = subprocess.run([sys.executable, "-c", STARTS, str(processes)], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        started[processes, len(launcher)] = json.loads(out.stdout.splitlines()[-1])
    assert started[1, 0] == {"thread": True, "child": True}
    assert started[2, 0] == {"thread": True, "child": False}  # the ranks fill the cores already
    assert started[1, 1] == {"thread": True, "child": False}  # the one rank of an MPI launcher: no fork


# the data fails to load at once, on an empty cache: the error must not wait until every kernel has compiled
CANCELLED = """
import json
from pathlib import Path
from dlcli.kernels import lstm
from dlcli.spec.load import validate_spec
from dlcli.train.precompile import compiling_ahead

spec = validate_spec({"name": "gru", "data": {"train": "x.npz"}, "model": {"input": {"shape": [5, 3]},
                      "layers": [{"type": "gru", "units": 4, "return_sequences": True}, {"type": "lstm", "units": 3},
                                 {"type": "dense", "units": 2, "activation": "softmax"}]},
                      "train": {"loss": "sparse_categorical_crossentropy"}}, Path("s.toml"))
try:
    with compiling_ahead(spec) as compiling:
        raise OSError("the data file is gone")
except OSError:
    pass
print(json.dumps({"thread_alive": compiling.thread.is_alive(), "stepped": compiling.stepped,
                  "lstm_forward": len(lstm.lstm_forward_rows.signatures)}))
"""


def test_a_run_whose_data_fails_stops_compiling_after_the_kernel_in_hand(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", CANCELLED], cwd=REPO, env=_env(tmp_path / "numba"),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    # the thread was still on the loss or the GRU: it never reached the LSTM, nor the whole step
    assert json.loads(out.stdout.splitlines()[-1]) == {"thread_alive": False, "stepped": False, "lstm_forward": 0}
    assert _children_left_after(tmp_path / "numba", 30) == []


# the collector's thresholds while compiling ahead, and after the join: the run's own again, nothing left frozen
GC_SETTINGS = """
import gc, json
from pathlib import Path
from dlcli.spec.load import validate_spec
from dlcli.train.precompile import start_precompile

spec = validate_spec({"name": "dense", "data": {"train": "x.npz"}, "model": {"input": {"shape": [3]},
                      "layers": [{"type": "dense", "units": 2, "activation": "softmax"}]},
                      "train": {"loss": "sparse_categorical_crossentropy"}}, Path("s.toml"))
gc.set_threshold(500, 7, 9)
compiling = start_precompile(spec)
during = gc.get_threshold()
compiling.join()
compiling.stop()
print(json.dumps({"during": during, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_compiling_ahead_relaxes_the_collector_and_restores_it_at_the_join(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", GC_SETTINGS], cwd=REPO, env=_env(tmp_path / "numba"),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"during": [100_000, 50, 1000], "after": [500, 7, 9],
                                                       "frozen": 0}


# a run on a warm cache: how many kernel signatures its steps loaded from the cache (every dlcli kernel's cache
# hits, counted when the first step begins and when the epoch ends), and its weights
STEPS_LOADING = """
import json, sys
from pathlib import Path
from numba.core.registry import CPUDispatcher
import dlcli.kernels
from dlcli.train.callbacks import Callback
from tests.train.test_fit import fit, spec_doc, weights_digest

def cache_hits():
    import pkgutil, importlib
    total = 0
    for info in pkgutil.iter_modules(dlcli.kernels.__path__):
        module = importlib.import_module(f"dlcli.kernels.{info.name}")
        for value in vars(module).values():
            if isinstance(value, CPUDispatcher):
                total += sum(value.stats.cache_hits.values())
    return total

class Counting(Callback):
    def on_batch_begin(self, run, epoch, step):
        if step == 1:
            self.first = cache_hits()

    def on_epoch_end(self, run, epoch, logs):
        self.last = cache_hits()

folder, run = Path(sys.argv[1]), Path(sys.argv[1]) / sys.argv[2]
counting = Counting()
fit(spec_doc(folder / "blobs.npz", epochs=1), run, [counting])
print(json.dumps({"loaded_by_steps": counting.last - counting.first,
                  "weights": weights_digest(run / "checkpoints" / "last.safetensors")}))
"""


def test_a_warm_cache_loads_the_kernels_while_the_data_loads_and_trains_the_same_weights(tmp_path: Path) -> None:
    write_blobs(tmp_path / "blobs.npz")
    cache = tmp_path / "numba-cache"
    _train(tmp_path, "fill", cache)  # fills the cache
    runs = {}
    for mode in ("process", "off"):
        out = subprocess.run([sys.executable, "-c", STEPS_LOADING, str(tmp_path), mode], cwd=REPO,
                             env=_env(cache, mode), capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        runs[mode] = json.loads(out.stdout.splitlines()[-1])
    # the thread loaded every kernel the steps call before the first one; without it, the first step loads them
    assert runs["process"]["loaded_by_steps"] == 0 and runs["off"]["loaded_by_steps"] > 0
    assert runs["process"]["weights"] == runs["off"]["weights"]


# holds the claim on batch normalization's forward kernel (as the run's thread does while compiling it) until
# the child has gone past every layer to the optimizer, then lets it go without compiling it
CHILD_MEETS_A_CLAIM = """
import fcntl, json, os, sys, time
from pathlib import Path
import numpy as np
from numba import typeof
from dlcli.kernels import batch_normalization
from dlcli.kernels.cache import _claim_path, share_compiles_between_processes
from dlcli.spec.models import RunSpec
from dlcli.train.precompile import _start_child

assert share_compiles_between_processes()
rows, one = np.empty((2, 4), np.float32), np.empty(4, np.float32)
args = tuple(typeof(a) for a in (rows, one, one, 1e-3, rows, one, one, one))
claim_path = _claim_path(batch_normalization.batch_norm_forward._cache, args)
claim_path.parent.mkdir(parents=True, exist_ok=True)
claim = open(claim_path, "a")
fcntl.flock(claim, fcntl.LOCK_EX)
child = _start_child(RunSpec.model_validate(json.loads(sys.argv[1])))
cache = Path(os.environ["NUMBA_CACHE_DIR"])
deadline = time.monotonic() + 300
while not list(cache.rglob("optim.adam_update-*.nbi")) and time.monotonic() < deadline:
    time.sleep(0.02)
time.sleep(0.5)  # the loss and metrics, which come after the optimizer
claim_path.unlink()
claim.close()
_, status = os.waitpid(child.pid, 0)
print(json.dumps({"exit_status": os.waitstatus_to_exitcode(status)}))
"""


def test_the_child_comes_back_to_a_layer_it_left_to_the_thread(tmp_path: Path) -> None:
    from dlcli.spec.load import validate_spec

    spec = validate_spec({"name": "bn", "data": {"train": "x.npz"}, "model": {"input": {"shape": [4]},
                          "layers": [{"type": "batch_normalization"},
                                     {"type": "dense", "units": 2, "activation": "softmax"}]},
                          "train": {"loss": "sparse_categorical_crossentropy", "optimizer": {"type": "adam"}}},
                         Path("s.toml"))
    cache = tmp_path / "numba-cache"
    out = subprocess.run([sys.executable, "-c", CHILD_MEETS_A_CLAIM, json.dumps(spec.model_dump(mode="json"))],
                         cwd=REPO, env=_env(cache), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"exit_status": 0}
    cached = {path.name.split("-")[0] for path in cache.rglob("*.nbi")}
    # the forward it met claimed was left at first; once the claim went, the child compiled the layer after all
    assert {"batch_normalization.batch_norm_forward", "batch_normalization.batch_norm_backward"} <= cached, cached
    assert not list(cache.rglob("dlcli-claim-*"))
