"""`dlcli profile`: time N training steps of a spec's model on its real data, per node and per phase.

A step is the train loop's: gather the batch (data), the model forward (per node), the loss, backward (per
node, through the tape), the optimizer update, the metrics. Warm-up steps first, untimed, so compiling is not
counted. Every number is the median over the timed steps; "other" is the step total less everything timed.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from dlcli.graph import Model
from dlcli.optimizers import Optimizer, create_optimizer
from dlcli.spec.models import RunSpec
from dlcli.tensor import profile
from dlcli.tensor.memory import keep_freed_memory
from dlcli.train.loop import Objective, Split, backward, input_tensor

PHASES = ("data", "loss", "loss backward", "optimizer", "metrics")


def profile_training(model: Model, objective: Objective, optimizer: Optimizer, data: Split, batch_size: int,
                     steps: int, warmup: int, rng: np.random.Generator) -> profile.Profile:
    """Run warmup + steps training steps on batches drawn from data; the profile of the last `steps`."""
    keep_freed_memory()  # as fit_run does: steady-state allocation, not first-touch page faults
    dtypes = {name: spec.dtype for name, spec in model.inputs.items()}
    metrics = objective.new_metrics()
    # a parameter is a view of the optimizer's flat array: neither it nor that array is an activation
    arrays = [t.data for t in model.parameters().values()]
    result = profile.Profile(parameters={id(a) for a in arrays} | {id(a.base) for a in arrays if a.base is not None})
    totals: list[float] = []
    order = rng.permutation(len(data))
    for step in range(warmup + steps):
        at = step * batch_size % max(len(data) - batch_size + 1, 1)
        record = profile.Profile(parameters=result.parameters) if step < warmup else result
        with profile.recording(record):
            start = time.perf_counter()
            record.begin_step()
            with record.phase("data"):
                batch = data.take(order[at:at + batch_size])
                inputs = {name: input_tensor(array, dtypes[name]) for name, array in batch.inputs.items()}
            predictions = model(inputs, training=True)
            with record.phase("loss"):
                loss, _ = objective.loss(predictions, batch.targets)
            if step == warmup:
                record.count_kept_bytes()
            optimizer.zero_grad()
            backward(loss)
            with record.phase("optimizer"):
                optimizer.step()
            with record.phase("metrics"):
                for name, group in metrics.items():
                    for metric in group:
                        metric.update(predictions[name].data, batch.targets[name], predictions[name].mask)
            record.end_step()
            if step >= warmup:
                totals.append(time.perf_counter() - start)
    result.phases["total"] = totals
    return result


def profile_spec(spec: RunSpec, model: Model, steps: int, warmup: int, batch_size: int | None) -> dict[str, Any]:
    """Profile the spec's training on its training data (model built, weights as given); a JSON-able report."""
    from dlcli.train.datasets import load_splits
    from dlcli.train.adapt import adapt_preprocessing

    rng = np.random.default_rng(spec.seed)
    splits = load_splits(spec, model, rng)
    adapt_preprocessing(model, splits.train)
    objective = Objective(model, {k: v.shape[1:] for k, v in splits.train.targets.items()})
    optimizer = create_optimizer(spec.train.optimizer.model_dump(), model.parameters())
    size = min(batch_size or spec.train.batch_size, len(splits.train))
    measured = profile_training(model, objective, optimizer, splits.train, size, steps, warmup, rng)
    return report(measured, spec.name, size, steps, warmup)


def report(measured: profile.Profile, name: str, batch_size: int, steps: int, warmup: int) -> dict[str, Any]:
    """Medians in milliseconds, GFLOP/s and kept bytes per node; phases; the untimed rest; the step total."""
    def ms(values: list[float]) -> float:
        return statistics.median(values) * 1e3 if values else 0.0

    nodes = []
    for node, record in measured.nodes.items():
        forward, backward = ms(record.forward_s), ms(record.backward_s)
        nodes.append({"node": node, "type": record.kind, "forward_ms": forward, "backward_ms": backward,
                      "forward_gflops": _rate(record.forward_flops, forward),
                      "backward_gflops": _rate(record.backward_flops, backward), "kept_bytes": record.kept_bytes})
    phases = {phase: ms(measured.phases.get(phase, [])) for phase in PHASES}
    total = ms(measured.phases.get("total", []))
    timed = sum(n["forward_ms"] + n["backward_ms"] for n in nodes) + sum(phases.values())
    return {"spec": name, "batch_size": batch_size, "steps": steps, "warmup_steps": warmup, "nodes": nodes,
            "phases": {**phases, "other": max(total - timed, 0.0)}, "total_ms": total,
            "kept_bytes": sum(n["kept_bytes"] for n in nodes)}


def _rate(flops: int, milliseconds: float) -> float | None:
    return flops / milliseconds / 1e6 if flops and milliseconds > 0 else None


def table(result: dict[str, Any]) -> list[str]:
    """The report as aligned text lines."""
    lines = [f"profile {result['spec']}: batch {result['batch_size']}, median of {result['steps']} steps after "
             f"{result['warmup_steps']} warm-up steps"]
    header = f"{'node':<24} {'type':<20} {'forward ms':>10} {'backward ms':>11} {'fwd GFLOP/s':>11} " \
             f"{'bwd GFLOP/s':>11} {'kept for backward':>17}"
    lines += [header, "-" * len(header)]
    for n in result["nodes"]:
        rates = [f"{v:11.1f}" if v is not None else f"{'':11}" for v in (n["forward_gflops"], n["backward_gflops"])]
        lines.append(f"{n['node'][:24]:<24} {n['type'][:20]:<20} {n['forward_ms']:10.3f} {n['backward_ms']:11.3f} "
                     f"{rates[0]} {rates[1]} {_size(n['kept_bytes']):>17}")
    lines.append("-" * len(header))
    for phase, value in result["phases"].items():
        lines.append(f"{phase:<45} {value:10.3f}")
    lines.append(f"{'total step':<45} {result['total_ms']:10.3f}    "
                 f"activations kept for backward: {_size(result['kept_bytes'])}")
    return lines


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"
