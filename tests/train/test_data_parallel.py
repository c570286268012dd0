"""Data-parallel training on 2 MPI ranks (loopback): identical replicas, exact resume, no hangs, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.checkpoint import load_checkpoint
from dlcli.data import batch_slices, shuffled_order
from dlcli.graph import build_model
from dlcli.optimizers import create_optimizer
from dlcli.spec.load import validate_spec
from dlcli.tensor import Tensor
from dlcli.train.datasets import load_splits
from dlcli.train.distributed import World, moving_states, weights_hash
from dlcli.train.streams import Streams
from dlcli.train.loop import Objective
from tests.train import faults
from tests.train.test_fit import write_blobs
from tests.train.test_interrupts import digest

SPEC = """name = "blobs"
seed = 5
[data]
train = "blobs.npz"
validation_split = 0.25
[model]
input = {{ shape = [2] }}
layers = [{{ type = "dense", units = 16, activation = "relu" }}, {layers}{{ type = "dense", units = 3, activation = "softmax" }}]
[train]
loss = "sparse_categorical_crossentropy"
optimizer = {{ type = "adam", learning_rate = 0.01 }}
metrics = ["accuracy"]
epochs = {epochs}
batch_size = 16
"""


def _spec(folder: Path, epochs: int = 3, dropout: bool = False, batch_norm: bool = False, n: int = 480) -> Path:
    write_blobs(folder / "blobs.npz", n=n)  # 3/4 of n train: 360 of 480, 22 batches of 16 and one of 8
    path = folder / "blobs.toml"
    layers = ('{ type = "dropout", rate = 0.2 }, ' if dropout else "") + \
        ('{ type = "batch_normalization" }, ' if batch_norm else "")
    path.write_text(SPEC.format(epochs=epochs, layers=layers))
    return path


def _env(**extra: str) -> dict[str, str]:
    return faults.env(CI="true", **extra)  # DLCLI_TEST_* faults in `extra` reach the process through the seam


def _train(spec: Path, run: Path, *extra: str, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dlcli", "train", str(spec), "--run-dir", str(run), "--quiet",
                           *extra], env=env or _env(), capture_output=True, text=True, timeout=timeout)


def _popen(spec: Path, run: Path, *extra: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "dlcli", "train", str(spec), "--run-dir", str(run), "--quiet",
                             *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _history(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def _two_half_batches_reference(spec_path: Path, epochs: int) -> dict[str, np.ndarray]:
    """What 2 ranks must compute: each global batch split in two contiguous halves (the first one longer when the
    batch is odd), each half's gradient and batch-norm moving statistics taken separately, the two summed, each
    weighted by its half's share of the batch's examples, then halved: one Adam update. A half with no example
    (a last batch of 1) adds nothing. In one process, with no MPI at all; the float32 operations are the ranks'."""
    import sys as _sys

    if _sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    doc = tomllib.loads(spec_path.read_text())
    doc["data"]["train"] = str(spec_path.parent / doc["data"]["train"])
    spec = validate_spec(doc, spec_path)
    streams = Streams(spec.seed)
    model = build_model(spec.model, streams.model, spec)
    splits = load_splits(spec, model, streams.split)
    optimizer = create_optimizer(spec.train.optimizer.model_dump(), model.parameters())
    objective = Objective(model, {k: v.shape[1:] for k, v in splits.train.targets.items()})
    params, states = model.parameters(), moving_states(model)
    for _ in range(epochs):
        for index in batch_slices(shuffled_order(len(splits.train), streams.shuffle), spec.train.batch_size):
            before = [state.copy() for state in states]
            halves: list[dict[str, np.ndarray]] = []
            for half in np.array_split(index, 2):
                weight = np.float32(len(half) * 2 / len(index))  # exactly 1 for equal halves
                if len(half) == 0:
                    halves.append({**{name: np.zeros_like(p.data) for name, p in params.items()},
                                   **{str(i): np.zeros_like(s) for i, s in enumerate(states)}})
                    continue
                for state, start in zip(states, before):
                    state[...] = start  # each rank's layers start the step from the same statistics
                batch = splits.train.take(half)
                loss, _ = objective.loss(model({"input": Tensor(batch.inputs["input"])}, training=True),
                                         batch.targets)
                optimizer.zero_grad()
                loss.backward()
                halves.append({**{name: np.asarray(p.grad) * weight for name, p in params.items()},
                               **{str(i): s * weight for i, s in enumerate(states)}})
            for name, p in params.items():
                p.grad = (halves[0][name] + halves[1][name]) / np.float32(2)
            for i, state in enumerate(states):
                state[...] = (halves[0][str(i)] + halves[1][str(i)]) / np.float32(2)
            optimizer.step()
    return {**{f"param/{k}": t.data for k, t in params.items()},
            **{f"state/{k}": v for k, v in model.state().items()}}


def test_two_ranks_equal_one_process_averaging_two_half_batches_bit_for_bit(tmp_path: Path) -> None:
    spec = _spec(tmp_path, epochs=3)
    result = _train(spec, tmp_path / "run", "--workers", "2", "--mpi-check-every", "1")
    assert result.returncode == 0, result.stderr
    arrays, metadata = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert metadata["world_size"] == 2 and len(metadata["rng_ranks"]) == 2
    reference = _two_half_batches_reference(spec, epochs=3)
    for name, expected in reference.items():
        assert arrays[name].tobytes() == expected.tobytes(), name
    # the reported numbers are the global batch's: close to a single-process run of the same spec
    single = _train(spec, tmp_path / "single")
    assert single.returncode == 0, single.stderr
    for two, one in zip(_history(tmp_path / "run"), _history(tmp_path / "single")):
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-4)
        assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-4)
        assert two["accuracy"] == pytest.approx(one["accuracy"], abs=1 / 360 + 1e-9)


def test_sigterm_mid_epoch_then_resume_on_two_ranks_ends_with_the_same_hash(tmp_path: Path) -> None:
    spec = _spec(tmp_path, epochs=3, dropout=True)  # dropout: each rank's own random stream must resume too
    straight = _train(spec, tmp_path / "straight", "--workers", "2")
    assert straight.returncode == 0, straight.stderr
    job = _popen(spec, tmp_path / "cut", "--workers", "2", env=_env(DLCLI_TEST_PAUSE_STEP="0.03"))
    deadline = time.monotonic() + 60
    while not (tmp_path / "cut" / "checkpoints" / "last.safetensors").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)  # into the second epoch
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=60)
    assert job.returncode == -signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "--resume --workers 2" in err and "Traceback" not in err
    _, metadata = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.safetensors")
    assert metadata["in_epoch"] is not None  # a mid-epoch checkpoint
    resumed = _train(tmp_path / "cut", tmp_path / "cut", "--resume", "--workers", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert digest(tmp_path / "cut" / "checkpoints" / "last.safetensors") == \
        digest(tmp_path / "straight" / "checkpoints" / "last.safetensors")


@pytest.mark.parametrize("fault,code,words", [
    ("1:3:raise", 1, "rank 1: internal error (RuntimeError: injected fault on rank 1 at step 3)"),
    ("1:3:hang", 1, "the MPI allreduce of gradients did not complete within 3 s"),
    ("1:3:perturb", 1, "the ranks' weights diverged at step 4: ranks [1] differ from rank 0"),
])
def test_a_failing_or_hanging_rank_ends_the_whole_job_within_10_s(tmp_path: Path, fault: str, code: int,
                                                                   words: str) -> None:
    spec = _spec(tmp_path)
    started = time.monotonic()
    result = _train(spec, tmp_path / "run", "--workers", "2", "--mpi-timeout", "3", "--mpi-check-every", "2",
                    env=_env(DLCLI_TEST_FAULT=fault), timeout=60)
    # the job ends instead of hanging to the 60 s timeout; the bound is loose because two Python processes start
    # slowly on a loaded machine (12.03 s was seen), and this is no timing test
    assert time.monotonic() - started < 30
    assert result.returncode == code, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr


def test_an_error_every_rank_meets_is_said_once_and_leaves_no_run_directory(tmp_path: Path) -> None:
    """Every rank printed the same error (two --json error events), and rank 1's abort could kill rank 0 before
    it removed the empty runs/blobs/ it had claimed."""
    spec = _spec(tmp_path)
    spec.write_text(spec.read_text().replace('"blobs.npz"', '"missing.npz"'))
    result = subprocess.run([sys.executable, "-m", "dlcli", "train", str(spec), "--workers", "2", "--json"],
                            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    event = {"event": "error", "exit_code": 3,
             "message": f"data.train: {tmp_path / 'missing.npz'} does not exist; check the path"}
    assert [json.loads(line) for line in result.stdout.splitlines()] == [event]
    assert result.stderr.strip() == json.dumps(event)  # and no MPI "Abort(3) on node 0" line
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_an_error_only_rank_1_meets_is_said_by_rank_1(tmp_path: Path) -> None:
    """Rank 1 gives rank 0 a few seconds to say an error every rank meets; rank 0 has none here, so rank 1 says
    its own and ends the job."""
    result = _train(_spec(tmp_path), tmp_path / "run", "--workers", "2", env=_env(DLCLI_TEST_FAULT="1:3:data"))
    assert result.returncode == 3
    assert result.stderr.strip() == "error: rank 1: injected data error on rank 1 at step 3"


def _rank_pid(run: Path, rank: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"PMI_RANK={rank}".encode() in environ and str(run).encode() in cmdline:
            return int(entry.name)
    return None


def test_sigkill_of_one_rank_ends_the_job_with_137_and_one_error_naming_the_rank(tmp_path: Path) -> None:
    """mpiexec (hydra) exited with the bare signal number, 9, and printed its own banner on stdout, into the
    --json stream; by a race (a rank's MPI read the dead rank's memory) it was 143, SIGTERM's code, with an MPICH
    error stack. Now: 128 + 9, as a shell reports a killed process, and one error event."""
    spec = _spec(tmp_path, epochs=50)
    job = _popen(spec, tmp_path / "run", "--workers", "2", "--json", env=_env(DLCLI_TEST_PAUSE_STEP="0.02"))
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / "checkpoints" / "last.safetensors").exists():
        assert time.monotonic() < deadline and job.poll() is None
        time.sleep(0.02)
    pid = _rank_pid(tmp_path / "run", 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    out, err = job.communicate(timeout=30)
    assert time.monotonic() - killed < 10
    assert job.returncode == 137, err
    events = [json.loads(line) for line in out.splitlines()]  # nothing but JSON: hydra's banner is not passed on
    assert events[0]["event"] == "start" and events[-1] == {
        "event": "error", "exit_code": 137,
        "message": f"rank 1 of 2 was killed by signal 9 (SIGKILL), which ended the job; continue from the run's "
                   f"last checkpoint with: dlcli train {tmp_path / 'run'} --resume --workers 2"}
    assert err.strip() == json.dumps(events[-1])  # the error, once, and no launcher banner or MPI error stack
    load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")  # nothing lost


def test_resume_with_another_world_size_is_refused_unless_asked(tmp_path: Path) -> None:
    spec = _spec(tmp_path, epochs=1)
    assert _train(spec, tmp_path / "run", "--workers", "2").returncode == 0
    refused = _train(tmp_path / "run", tmp_path / "run", "--resume", "--set", "train.epochs=2")
    assert refused.returncode == 2
    assert "was trained on 2 ranks and this job has 1" in refused.stderr and "--allow-world-size-change" in \
        refused.stderr
    allowed = _train(tmp_path / "run", tmp_path / "run", "--resume", "--set", "train.epochs=2",
                     "--allow-world-size-change")
    assert allowed.returncode == 0, allowed.stderr
    assert [row["epoch"] for row in _history(tmp_path / "run")] == [1, 2]


def test_a_batch_size_that_does_not_split_over_the_ranks_is_a_spec_error(tmp_path: Path) -> None:
    result = _train(_spec(tmp_path), tmp_path / "run", "--workers", "3")
    assert result.returncode == 2
    assert result.stderr.startswith("error: train.batch_size: 16 does not split evenly over 3 ranks; use a multiple "
                                    "of 3")


def test_workers_without_mpi4py_is_exit_2_with_the_install_command(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from dlcli.cli import commands  # noqa: F401 - registers the subcommands
    from dlcli.cli.main import cli

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # what a plain install looks like
    result = CliRunner().invoke(cli, ["train", str(_spec(tmp_path)), "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers needs mpi4py, which is not installed; install the extra with: pip install 'dlcli[mpi]'" \
        in result.output


def test_one_process_is_a_world_of_one() -> None:
    world = World()
    index = np.arange(5)
    assert world.shard(index) is index and world.gather_rows(index, 5) is index
    assert world.reduce_step({}, [], [1.5], 5, 5, 0) == ([1.5], 0)
    assert world.agree({"a": 1}) == {"a": 1} and world.gather_json(3) == [3]


def test_weights_hash_changes_with_any_weight(tmp_path: Path) -> None:
    doc = {"name": "h", "data": {"dataset": "iris"}, "model": {"input": {"shape": [4]},
                                                               "layers": [{"type": "dense", "units": 3}]},
           "train": {"loss": "mse", "optimizer": "sgd"}}
    spec = validate_spec(doc, Path("h.toml"))
    model = build_model(spec.model, np.random.default_rng(0), spec)
    before = weights_hash(model)
    next(iter(model.parameters().values())).data.reshape(-1)[0] += 1e-7
    assert weights_hash(model) != before


# 353 train examples: a last batch of 1, rank 1 gets none; 355: a last batch of 3, split 2/1
@pytest.mark.parametrize("examples,regression", [(471, True), (474, False)])
def test_batch_norm_statistics_are_averaged_per_example_and_an_empty_shard_adds_nothing(
        tmp_path: Path, examples: int, regression: bool) -> None:
    """A rank with no example takes the mean of nothing, NaN: its batch statistics went into the average, and
    every moving statistic and val_loss became NaN in a run that ended with exit 0; with mse its loss (NaN too)
    went into the step's loss, and the run stopped at once as diverged (exit 5)."""
    spec = _spec(tmp_path, epochs=2, batch_norm=True, n=examples)
    if regression:
        data = np.load(tmp_path / "blobs.npz")
        np.savez(tmp_path / "blobs.npz", x=data["x"], y=data["x"][:, :1] * np.float32(2.0))
        spec.write_text(spec.read_text().replace('units = 3, activation = "softmax"', "units = 1")
                        .replace('"sparse_categorical_crossentropy"', '"mse"').replace('["accuracy"]', '["mae"]'))
    # every step compares the hashes of all weights and layer state, moving statistics included
    result = _train(spec, tmp_path / "run", "--workers", "2", "--mpi-check-every", "1")
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
    arrays, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    reference = _two_half_batches_reference(spec, epochs=2)
    assert np.all(reference["state/batch_normalization/moving_mean"] != 0.0)  # they moved
    for name, expected in reference.items():
        assert arrays[name].tobytes() == expected.tobytes(), name
    assert all(np.isfinite(row["val_loss"]) for row in _history(tmp_path / "run"))


def test_masked_sequence_metrics_see_the_masks_of_the_whole_global_batch(tmp_path: Path) -> None:
    """Predictions are gathered from both ranks for the metrics; so must their step masks be (a rank's own mask
    beside the global batch's predictions would not even have its shape)."""
    rng = np.random.default_rng(0)
    ids = np.zeros((64, 7), np.int32)
    for i, length in enumerate(rng.integers(4, 8, 64)):
        ids[i, 7 - length:] = rng.integers(1, 6, length)  # left padding: the decoders must move it behind
    labels = np.full((64, 2), -1)
    labels[:, 0] = ids[:, -1] % 3
    np.savez(tmp_path / "seq.npz", x=ids, y=labels)
    spec = tmp_path / "seq.toml"
    spec.write_text('name = "seq"\nseed = 2\n[data]\ntrain = "seq.npz"\n[model]\n'
                    'input = { shape = [7], dtype = "int32" }\n'
                    'layers = [{ type = "embedding", input_dim = 6, output_dim = 4, mask_zero = true }, '
                    '{ type = "gru", units = 6, return_sequences = true }, '
                    '{ type = "dense", units = 4, activation = "softmax" }]\n'
                    '[train]\nloss = "ctc"\nmetrics = ["sequence_accuracy", "edit_distance"]\nepochs = 2\n'
                    'batch_size = 16\n')
    result = _train(spec, tmp_path / "run", "--workers", "2")
    assert result.returncode == 0, result.stderr
    history = _history(tmp_path / "run")
    assert len(history) == 2 and 0.0 <= history[-1]["sequence_accuracy"] <= 1.0
    # the epoch's metric counts every sequence once: it is a multiple of 1/64
    assert history[-1]["sequence_accuracy"] * 64 == pytest.approx(round(history[-1]["sequence_accuracy"] * 64))
