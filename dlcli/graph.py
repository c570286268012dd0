"""ModelSpec -> Model: sequential stacks and DAGs of named nodes, ordered, shape-checked before any data loads."""

from __future__ import annotations

import functools
import math
from collections import deque
from fnmatch import fnmatchcase
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any, Callable

import numpy as np

from dlcli.errors import SpecError, WeightTooLargeError
from dlcli.registry import suggest
from dlcli.initializers import physical_memory
from dlcli.layers import Layer, Shape, create_layer
from dlcli.layers.base import layer_name_problem
from dlcli.spec.models import InputSpec, ModelSpec, OutputSpec, RunSpec
from dlcli.tensor import Tensor, profile
from dlcli.tensor.mask import mask_covers

SEQUENTIAL_INPUT = "input"


@dataclass
class Node:
    """One layer of the graph: what feeds it, and its per-example output shape."""

    name: str
    layer: Layer
    inputs: list[str]
    shape: Shape = ()
    key: str = ""


@dataclass
class Model:
    """A built model: named inputs, layers in an order where every input comes first, named outputs."""

    inputs: dict[str, InputSpec]
    nodes: list[Node]
    outputs: dict[str, OutputSpec]
    sequential: bool = False
    shapes: dict[str, Shape] = field(default_factory=dict)
    # pairs of nodes that run as one op (_fused_pairs): conv node name -> the max pool node that alone reads it.
    # Names, not calls: a deep copy of the model (lr_range) must run its own layers
    fused: dict[str, str] = field(default_factory=dict)

    def __call__(self, inputs: dict[str, Tensor], training: bool = False) -> dict[str, Tensor]:
        """Run the layers on a batch of each input; returns each output's tensor."""
        values = self.trace(inputs, training)
        return {name: values[name] for name in self.outputs}

    def trace(self, inputs: dict[str, Tensor], training: bool = False) -> dict[str, Tensor]:
        """Every input's and every node's tensor for one batch, by name."""
        values: dict[str, Tensor] = dict(inputs)
        recording = profile.state.active
        for node in self.nodes:
            layer = node.layer
            call = self.call_of(node) if self.fused else layer
            if recording is None:
                out = call(*[values[name] for name in node.inputs], training=training)
            else:  # dlcli profile, benchmarks: the node's time, FLOPs and ops
                out = profile.timed_call(recording, node.name, layer, [values[name] for name in node.inputs],
                                         training, call, None if call is layer else node.shape)
            if isinstance(out, tuple):  # the main output, then the ports extra_outputs names
                out, *extras = out
                values.update({f"{node.name}.{port}": t for port, t in zip(layer.extra_outputs(), extras)})
            if layer.keeps_mask and out.mask is None:
                out.mask = _handed_on_mask([values[name] for name in node.inputs], out)
            values[node.name] = out
        return values

    def call_of(self, node: Node) -> Callable[..., Any]:
        """What runs for the node: its layer, or in a fused pair the conv's call that computes the max pool's
        output (Conv2D.with_max_pool) and the pool's, which hands it on."""
        pool = self.fused.get(node.name)
        if pool is not None:
            return functools.partial(node.layer.with_max_pool, next(n.layer for n in self.nodes if n.name == pool))
        return _handed_on if node.name in self.fused.values() else node.layer

    @property
    def layers(self) -> list[Layer]:
        """The layers in execution order."""
        return [node.layer for node in self.nodes]

    def parameters(self) -> dict[str, Tensor]:
        """Every weight by full name (`<layer>/<weight>`), frozen ones included: what checkpoints hold."""
        return {name: t for layer in self.layers for name, t in layer.weights().items()}

    def trainable_parameters(self) -> dict[str, Tensor]:
        """The weights the optimizer updates, by full name: all but the frozen ones."""
        return {name: t for layer in self.layers for name, t in layer.trainable_weights().items()}

    def state(self) -> dict[str, np.ndarray]:
        """Non-trainable arrays by full name."""
        return {name: a for layer in self.layers for name, a in layer.state_arrays().items()}

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, non-trainable) totals, as Keras counts them."""
        counts = [layer.parameter_counts() for layer in self.layers]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def summary_rows(self) -> list[dict[str, Any]]:
        """Keras-style summary rows: name, type, output shape (batch as None), parameters, connected to."""
        rows = []
        if not self.sequential:
            rows += [{"name": name, "type": "InputLayer", "output_shape": (None, *spec.shape), "params": 0,
                      "connected_to": []} for name, spec in self.inputs.items()]
        # Keras' "node[0][k]": the k-th output tensor of a node; ports come after the main output
        tensors = {f"{node.name}.{port}": f"{node.name}[0][{k}]" for node in self.nodes
                   for k, port in enumerate(node.layer.extra_outputs(), start=1)}
        for node in self.nodes:
            extra = list(node.layer.extra_outputs().values())
            shape: Any = [(None, *s) for s in [node.shape, *extra]] if extra else (None, *node.shape)
            rows.append({"name": node.name, "type": type(node.layer).__name__, "output_shape": shape,
                         "params": sum(node.layer.parameter_counts()),
                         "connected_to": [] if self.sequential else
                         [tensors.get(i, f"{i}[0][0]") for i in node.inputs]})
        return rows


def build_model(spec: ModelSpec, rng: np.random.Generator, run: RunSpec | None = None) -> Model:
    """Build and shape-check the model of `spec`; weights are drawn from `rng`.

    A sequential stack takes its loss and metrics from `run.train`; a graph names them per output.
    """
    if spec.is_graph:
        model = _graph(spec)
    else:
        if run is None or run.train.loss is None:
            raise SpecError("train.loss is required for a sequential model")
        model = _sequential(spec, OutputSpec(loss=run.train.loss, metrics=run.train.metrics,
                                             weighted_metrics=run.train.weighted_metrics))
    _build_layers(model, rng)
    for vectorizer, table in _ids_fed_to_tables(model):  # an id too large in training then names max_tokens
        table.layer.ids_from = vectorizer.key
    model.fused = _fused_pairs(model)
    freeze_layers(model, run.train.freeze if run is not None else [])
    return model


def check_ids_fit(model: Model) -> None:
    """Every text_vectorization feeding an embedding (or positional_embedding) directly leaves it no id without
    a row (TextVectorization.check_table_fits). Keras would find out in training, once the adapted vocabulary
    grew past the table: new runs and validate check it, a trained run's checkpoint is not refused."""
    for vectorizer, table in _ids_fed_to_tables(model):
        vectorizer.layer.check_table_fits(table.layer)


def _ids_fed_to_tables(model: Model) -> list[tuple[Node, Node]]:
    """(text_vectorization node, embedding or positional_embedding node) pairs, the first feeding the second."""
    producers = {node.name: node for node in model.nodes}
    pairs = []
    for node in model.nodes:
        source = producers.get(node.inputs[0]) if len(node.inputs) == 1 else None
        if source is not None and source.layer.spec.type == "text_vectorization" and \
                node.layer.spec.type in ("embedding", "positional_embedding"):
            pairs.append((source, node))
    return pairs


def _fused_pairs(model: Model) -> dict[str, str]:
    """The node pairs that run as one op: a conv2d whose output only a max_pooling2d reads computes the pool's
    output itself where its layer can (Conv2D.fuses_max_pool: a first 3x3 conv on 1-channel images), and the
    pool hands it on (Model.call_of). The conv's value in a trace is then the pooled one, which only the pool
    reads; the conv's profile row holds the fused work, the pool's nearly none."""
    readers: dict[str, list[Node]] = {}
    for node in model.nodes:
        for name in node.inputs:
            readers.setdefault(name, []).append(node)
    pairs: dict[str, str] = {}
    for node in model.nodes:
        taken_by = readers.get(node.name, [])
        fuses = getattr(node.layer, "fuses_max_pool", None)
        if fuses is None or len(taken_by) != 1 or node.name in model.outputs or len(taken_by[0].inputs) != 1:
            continue
        if fuses(taken_by[0].layer):
            pairs[node.name] = taken_by[0].name
    return pairs


def _handed_on(x: Tensor, training: bool = False) -> Tensor:
    """The call of a node whose output the node before it computed (Model.call_of)."""
    return x


def freeze_layers(model: Model, patterns: list[str]) -> None:
    """Freeze the layers whose spec says trainable = false, and what `patterns` (train.freeze) name.

    A pattern (shell-style: * ? [...]) that matches a layer's name freezes the whole layer, as Keras'
    layer.trainable = False does; one that matches a weight's full name ("block_3/*", "*/bias") freezes that
    weight. A pattern that matches nothing is a SpecError: it is a typo, or names a layer the model lost.
    """
    used = [False] * len(patterns)

    def matches(name: str) -> bool:
        hits = [fnmatchcase(name, pattern) for pattern in patterns]
        for index, hit in enumerate(hits):
            used[index] = used[index] or hit
        return any(hits)

    for node in model.nodes:
        layer = node.layer
        whole = not layer.spec.trainable
        whole = matches(layer.name) or whole
        weights = {weight for weight in layer.params if matches(f"{layer.name}/{weight}")}
        if whole:
            layer.freeze()
        elif weights:
            layer.freeze(weights)
    for pattern, hit in zip(patterns, used):
        if not hit:
            names = [node.name for node in model.nodes]
            close = suggest(pattern, names)
            hint = f" (did you mean {close}?)" if close else ""
            raise SpecError(f"train.freeze: {pattern!r} matches no layer and no weight{hint}; layers: "
                            f"{', '.join(names)} (a weight is <layer>/<weight>, e.g. {names[0]}/*)")


def _sequential(spec: ModelSpec, output: OutputSpec) -> Model:
    assert spec.input is not None and spec.layers is not None
    nodes: list[Node] = []
    taken: dict[str, int] = {}
    previous = SEQUENTIAL_INPUT
    for i, layer_spec in enumerate(spec.layers):
        key = f"model.layers[{i}]"
        name = layer_spec.name or _auto_name(layer_spec.type, taken)
        if any(n.name == name for n in nodes) or name == SEQUENTIAL_INPUT:
            raise SpecError(f"{key}.name: {name!r} is used twice; layer names must be unique")
        layer = _layer(layer_spec, name, key)
        if layer.extra_output_names():
            option, port = layer.ports_option, layer.extra_output_names()[0]
            raise SpecError(f"{key}.{option}: a sequential model passes on one output; {option} is for a graph "
                            f"model (model.nodes), where other nodes take them as \"<node>.{port}\"; remove "
                            f"{option}")
        nodes.append(Node(name, layer, [previous], key=key))
        previous = name
    return Model({SEQUENTIAL_INPUT: spec.input}, nodes, {previous: output}, sequential=True)


def _auto_name(kind: str, taken: dict[str, int]) -> str:
    """Keras' naming: dense, dense_1, dense_2, ..."""
    count = taken.get(kind, 0)
    taken[kind] = count + 1
    return kind if count == 0 else f"{kind}_{count}"


def _handed_on_mask(inputs: list[Tensor], out: Tensor) -> np.ndarray | None:
    """The inputs' step mask for an output with the same (batch, time) axes: a step holds data where it does
    in every input that has a mask (Keras' merge layers AND them); None when no input has one."""
    masks = [t.mask for t in inputs if t.mask is not None]
    if not masks or not mask_covers(masks[0], out.shape):
        return None
    combined = masks[0]
    for mask in masks[1:]:
        combined = combined & mask if mask.shape == combined.shape else combined
    return combined


def _layer(layer_spec: Any, name: str, key: str) -> Layer:
    layer = create_layer(layer_spec, name)
    layer.key = key
    return layer


def _graph(spec: ModelSpec) -> Model:
    assert spec.inputs is not None and spec.nodes is not None and spec.outputs is not None
    known = [*spec.inputs, *spec.nodes]
    for name in [*spec.inputs, *spec.nodes]:
        _check_graph_name(name, "nodes" if name in spec.nodes else "inputs", known)
    for name in spec.nodes:
        if name in spec.inputs:
            raise SpecError(f"model.nodes.{name}: this name is also a model input; names must be unique")
    layers: dict[str, Layer] = {}
    for name, node_spec in spec.nodes.items():
        key = f"model.nodes.{name}"
        if node_spec.name is not None and node_spec.name != name:
            raise SpecError(f"{key}.name: a node is named by its table ({name}); remove name = {node_spec.name!r}")
        layers[name] = _layer(node_spec, name, key)
    ports = {f"{name}.{port}": name for name, layer in layers.items() for port in layer.extra_output_names()}
    known += [port for port in ports if port not in known]
    nodes: dict[str, Node] = {}
    for name, node_spec in spec.nodes.items():
        key = f"model.nodes.{name}"
        layer = layers[name]
        sources = _node_inputs(node_spec, layer, key)
        for source in sources:
            if source not in known:
                close = suggest(source, known)
                hint = f" (did you mean {close}?)" if close else ""
                raise SpecError(f"{key}.input: unknown input or node {source!r}{hint}; "
                                f"known: {', '.join(known)}")
            if source == name or ports.get(source) == name:
                raise SpecError(f"{key}.input: a node cannot take its own output")
        nodes[name] = Node(name, layer, sources, key=key)
    producers = {**{name: name for name in nodes}, **{port: node for port, node in ports.items()
                                                      if port not in nodes and port not in spec.inputs}}
    for output in spec.outputs:
        if output not in nodes:
            close = suggest(output, nodes)
            hint = f" (did you mean {close}?)" if close else ""
            raise SpecError(f"model.outputs.{output}: not a node{hint}; outputs name nodes: {', '.join(nodes)}")
    ordered = _topological(nodes, set(spec.inputs), producers)
    _check_all_used(spec, nodes, producers)
    return Model(dict(spec.inputs), ordered, dict(spec.outputs))


def _check_graph_name(name: str, table: str, known: list[str]) -> None:
    """A graph's input or node name may not read as a port of another node: '.' separates a node from its ports
    ("enc.state_h"), so a name "enc.<anything>" beside a node or input "enc" would shadow a port, or be shadowed by
    one, without a word. Other dotted names ("block1.conv", as PyTorch users write) are unambiguous and stay
    valid. A node names its layer too."""
    owner = next((other for other in known if other != name and name.startswith(f"{other}.")), None)
    if owner is not None:
        raise SpecError(f"model.{table}.{name}: reads as a port of {owner!r} ('.' separates a node from its ports, "
                        f"as in enc.state_h); rename it, e.g. {name.replace('.', '_')!r}")
    problem = layer_name_problem(name) if table == "nodes" else None
    if problem:
        raise SpecError(f"model.{table}.{name}: {problem}")


def _node_inputs(node_spec: Any, layer: Layer, key: str) -> list[str]:
    single, several = node_spec.input, node_spec.inputs
    if (single is None) == (several is None):
        example = 'inputs = ["a", "b"]' if layer.arity is None else 'input = "x"'
        raise SpecError(f"{key}: give exactly one of input = \"NAME\" or inputs = [...], e.g. {example}")
    sources = [single] if single is not None else list(several)
    if layer.arity is None and len(sources) < 2:
        raise SpecError(f"{key}.inputs: {node_spec.type} merges two or more inputs, got {len(sources)}")
    if layer.arity == 1 and len(sources) != 1 and not (layer.extra_inputs() and several is not None):
        raise SpecError(f"{key}.inputs: {node_spec.type} takes one input, got {len(sources)}; "
                        f"merge them first (concatenate, add, ...)")
    return sources


def _topological(nodes: dict[str, Node], inputs: set[str], producers: dict[str, str]) -> list[Node]:
    """The nodes in an order where each comes after the nodes it takes from, and otherwise in spec order (weights
    are created, checkpointed and summarized in it). A cycle is an error that names its nodes. producers: the
    node behind each source name (a node's own name, or one of its ports)."""
    rank = {name: i for i, name in enumerate(nodes)}
    sorter = TopologicalSorter({name: {producers[s] for s in node.inputs if s not in inputs}
                                for name, node in nodes.items()})
    try:
        sorter.prepare()
    except CycleError as err:
        cycle = err.args[1][:-1]  # each node feeds the next; the first is repeated at the end
        start = min(range(len(cycle)), key=lambda i: rank[cycle[i]])  # from its first node in the spec
        cycle = cycle[start:] + cycle[:start]
        raise SpecError(f"model.nodes: cycle {' -> '.join([*cycle, cycle[0]])}; a model must be a DAG") from None
    # graphlib leaves the order among ready nodes open: take them in spec order, as they become ready
    ready = deque(sorted(sorter.get_ready(), key=rank.__getitem__))
    ordered: list[Node] = []
    while ready:
        name = ready.popleft()
        ordered.append(nodes[name])
        sorter.done(name)
        ready.extend(sorted(sorter.get_ready(), key=rank.__getitem__))
    return ordered


def _check_all_used(spec: ModelSpec, nodes: dict[str, Node], producers: dict[str, str]) -> None:
    """Every node must feed some output, and every input must feed some node."""
    assert spec.inputs is not None and spec.outputs is not None
    used: set[str] = set()
    frontier = list(spec.outputs)
    while frontier:
        name = frontier.pop()
        if name in used:
            continue
        used.add(name)
        if name in nodes:
            frontier += [producers.get(source, source) for source in nodes[name].inputs]
    for name in nodes:
        if name not in used:
            raise SpecError(f"model.nodes.{name}: not used by any output; connect it or remove it")
    for name in spec.inputs:
        if name not in used:
            raise SpecError(f"model.inputs.{name}: not used by any node")


def _build_layers(model: Model, rng: np.random.Generator) -> None:
    """Shape inference: build each layer from its inputs' shapes, in order."""
    shapes: dict[str, Shape] = {name: tuple(s.shape) for name, s in model.inputs.items()}
    for name, shape in shapes.items():
        key = "model.input.shape" if model.sequential else f"model.inputs.{name}.shape"
        _refuse_oversized(key, "one example of this input", shape)
    for node in model.nodes:
        try:
            node.shape = tuple(node.layer.connect([shapes[name] for name in node.inputs], rng))
        except WeightTooLargeError as err:
            raise SpecError(f"{node.key}: {err}; reduce its size") from None
        except MemoryError:
            raise SpecError(f"{node.key}: building this layer ran out of memory; reduce its size") from None
        _refuse_oversized(node.key, "its output for one example", node.shape)
        shapes[node.name] = node.shape
        shapes.update({f"{node.name}.{port}": shape for port, shape in node.layer.extra_outputs().items()})
    model.shapes = shapes


def _refuse_oversized(key: str, what: str, shape: Shape) -> None:
    """A per-example shape bigger than the machine's memory can never train: refuse it before any batch exists."""
    needed = math.prod(shape) * 4
    if needed > physical_memory():
        raise SpecError(f"{key}: {what} has shape {list(shape)} and would need {needed / 2**30:,.1f} GiB, more than "
                        f"this machine's {physical_memory() / 2**30:,.1f} GiB of memory; reduce its size")
