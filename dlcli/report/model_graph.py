"""The model graph as Graphviz DOT, as Keras' plot_model draws it: a box per input and layer with its name, type
and output shape, an arrow per connection (labelled with the port for return_state outputs), outputs drawn
with a double border. DOT is plain text; SVG, PNG and PDF go through Graphviz's `dot` when it is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from dlcli.checkpoint import write_atomically
from dlcli.errors import SpecError
from dlcli.graph import Model
from dlcli.report.summary import format_shape

DOT_SUFFIXES = (".dot", ".gv")
RENDERED_SUFFIXES = (".svg", ".png", ".pdf")


def model_dot(model: Model, title: str) -> str:
    """The DOT text of the model's graph, top to bottom."""
    lines = [f"digraph {_quote(title)} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded", fontname="Helvetica"];', '  edge [fontname="Helvetica", fontsize=10];']
    for name, spec in model.inputs.items():
        lines.append(f"  {_quote(name)} [label={_quote(_label(name, 'InputLayer', (None, *spec.shape)))}];")
    nodes = {node.name for node in model.nodes}
    for node in model.nodes:
        extra = list(node.layer.extra_outputs().values())
        shape = [(None, *s) for s in [node.shape, *extra]] if extra else (None, *node.shape)
        border = ", peripheries=2" if node.name in model.outputs else ""
        lines.append(f"  {_quote(node.name)} [label={_quote(_label(node.name, type(node.layer).__name__, shape))}"
                     f"{border}];")
    for node in model.nodes:
        for source in node.inputs:
            owner, _, port = source.partition(".")
            if port and owner in nodes:  # "encoder.state_h": the node's extra output
                lines.append(f"  {_quote(owner)} -> {_quote(node.name)} [label={_quote(port)}];")
            else:
                lines.append(f"  {_quote(source)} -> {_quote(node.name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_model_graph(model: Model, path: Path, title: str) -> None:
    """Write the graph to `path`: DOT text for .dot/.gv; .svg, .png or .pdf rendered by Graphviz's dot."""
    suffix = path.suffix.lower()
    if suffix not in DOT_SUFFIXES + RENDERED_SUFFIXES:
        raise SpecError(f"--graph {path}: unsupported suffix {path.suffix or '(none)'!r}; write .dot (no dependency) "
                        "or .svg, .png, .pdf (rendered by Graphviz)")
    if not path.parent.is_dir():
        raise SpecError(f"--graph {path}: the folder {path.parent} does not exist; create it first")
    text = model_dot(model, title)
    if suffix in DOT_SUFFIXES:
        write_atomically(path, text.encode(), SpecError)
        return
    dot = shutil.which("dot")
    if dot is None:
        raise SpecError(f"--graph {path}: drawing {suffix} needs Graphviz's dot program, which is not on PATH; "
                        "install Graphviz (apt install graphviz, brew install graphviz), or write "
                        f"{path.with_suffix('.dot')} and render it elsewhere")
    done = subprocess.run([dot, f"-T{suffix[1:]}"], input=text.encode(), capture_output=True, timeout=120)
    if done.returncode != 0:
        raise SpecError(f"--graph {path}: Graphviz's dot failed ({done.stderr.decode(errors='replace').strip()})")
    write_atomically(path, done.stdout, SpecError)


def _label(name: str, kind: str, shape: object) -> str:
    return f"{name} ({kind})\n{format_shape(shape)}"


def _quote(text: str) -> str:
    """A DOT string: double quotes, with quotes and backslashes escaped and newlines as \\n."""
    return json.dumps(text, ensure_ascii=False)
