"""Synchronous data-parallel training over MPI (mpi4py), Horovod-style.

Every rank holds the whole model and the whole data set, draws the same shuffled order, and takes its own
contiguous shard of each global batch. After its backward pass a rank copies its gradients and the moving
statistics of layers that update them in training (each scaled by its shard's share of the batch: 1.0 when the
shards are equal, 0 for a rank that got no example of a short last batch), its share of the loss and its stop
request into one flat float32 buffer; one in-place Allreduce sums that buffer on every rank, and every rank
then applies the same optimizer update to the same weights, and holds the same moving statistics: their
per-example average over the ranks. Rank 0 alone writes files.

Why two ranks give bit-identical results to one process averaging two half-batches: the sum of two
float32 numbers does not depend on their order, and halving is exact. With three or more ranks MPI may
add the partial sums in a different order than a single process would (a tree, a ring), and float32
addition is not associative, so the last bits may differ; every rank still gets the same bits as every
other, which is what keeps the replicas identical.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from dlcli.errors import DistributedError, SpecError
from dlcli.graph import Model
from dlcli.tensor import Tensor
from dlcli.tensor.sparse import SparseRows
from dlcli.train.launcher import INSTALL_COMMAND, abort_after_output, under_mpi_launcher

STOP_CODES = {2: 1.0, 15: 1000.0}  # SIGINT, SIGTERM: a sum over ranks still tells which signal came


class World:
    """One process: rank 0 of 1, nothing to communicate. The interface the training loop talks to."""

    rank = 0
    size = 1
    check_every = 0

    def shard_counts(self, n: int) -> list[int]:
        """How many of a batch's `n` examples each rank takes."""
        return [n]

    def shard(self, index: np.ndarray) -> np.ndarray:
        """This rank's contiguous part of a global batch."""
        return index

    def reduce_step(self, params: dict[str, Tensor], states: list[np.ndarray], values: list[float],
                    n_local: int, n_total: int, stop_signal: int) -> tuple[list[float], int]:
        """Combine one step over all ranks; returns the batch's loss values and the agreed stop signal (0: go on)."""
        return values, stop_signal

    def gather_rows(self, array: np.ndarray, n_total: int) -> np.ndarray:
        """Every rank's shard of a batch-first array, in batch order."""
        return array

    def broadcast_model(self, model: Model) -> None:
        """Make every rank's weights and layer state rank 0's."""

    def agree(self, value: Any) -> Any:
        """Rank 0's JSON-able `value`, on every rank."""
        return value

    def gather_json(self, value: Any) -> list[Any]:
        """Every rank's JSON-able `value`, by rank, on every rank."""
        return [value]

    def broadcast_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's bytes, on every rank."""
        assert data is not None
        return data

    def check_weights(self, model: Model, step: int) -> str:
        """The hash of the weights; under MPI, a DistributedError when the ranks' hashes differ."""
        return weights_hash(model)

    def barrier(self) -> None:
        """Wait until every rank gets here."""

    def close(self) -> None:
        """Stop the watchdog."""


def weights_hash(model: Model) -> str:
    """sha256 over every trainable weight and layer state array, by name."""
    digest = hashlib.sha256()
    arrays = {**{f"param/{k}": t.data for k, t in model.parameters().items()},
              **{f"state/{k}": v for k, v in model.state().items()}}
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def moving_states(model: Model) -> list[np.ndarray]:
    """The float32 state arrays that training changes (batch-norm moving statistics), to average over ranks."""
    return [array for layer in model.layers if layer.state_moves_in_training
            for array in layer.state_arrays().values() if array.dtype == np.float32]


def connect(timeout: float, check_every: int) -> World:
    """The world this process trains in: MPI's when a launcher started it with 2 or more ranks, else one process.

    A missing mpi4py under an MPI launcher is a SpecError (exit 2) giving the install command.
    """
    if not under_mpi_launcher():
        return World()
    try:
        from mpi4py import MPI
    except ImportError:
        raise SpecError(f"this process was started by an MPI launcher but mpi4py is not installed; install the "
                        f"extra with: {INSTALL_COMMAND}") from None
    comm = MPI.COMM_WORLD
    if comm.Get_size() == 1:
        return World()
    return MpiWorld(comm, timeout, check_every)


class MpiWorld(World):
    """A rank of an MPI job: collectives over COMM_WORLD, each guarded by the watchdog."""

    def __init__(self, comm: Any, timeout: float, check_every: int) -> None:
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout, self.check_every = timeout, check_every
        self._buffer = np.empty(0, np.float32)
        self._waiting: tuple[str, float] | None = None  # (what, deadline) while inside a collective
        self._closed = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="dlcli-mpi-watchdog", daemon=True)
        self._watchdog.start()

    # -- the watchdog: a collective that never returns means a rank died or hangs; end the whole job

    @contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        self._waiting = (what, time.monotonic() + self.timeout)
        try:
            yield
        finally:
            self._waiting = None

    def _watch(self) -> None:
        while not self._closed.wait(min(1.0, self.timeout / 4)):
            waiting = self._waiting
            if waiting is not None and time.monotonic() > waiting[1]:
                sys.stderr.write(f"error: rank {self.rank}: the MPI {waiting[0]} did not complete within "
                                 f"{self.timeout:g} s (--mpi-timeout): another rank died or hangs; aborting the "
                                 "job\n")
                abort_after_output(self.comm, 1)

    def close(self) -> None:
        self._closed.set()

    # -- sharding

    def shard_counts(self, n: int) -> list[int]:
        base, extra = divmod(n, self.size)
        return [base + (1 if r < extra else 0) for r in range(self.size)]

    def shard(self, index: np.ndarray) -> np.ndarray:
        counts = self.shard_counts(len(index))
        start = sum(counts[:self.rank])
        return index[start:start + counts[self.rank]]

    # -- one training step

    def reduce_step(self, params: dict[str, Tensor], states: list[np.ndarray], values: list[float],
                    n_local: int, n_total: int, stop_signal: int) -> tuple[list[float], int]:
        from mpi4py import MPI

        # a rank's gradients, moving statistics and loss count by its share of the batch's examples: exactly 1
        # when the shards are equal, 0 for a rank that got none of a short last batch (its loss and batch
        # statistics are means over nothing, NaN, which 0 * NaN would still spread: _put writes zeros)
        weight = np.float32(n_local * self.size / n_total)
        dense = {name: p for name, p in params.items() if not isinstance(p.grad, SparseRows)}
        sizes = [p.data.size for p in dense.values()] + [s.size for s in states]
        extras = len(dense) + len(values) + 1
        total = sum(sizes) + extras
        if self._buffer.size != total:
            self._buffer = np.empty(total, np.float32)
        buffer, offset = self._buffer, 0
        for p in dense.values():
            _put(buffer[offset:offset + p.data.size], p.grad, weight)
            offset += p.data.size
        for state in states:
            _put(buffer[offset:offset + state.size], state, weight)
            offset += state.size
        tail = buffer[offset:]
        tail[:len(dense)] = [0.0 if p.grad is None else 1.0 for p in dense.values()]
        tail[len(dense):len(dense) + len(values)] = [v * n_local / n_total if n_local else 0.0 for v in values]
        tail[-1] = STOP_CODES.get(stop_signal, 0.0)
        with self._collective("allreduce of gradients"):
            self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        offset = 0
        for (name, p), has_grad in zip(dense.items(), tail[:len(dense)]):
            part = buffer[offset:offset + p.data.size]
            np.divide(part, self.size, out=part)
            p.grad = part.reshape(p.data.shape) if has_grad else None
            offset += p.data.size
        for state in states:
            np.divide(buffer[offset:offset + state.size], self.size, out=state.reshape(-1))
            offset += state.size
        for name, p in params.items():
            if isinstance(p.grad, SparseRows):
                p.grad = self._all_rows(p.grad, weight)
        code = float(tail[-1])
        stop = 15 if code >= 1000.0 else 2 if code >= 1.0 else 0
        return [float(v) for v in tail[len(dense):len(dense) + len(values)]], stop

    def _all_rows(self, grad: SparseRows, weight: np.float32) -> SparseRows:
        """Every rank's rows of a sparse gradient, concatenated: repeats add up when the optimizer coalesces."""
        values = np.ascontiguousarray(grad.values, np.float32) * weight / np.float32(self.size)
        counts = np.array(self.comm.allgather(int(grad.indices.size)), np.int64)
        width = int(np.prod(grad.shape[1:], dtype=np.int64))
        indices = np.empty(int(counts.sum()), np.int64)
        rows = np.empty((int(counts.sum()), *grad.shape[1:]), np.float32)
        with self._collective("allgather of sparse gradient rows"):
            self.comm.Allgatherv(grad.indices, [indices, (counts, _displacements(counts))])
            self.comm.Allgatherv(values.reshape(-1), [rows.reshape(-1), (counts * width,
                                                                           _displacements(counts * width))])
        return SparseRows(indices, rows, grad.shape)

    def gather_rows(self, array: np.ndarray, n_total: int) -> np.ndarray:
        array = np.ascontiguousarray(array)
        row = int(np.prod(array.shape[1:], dtype=np.int64))
        counts = np.array(self.shard_counts(n_total), np.int64) * row
        out = np.empty((n_total, *array.shape[1:]), array.dtype)
        with self._collective("allgather of predictions"):
            self.comm.Allgatherv(array.reshape(-1), [out.reshape(-1), (counts, _displacements(counts))])
        return out

    # -- agreement

    def broadcast_model(self, model: Model) -> None:
        arrays = [t.data for t in model.parameters().values()] + \
                 [a for a in model.state().values() if a.dtype == np.float32]
        flat = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.empty(0, np.float32)
        with self._collective("broadcast of the initial weights"):
            self.comm.Bcast(flat, root=0)
        offset = 0
        for array in arrays:
            array.reshape(-1)[...] = flat[offset:offset + array.size]
            offset += array.size

    def agree(self, value: Any) -> Any:
        with self._collective("broadcast of rank 0's decision"):
            text = self.comm.bcast(json.dumps(value) if self.rank == 0 else None, root=0)
        return json.loads(text)

    def gather_json(self, value: Any) -> list[Any]:
        with self._collective("allgather of per-rank state"):
            texts = self.comm.allgather(json.dumps(value))
        return [json.loads(text) for text in texts]

    def broadcast_bytes(self, data: bytes | None) -> bytes:
        size = np.array([len(data) if data is not None else 0], np.int64)
        with self._collective("broadcast of the checkpoint"):
            self.comm.Bcast(size, root=0)
            buffer = np.frombuffer(data, np.uint8).copy() if self.rank == 0 and data is not None \
                else np.empty(int(size[0]), np.uint8)
            self.comm.Bcast(buffer, root=0)
        return buffer.tobytes()

    def check_weights(self, model: Model, step: int) -> str:
        mine = weights_hash(model)
        hashes = self.gather_json(mine)
        if len(set(hashes)) > 1:
            differ = [r for r, h in enumerate(hashes) if h != hashes[0]]
            raise DistributedError(f"the ranks' weights diverged at step {step}: ranks {differ} differ from rank 0 "
                                   "(a non-deterministic kernel or a rank that skipped an update); training stops "
                                   "so that no inconsistent checkpoint is written")
        return mine

    def barrier(self) -> None:
        with self._collective("barrier"):
            self.comm.Barrier()


def _put(part: np.ndarray, array: Any, weight: np.float32) -> None:
    """`array * weight` into the flat buffer slice `part`; zeros when there is no array or its weight is 0."""
    if array is None or weight == 0.0:
        part[...] = 0.0
    elif weight == 1.0:
        part[...] = np.asarray(array).reshape(-1)
    else:
        np.multiply(np.asarray(array).reshape(-1), weight, out=part)


def _displacements(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
