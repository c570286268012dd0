"""What every export format provides (the Exporter protocol), what it starts from and what it reports."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from dlcli.graph import Model
from dlcli.spec.models import RunSpec

# an exported model as a function: named input arrays (batch first) in, named output arrays out
Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class ExportSource:
    """A trained model to export: the run's spec, the model rebuilt with the checkpoint's weights, the checkpoint's
    metadata (epoch, data schema, ...) and its file."""

    spec: RunSpec
    model: Model
    metadata: dict[str, Any]
    checkpoint: Path

    @property
    def class_names(self) -> dict[str, list[str]]:
        """Class names by output, for outputs trained on string labels (the checkpoint's data schema)."""
        return dict((self.metadata.get("data") or {}).get("classes") or {})

    @property
    def epoch(self) -> int | None:
        """The epoch the checkpoint was written after."""
        epoch = self.metadata.get("epoch")
        return None if epoch is None else int(epoch)


@dataclass
class Exported:
    """An export written: where, how big, what it takes and gives, and what the user must know about it."""

    path: Path
    format: str
    size: int  # bytes of the file itself
    inputs: dict[str, str]  # name -> "float32 [batch, 28, 28]"
    outputs: dict[str, str]
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  # format-specific facts (opset, ...)
    # what the user must know, and files written beside it: printed by `dlcli export` (and kept in its --json
    # object); the onnx exporter has neither since it writes lowercasing in the graph
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


class Exporter:
    """An export format, registered by name in registry.exporters (`dlcli export --format NAME`)."""

    suffix: ClassVar[str]  # the file's suffix, e.g. ".onnx"

    def write(self, source: ExportSource, path: Path, options: dict[str, Any]) -> Exported:  # pragma: no cover
        """Write the model of `source` to `path` (atomically); `options` are the format's (onnx: opset)."""
        raise NotImplementedError

    def runner(self, exported: Exported, threads: int | None = None) -> Runner:  # pragma: no cover
        """The written file as a function, in the format's own runtime (onnx: onnxruntime) on `threads` threads."""
        raise NotImplementedError

    def feeds(self, exported: Exported, source: ExportSource,
              inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # pragma: no cover
        """The file's inputs for the model inputs `inputs` (arrays as dlcli predict takes them)."""
        raise NotImplementedError


def spec_sha256(spec: RunSpec) -> str:
    """The sha256 of the resolved spec as compact JSON (no spaces, UTF-8), keys in the spec's order: the same spec,
    the same hash. Keys are not sorted: the order of a graph's nodes decides the order its weights are drawn in."""
    text = json.dumps(spec.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
