"""Steps on zeros that compile a run's kernels before its data arrives (train/precompile.py runs them).

A kernel compiles for the dtypes and layouts of its arguments, not their sizes, so a small batch of zeros of
the right shapes and dtypes compiles what the run will call: a whole training step of a copy of the model, or
one layer's forward and backward alone (so that two processes can take the layers from opposite ends).
"""

from __future__ import annotations

import numpy as np

from dlcli.graph import Model, Node
from dlcli.optimizers import create_optimizer
from dlcli.spec.models import RunSpec
from dlcli.tensor import Tensor

BATCH = 4  # rows of the warm-up batch: the kernels' signatures depend on dtypes and layouts, not sizes


def zero_targets(model: Model, batch: int) -> dict[str, np.ndarray]:
    """Targets of zeros for each output, as the loop hands them to the output's loss and metrics: integer
    classes for a sparse loss, one label sequence for ctc (a label that is not the blank), else the output's
    shape in float32."""
    targets = {}
    for name, output in model.outputs.items():
        shape, loss = model.shapes[name], output.loss.type
        if loss == "ctc":
            label = 1 if getattr(output.loss, "blank", None) == 0 else 0
            targets[name] = np.full((batch, 1), label, np.int64)
        elif loss == "sparse_categorical_crossentropy":
            targets[name] = np.zeros((batch, *shape[:-1]), np.int64)
        else:
            targets[name] = np.zeros((batch, *shape), np.float32)
    return targets


def loss_and_metrics(model: Model, predictions: dict[str, Tensor], batch: int, loss: bool = True,
                     metrics: bool = True) -> Tensor | None:
    """The spec's total loss of `predictions` on zero targets (None without `loss`); each metric is updated once
    on the way (unless not `metrics`)."""
    from dlcli.train.loop import Objective

    targets = zero_targets(model, batch)
    objective = Objective(model, {name: t.shape[1:] for name, t in targets.items()})
    total = objective.loss(predictions, targets)[0] if loss else None
    for name, group in (objective.new_metrics() if metrics else {}).items():
        for metric in group:
            try:
                metric.update(predictions[name].data, targets[name], predictions[name].mask, None)
            except Exception:  # noqa: BLE001 - a metric zeros do not suit compiles in the run instead
                pass
    return total


def training_step(model: Model, spec: RunSpec) -> bool:
    """One training step of `model` (a copy of the run's) on zeros: forward, the spec's loss and metrics,
    backward and an optimizer update. False when the model cannot take zeros (its text inputs need the data)."""
    from dlcli.train.loop import backward

    if any(spec_input.dtype == "string" for spec_input in model.inputs.values()):
        return False  # text_vectorization needs its adapted vocabulary, which comes with the data
    inputs = {name: Tensor(np.zeros((BATCH, *shape.shape), shape.dtype)) for name, shape in model.inputs.items()}
    total = loss_and_metrics(model, model(inputs, training=True), BATCH)
    assert total is not None
    backward(total)
    params = {name: t for name, t in model.trainable_parameters().items() if t.grad is not None}
    create_optimizer(spec.train.optimizer.model_dump(), params).step()
    return True


def loss_step(model: Model, metrics: bool = True) -> None:
    """The loss, forward and backward, and (with `metrics`) the metrics, on predictions of the outputs' shapes that
    are probabilities (equal ones), so that no loss takes the log of 0."""
    with np.errstate(all="ignore"):
        total = loss_and_metrics(model, _probabilities(model), BATCH, metrics=metrics)
        assert total is not None
        total.backward()


def metrics_step(model: Model) -> None:
    """The metrics alone, on the predictions loss_step gives them."""
    with np.errstate(all="ignore"):
        loss_and_metrics(model, _probabilities(model), BATCH, loss=False)


def _probabilities(model: Model) -> dict[str, Tensor]:
    return {name: Tensor(np.full((BATCH, *model.shapes[name]), 1 / model.shapes[name][-1], np.float32),
                         requires_grad=True) for name in model.outputs}


def optimizer_step(model: Model, spec: RunSpec) -> None:
    """The optimizer's update of every trainable weight, on zero gradients."""
    params = model.trainable_parameters()
    for tensor in params.values():
        tensor.grad = np.zeros_like(tensor.data)
    create_optimizer(spec.train.optimizer.model_dump(), params).step()


def layer_step(model: Model, node: Node, backward: bool = True) -> bool:
    """One training forward of the node's layer on zeros of its inputs' shapes and dtypes (masked where the run
    masks them), and (with `backward`) the backward of its outputs' sum; False when the layer cannot take
    zeros."""
    masked = _masked_values(model)
    inputs = []
    for name in node.inputs:
        dtype = _value_dtype(model, name)
        # as in the run: a backward that needs no gradient of an input compiles another variant
        value = Tensor(np.zeros((BATCH, *model.shapes[name]), dtype),
                       requires_grad=dtype == np.float32 and name.split(".")[0] in _with_gradients(model))
        if name in masked:
            value.mask = np.ones((BATCH, model.shapes[name][0]), bool)
        inputs.append(value)
    try:
        out = model.call_of(node)(*inputs, training=True)  # a fused pair as the run calls it
    except Exception:  # noqa: BLE001 - zeros it cannot take (a vocabulary to adapt): the run compiles it
        return False
    total = None
    for part in out if isinstance(out, tuple) else (out,):
        if part.requires_grad:
            total = part.sum() if total is None else total + part.sum()
    if total is not None and backward:
        total.backward()
    return True


def _value_dtype(model: Model, name: str) -> np.dtype:
    """A value's dtype as the run gives it: a model input's own, ids after text_vectorization, else float32."""
    if name in model.inputs:
        return np.dtype(model.inputs[name].dtype)
    producer = next((node for node in model.nodes if node.name == name.split(".")[0]), None)
    if producer is not None and producer.layer.spec.type == "text_vectorization":
        return np.dtype(np.int64)
    return np.dtype(np.float32)


def _masked_values(model: Model) -> set[str]:
    """The values the run gives a step mask: an embedding's with mask_zero, handed on by the layers that keep
    masks (so that a recurrent layer compiles its masked time loop, as in the run)."""
    masked: set[str] = set()
    for node in model.nodes:
        if getattr(node.layer.spec, "mask_zero", False) or \
                (node.layer.keeps_mask and any(name in masked for name in node.inputs)):
            masked.add(node.name)
    return masked


def _with_gradients(model: Model) -> set[str]:
    """The nodes whose outputs need a gradient in the run: those after a layer with trainable weights (a model
    input and what only rescales it need none)."""
    needing: set[str] = set()
    for node in model.nodes:
        if node.layer.trainable_weights() or any(name.split(".")[0] in needing for name in node.inputs):
            needing.add(node.name)
    return needing
