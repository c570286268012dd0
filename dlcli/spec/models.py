"""Pydantic models of a spec file: [data], [model] (a sequential stack or a graph of nodes), [train]."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, ValidationError, create_model, field_validator, model_validator

from dlcli import registry
from dlcli.components import load_all
from dlcli.errors import UnknownNameError
from dlcli.losses import SPARSE_LOSSES, LossSpec
from dlcli.metrics import MetricSpec
from dlcli.registry import StrictSpec, known_name, suggest
from dlcli.spec.data import DataSpec, TimeseriesSpec
from dlcli.spec.search_space import TuneSpec

load_all()  # the unions below are built from the registries, so every component must be registered first


def _tagged(value: Any) -> Any:
    """`"adam"` is short for `{ type = "adam" }`."""
    return {"type": value} if isinstance(value, str) else value


def _tagged_union(specs: list[type], discriminator: str = "type") -> Any:
    members = tuple(specs)
    union = members[0] if len(members) == 1 else Union[members]  # noqa: UP007 - built at run time
    return Annotated[union, Field(discriminator=discriminator)]


def _node_spec(spec: type[StrictSpec]) -> type[StrictSpec]:
    """The layer's spec plus the graph keys: `input = "x"` or `inputs = ["a", "b"]`."""
    return create_model(  # type: ignore[call-overload]
        spec.__name__.removesuffix("Spec") + "NodeSpec", __base__=spec, __doc__=spec.__doc__,
        input=(str | None, Field(None, description="The node's input: a model input or another node.")),
        inputs=(list[str] | None, Field(None, description="Several inputs, for merge layers.")),
    )


LAYER_SPECS = [entry.spec for entry in registry.layers]
NODE_SPECS = {spec: _node_spec(spec) for spec in LAYER_SPECS}
LayerConfig = _tagged_union(LAYER_SPECS)
NodeConfig = _tagged_union(list(NODE_SPECS.values()))
OptimizerConfig = Annotated[_tagged_union([entry.spec for entry in registry.optimizers]), BeforeValidator(_tagged)]
MetricName = Annotated[str, known_name(registry.metrics)]


def _loss_config(entry: registry.Entry) -> type[LossSpec]:
    """The loss's spec with `type` fixed to its name or an alias, so the losses form a tagged union."""
    names = registry.losses.spellings(entry.name)
    return create_model(  # type: ignore[call-overload]
        entry.target.__name__ + "Config", __base__=entry.spec, __doc__=entry.spec.__doc__,
        type=(Literal[names], entry.name))  # type: ignore[valid-type]


def _known_loss(value: Any) -> Any:
    """`"mse"` is short for `{ type = "mse" }`; an unknown name gets the registry's did-you-mean message."""
    value = _tagged(value)
    if isinstance(value, dict) and isinstance(value.get("type"), str) and value["type"] not in registry.losses:
        name = value["type"]
        raise ValueError(str(UnknownNameError("loss", name, registry.losses.names(), registry.losses.closest(name))))
    return value


# loss = "NAME", or loss = { type = "NAME", from_logits = true, ... } with that loss's own options
LossConfig = Annotated[_tagged_union([_loss_config(entry) for entry in registry.losses]),
                       BeforeValidator(_known_loss)]


class MetricConfig(MetricSpec):
    """A metric name, or a table with `type` and options (k for top-k, threshold, num_thresholds)."""

    model_config = {"extra": "allow"}  # the options belong to the metric named by `type`: checked below
    type: MetricName

    @model_validator(mode="after")
    def _options_fit_the_metric(self) -> MetricConfig:
        """Each option is one the named metric takes, of the right type and range: found when the spec loads,
        not when the first epoch builds the metric."""
        entry = registry.metrics.entry(self.type)
        try:
            entry.spec.model_validate({**self.model_dump(exclude_none=True), "type": entry.alias_of or entry.name})
        except ValidationError as err:
            problems = []
            for error in err.errors():
                key = ".".join(str(part) for part in error["loc"])
                text = error["msg"].removeprefix("Value error, ")
                if error["type"] == "extra_forbidden":
                    options = sorted(k for k in entry.spec.model_fields if k != "type")
                    close = suggest(key, options)
                    hint = f"; did you mean {close}?" if close else ""
                    text = f"not an option of {self.type} (it takes {', '.join(options)}){hint}"
                problems.append(f"{key}: {text[0].lower()}{text[1:]}, got {error.get('input')!r}"
                                if error["type"] != "extra_forbidden" else f"{key}: {text}")
            raise ValueError("; ".join(problems)) from None
        return self


Loss = LossConfig
Metric = Annotated[MetricConfig, BeforeValidator(_tagged)]


class InputSpec(StrictSpec):
    """input = { shape = [28, 28] }: the per-example shape (no batch axis) and dtype."""

    shape: list[Annotated[int, Field(gt=0)]] = Field(min_length=1, description="Shape of one example, without the "
                                                                               "batch axis, e.g. [28, 28].")
    dtype: Literal["float32", "int32", "int64", "string"] = Field(
        "float32", description='"string": one text per example (shape = [1]), for text_vectorization.')

    @model_validator(mode="after")
    def _one_text_per_example(self) -> InputSpec:
        if self.dtype == "string" and self.shape != [1]:
            raise ValueError(f'a dtype = "string" input holds one text per example: give shape = [1], not '
                             f"{self.shape}")
        return self


class OutputSpec(StrictSpec):
    """[model.outputs] NAME = { loss = ..., weight = 1.0, metrics = [...] }."""

    loss: Loss = Field(description="This output's loss: a name, or a table with the loss's options.")
    weight: float = Field(1.0, ge=0, description="This output's weight in the training loss, the weighted sum of the "
                                                 "outputs' losses.")
    metrics: list[Metric] = Field([], description="Metrics of this output, reported each epoch: names, or tables "
                                                  "with options.")
    weighted_metrics: list[Metric] = Field([], description="Metrics that count each example as often as its "
                                                           "weight (data.sample_weight, train.class_weight), as "
                                                           "Keras' weighted_metrics.")


class ModelSpec(StrictSpec):
    """[model]: `input` + `layers` (sequential), or `inputs` + `nodes` + `outputs` (a graph)."""

    input: InputSpec | None = Field(None, description="Sequential model: its one input, e.g. { shape = [28, 28] }.")
    layers: list[LayerConfig] | None = Field(None, description="Sequential model: the layers in order, one "
                                                               "[[model.layers]] table each.")
    inputs: dict[str, InputSpec] | None = Field(None, description="Graph model: the named inputs, e.g. "
                                                                  "[model.inputs.title] shape = [10000].")
    nodes: dict[str, NodeConfig] | None = Field(None, description="Graph model: the named layers, each taking input "
                                                                  "or inputs from inputs and other nodes.")
    outputs: dict[str, OutputSpec] | None = Field(None, description="Graph model: the nodes that are outputs, each "
                                                                    "with its loss, weight and metrics.")
    init_from: Path | None = Field(None, description='Start from another run\'s weights, matched by name: a run '
                                                     'directory (its best checkpoint) or a checkpoint file, relative '
                                                     'to the current directory, e.g. "runs/base".')

    @model_validator(mode="after")
    def _one_form(self) -> ModelSpec:
        sequential = self.input is not None or self.layers is not None
        graph = self.inputs is not None or self.nodes is not None or self.outputs is not None
        if sequential and graph:
            raise ValueError("use either input + layers (a sequential stack) or inputs + nodes + outputs (a graph),"
                             " not both")
        if sequential and (self.input is None or not self.layers):
            raise ValueError('a sequential model needs input = { shape = [...] } and at least one [[model.layers]]')
        if graph and (not self.inputs or not self.nodes or not self.outputs):
            raise ValueError("a graph model needs [model.inputs], [model.nodes.NAME] and [model.outputs]")
        if not sequential and not graph:
            raise ValueError("give input + layers (a sequential stack) or inputs + nodes + outputs (a graph)")
        return self

    @model_validator(mode="after")
    def _text_meets_text_vectorization(self) -> ModelSpec:
        """A string input feeds text_vectorization, and text_vectorization takes nothing but a string input."""
        if self.is_graph:
            assert self.inputs is not None and self.nodes is not None
            text = {name for name, spec in self.inputs.items() if spec.dtype == "string"}
            consumers = [(f"model.nodes.{name}", node.type, [node.input] if node.input else list(node.inputs or []))
                         for name, node in self.nodes.items()]
        else:
            assert self.input is not None and self.layers is not None
            text = {None} if self.input.dtype == "string" else set()
            consumers = [(f"model.layers[{i}]", layer.type, [None if i == 0 else i - 1])
                         for i, layer in enumerate(self.layers)]
        for key, kind, sources in consumers:
            if kind != "text_vectorization" and any(source in text for source in sources):
                raise ValueError(f'{key}: its input is text (dtype = "string"), which only text_vectorization '
                                 f"takes; put a text_vectorization layer first")
            if kind == "text_vectorization" and not all(source in text for source in sources):
                raise ValueError(f'{key}: text_vectorization takes text, but its input is not a model input with '
                                 f'dtype = "string"; give that input dtype = "string" and shape = [1]')
        return self

    @property
    def is_graph(self) -> bool:
        """Whether this is the graph form."""
        return self.nodes is not None


ClassTable = dict[str, Annotated[float, Field(ge=0)]]
ClassWeight = Union[Literal["balanced"], dict[str, Union[Annotated[float, Field(ge=0)], Literal["balanced"],
                                                         ClassTable]]]

CallbackConfig = Annotated[_tagged_union([entry.spec for entry in registry.callbacks]), BeforeValidator(_tagged)]
LoggerConfig = Annotated[_tagged_union([entry.spec for entry in registry.loggers]), BeforeValidator(_tagged)]


class TrainSpec(StrictSpec):
    """[train]: loss, optimizer, metrics, epochs, batch size, callbacks, loggers."""

    loss: Loss | None = Field(None, description="Sequential model: the loss, by name or as a table with options "
                                                "(graph: per output).")
    optimizer: OptimizerConfig = Field(default_factory=lambda: {"type": "rmsprop"}, validate_default=True,
                                       description="The optimizer, by name or as a table with its options.")
    metrics: list[Metric] = Field([], description="Sequential model: metrics reported each epoch, by name or as "
                                                  "tables with options.")
    weighted_metrics: list[Metric] = Field([], description="Sequential model: metrics that count each example as "
                                                           "often as its weight (data.sample_weight, "
                                                           "class_weight), as Keras' weighted_metrics.")
    class_weight: ClassWeight | None = Field(None, description='Weigh training examples by their class: "balanced" '
                                                               '(n / (classes x count)), or a table class -> '
                                                               'weight, or per output a table of those.')
    epochs: int = Field(1, gt=0, description="Passes over the training data.")
    batch_size: int = Field(32, gt=0, description="Examples per step; with MPI the global batch, shared out among "
                                                  "the ranks.")
    steps_per_epoch: int | None = Field(None, gt=0, description="Stop each epoch after this many batches "
                                                                "(Keras' fit option); default: all of them.")
    shuffle: bool = Field(True, description="Shuffle the training examples before every epoch (seeded).")
    checkpoint_every_steps: int | None = Field(None, gt=0, description="Also write checkpoints/last every N "
                                                                       "steps, mid-epoch (resumable exactly).")
    monitor: str = Field("val_loss", description="The value that picks checkpoints/best (val_loss, or loss "
                                                 "without validation data).")
    monitor_mode: Literal["auto", "min", "max"] = Field("auto", description="Whether a lower (min) or higher (max) "
                                                                            "monitored value is better; auto: max "
                                                                            "for accuracies, AUC, precision and "
                                                                            "recall.")
    callbacks: list[CallbackConfig] = Field([], description="Callbacks run during training: early stopping, "
                                                            "learning-rate reduction, periodic checkpoints.")
    loggers: list[LoggerConfig] = Field([], description="Experiment trackers fed as the run trains (rank 0 only): "
                                                        "csv, tensorboard, mlflow; names, or tables with options.")
    freeze: list[str] = Field([], description='Layers or weights to freeze, by name pattern: "conv*" (layers), '
                                              '"block_3/*" or "*/bias" (weights, <layer>/<weight>).')


class RunSpec(StrictSpec):
    """A whole spec file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100,
                      description="Run name: runs/<name>/; ASCII letters, digits, '.', '_' and '-'.")
    seed: int = Field(0, ge=0, lt=2**63, description="One seed for initial weights, shuffles, dropout and splits: "
                                                     "the same seed, the same run.")
    description: str | None = Field(None, description="Free text about the run, kept with its resolved spec.")
    data: DataSpec = Field(description="Where the examples come from: see [data].")
    model: ModelSpec = Field(description="The layers: see [model].")
    train: TrainSpec = Field(default_factory=TrainSpec,  # type: ignore[arg-type]
                             description="How to train: see [train].")
    tune: TuneSpec | None = Field(None, description="What dlcli tune searches (train ignores it): see [tune].")

    @model_validator(mode="after")
    def _losses_where_needed(self) -> RunSpec:
        if self.model.is_graph:
            if self.train.loss is not None or self.train.metrics or self.train.weighted_metrics:
                raise ValueError("a graph model gives each output its loss and metrics in [model.outputs]; "
                                 "remove train.loss, train.metrics and train.weighted_metrics")
        elif self.train.loss is None:
            raise ValueError('train.loss is required, e.g. loss = "sparse_categorical_crossentropy"')
        if self.train.class_weight is not None and self.data.sample_weight is not None:
            raise ValueError("give train.class_weight or data.sample_weight, not both (as Keras' fit refuses them "
                             "together); to combine them, multiply the class weights into the sample_weight column")
        return self

    @model_validator(mode="after")
    def _one_hot_fits_the_losses(self) -> RunSpec:
        """data.one_hot makes one-hot rows, which a sparse loss cannot train on: it takes the labels themselves."""
        outputs = self.model.outputs or {}
        losses = [(f"model.outputs.{name}.loss", output.loss) for name, output in outputs.items()] \
            if self.model.is_graph else [("train.loss", self.train.loss)]
        for key, loss in losses:
            if self.data.one_hot and loss is not None and loss.type in SPARSE_LOSSES:
                raise ValueError(f"data.one_hot: turns class labels into one-hot rows, but {key} = {loss.type} takes "
                                 'the labels themselves; remove one_hot, or use loss = "categorical_crossentropy"')
        return self

    @field_validator("name")
    @classmethod
    def _not_dots(cls, name: str) -> str:
        if set(name) <= {"."}:
            raise ValueError(f"must name a folder, got {name!r}")
        return name
