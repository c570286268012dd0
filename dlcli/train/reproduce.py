"""`dlcli reproduce`: what a re-run of a finished run must match (its data, its machine) and whether it did (its
final weights, bit for bit)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.checkpoint import load_checkpoint
from dlcli.errors import CheckpointError, DataError, SpecError
from dlcli.spec.models import RunSpec
from dlcli.train.manifest import data_fingerprints, environment
from dlcli.train.rundir import checkpoint_path
from dlcli.train.runs import RunRecord

# what bit-identical weights depend on, besides the spec and the data
ENVIRONMENT_KEYS = ("python", "numpy", "numba", "scipy", "blas", "machine", "cpu", "hostname")
MODEL_PREFIXES = ("param/", "state/")


def reproducible_spec(record: RunRecord) -> RunSpec:
    """The resolved spec of a finished run with a manifest; SpecError for a run that cannot be reproduced."""
    if not record.manifest.get("run_id") or "sessions" not in record.manifest:
        raise SpecError(f"{record.path}: has no manifest (run.json with its sessions); it was trained by a dlcli "
                        "that did not record one, so there is nothing to reproduce it from")
    if record.status != "finished":
        raise SpecError(f"{record.path}: the run is {record.status}, not finished; reproduce compares final weights, "
                        f"so finish it first (dlcli train {record.path} --resume)")
    if not checkpoint_path(record.path, "last").is_file():
        raise CheckpointError(f"{record.path}: has no checkpoints/last{'.safetensors'}; its final weights are gone, "
                              "so a re-run has nothing to be compared with")
    try:
        return RunSpec.model_validate(record.spec)
    except ValueError as err:
        raise SpecError(f"{record.path / 'spec.json'}: no longer validates ({str(err).splitlines()[0]}); it was "
                        f"written by dlcli {record.manifest.get('dlcli_version', '?')}") from None


def check_data(record: RunRecord, spec: RunSpec) -> None:
    """DataError (exit 3) unless every data file has the sha256 the run recorded."""
    recorded = record.manifest.get("data") or {}
    current = data_fingerprints(spec)
    for key in sorted(set(recorded) | set(current)):
        was, now = recorded.get(key) or {}, current.get(key) or {}
        if was.get("sha256") != now.get("sha256") or was.get("files") != now.get("files"):
            where = now.get("path") or was.get("path") or f"dataset {now.get('dataset') or was.get('dataset')}"
            detail = (f"sha256 {now.get('sha256')}, the run read {was.get('sha256')}" if "sha256" in was or
                      "sha256" in now else "its files' sha256 differ from those the run read")
            raise DataError(f"data.{key} ({where}) is not the data {record.path} was trained on: {detail}; restore "
                            "that data to reproduce the run")


def environment_differences(record: RunRecord, world_size: int) -> list[str]:
    """What differs from the machine, software and thread settings the run trained with: each one may change
    the last bits of the weights (bit-identity is promised only on the same machine, threads and world size)."""
    sessions = record.manifest.get("sessions") or [{}]
    was = {**(record.manifest.get("environment") or {}), "threads": sessions[-1].get("threads"),
           "world_size": record.manifest.get("world_size", 1)}
    now = {**environment(), "world_size": world_size}
    differences = [f"{key}: {was.get(key)} -> {now.get(key)}" for key in (*ENVIRONMENT_KEYS, "world_size")
                   if key in was and was.get(key) != now.get(key)]
    old_threads, new_threads = was.get("threads") or {}, now["threads"]
    differences += [f"threads.{key}: {old_threads.get(key)} -> {new_threads.get(key)}"
                    for key in sorted(set(old_threads) | set(new_threads))
                    if old_threads.get(key) != new_threads.get(key)]
    return differences


@dataclass
class WeightComparison:
    """How the final weights of two runs compare, tensor by tensor."""

    tensors: int
    differing: list[str] = field(default_factory=list)
    max_abs_difference: float = 0.0
    largest_in: str | None = None

    @property
    def identical(self) -> bool:
        """Every weight and state tensor has the same dtype, shape and bytes."""
        return not self.differing

    def record(self) -> dict[str, Any]:
        return {"bit_identical": self.identical, "tensors": self.tensors, "differing": self.differing,
                "max_abs_difference": self.max_abs_difference, "largest_in": self.largest_in}


def compare_weights(original: Path, reproduced: Path) -> WeightComparison:
    """The model's weights and state in two checkpoints, compared bit for bit."""
    first, _ = load_checkpoint(original)
    second, _ = load_checkpoint(reproduced)
    names = sorted(k for k in set(first) | set(second) if k.startswith(MODEL_PREFIXES))
    comparison = WeightComparison(len(names))
    for name in names:
        a, b = first.get(name), second.get(name)
        if a is None or b is None or a.dtype != b.dtype or a.shape != b.shape:
            comparison.differing.append(name)
            continue
        if a.tobytes() != b.tobytes():
            comparison.differing.append(name)
            difference = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
            if difference >= comparison.max_abs_difference:
                comparison.max_abs_difference, comparison.largest_in = difference, name
    return comparison
