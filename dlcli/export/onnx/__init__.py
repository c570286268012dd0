"""The ONNX exporter: a trained model as one .onnx file, written with the `onnx` package and run by onnxruntime.

The file takes the model's raw inputs under the spec's names, with a dynamic batch axis, and gives every output
under its spec name (plus `<output>.mask`, the (batch, steps) step mask, for an output that carries one, as
dlcli predict returns it). Its metadata: the dlcli version, the spec's name and sha256 (canonical JSON), the
checkpoint and its epoch, and the class names of outputs trained on string labels. The onnx checker (full
check, strict shape inference) passes on every file written, or the export fails.

Both onnx and onnxruntime are the optional extra dlcli[onnx], imported only here, when a file is written or run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from dlcli import __version__, registry
from dlcli.checkpoint import write_atomically
from dlcli.errors import ExportCheckError, SpecError
from dlcli.export.exporter import Exported, Exporter, ExportSource, Runner, spec_sha256
from dlcli.export.onnx import images, layers, recurrent, text, transformer  # noqa: F401 - fill the converter table
from dlcli.export.onnx.builder import OnnxGraph, Value, tensor_type
from dlcli.export.onnx.converters import convert_model
from dlcli.train.loop import input_tensor

INSTALL_COMMAND = "pip install 'dlcli[onnx]'"
DEFAULT_OPSET = 17  # onnxruntime 1.12 and later; text layers raise it to 20 (StringSplit)
MIN_OPSET = 14  # the recurrent ops' current form
ML_OPSET = 2  # ai.onnx.ml's LabelEncoder with string keys


def require(module: str) -> Any:
    """Import onnx or onnxruntime, or say how to install them (a SpecError, exit 2)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SpecError(f"the onnx format needs the {module} package, which is not installed; install the extra "
                        f"with: {INSTALL_COMMAND}") from None


@registry.exporters.register("onnx")
class OnnxExporter(Exporter):
    """ONNX: one .onnx file with the weights, checked by the onnx checker, run by onnxruntime (dlcli[onnx])."""

    suffix = ".onnx"

    def write(self, source: ExportSource, path: Path, options: dict[str, Any]) -> Exported:
        onnx = require("onnx")
        started = time.perf_counter()
        converted = _converted(source, options.get("opset"), onnx.defs.onnx_opset_version())
        model = converted.model(onnx)
        if model.ByteSize() >= 2**31:  # protobuf's limit for one message; ONNX's external data is not written yet
            raise SpecError(f"{source.checkpoint}: the model is {model.ByteSize() / 2**30:.1f} GiB, and one .onnx "
                            "file holds at most 2 GiB; dlcli does not write ONNX's external weight files yet")
        onnx.checker.check_model(model, full_check=True)  # a failure here is an exporter bug: keep its traceback
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        content = model.SerializeToString()
        write_atomically(path, content, SpecError)
        details = {"opset": converted.opset, "ir_version": model.ir_version}
        return Exported(path, "onnx", len(content), converted.described(converted.inputs),
                        converted.described(converted.outputs), time.perf_counter() - started, details)

    def runner(self, exported: Exported, threads: int | None = None) -> Runner:
        ort = require("onnxruntime")
        failures = _runtime_errors()
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        try:
            session = ort.InferenceSession(str(exported.path), options, providers=["CPUExecutionProvider"])
        except failures as err:
            raise ExportCheckError(f"{exported.path}: onnxruntime cannot load it: {_first_line(err)}") from None
        names = [output.name for output in session.get_outputs()]

        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            try:
                return dict(zip(names, session.run(names, feeds)))
            except failures as err:
                raise ExportCheckError(f"{exported.path}: onnxruntime failed to run it: {_first_line(err)}") from None

        return run

    def feeds(self, exported: Exported, source: ExportSource, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        model = source.model
        feeds: dict[str, np.ndarray] = {}
        for name in exported.inputs:
            array = input_tensor(inputs[name], model.inputs[name].dtype).data
            feeds[name] = array.astype(object) if array.dtype.kind == "U" else array
        return feeds


def _converted(source: ExportSource, asked: int | None, highest: int) -> _Conversion:
    """The model as an ONNX graph at the opset asked for, or by default at DEFAULT_OPSET or the lowest its layers
    need (text: 20); an opset the installed onnx cannot write, or lower than the layers need, is a SpecError."""
    if asked is not None and asked > highest:
        raise SpecError(f"--opset {asked}: the installed onnx package writes opsets up to {highest}; give a lower "
                        "one or leave it out")
    converted = _Conversion(source, DEFAULT_OPSET if asked is None else asked)  # 0 too is refused, not the default
    needed = converted.graph.min_opset
    if needed > converted.opset:
        if asked is not None:
            raise SpecError(f"--opset {asked}: this model needs opset {needed} or later (its text layers use "
                            f"StringSplit); give --opset {needed} or leave it out")
        converted = _Conversion(source, needed)
    return converted


def _runtime_errors() -> tuple[type[BaseException], ...]:
    """onnxruntime's exception types (Fail, InvalidArgument, ...: pybind11 classes with no common base of their
    own), so that only they become a failed check."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(kind for kind in vars(state).values() if isinstance(kind, type) and issubclass(kind, Exception))


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class _Conversion:
    """A model converted to an ONNX graph at one opset: its inputs, nodes and outputs, before it is a ModelProto."""

    def __init__(self, source: ExportSource, opset: int) -> None:
        if opset < MIN_OPSET:
            raise SpecError(f"--opset {opset}: dlcli writes opset {MIN_OPSET} or later")
        self.source, self.opset = source, opset
        self.graph = graph = OnnxGraph(opset)
        model = source.model
        fed = {name for node in model.nodes for name in node.inputs}
        self.inputs: dict[str, Value] = {name: Value(graph.reserve(name), tuple(spec.shape), spec.dtype)
                                         for name, spec in model.inputs.items() if name in fed}
        values = convert_model(graph, model, self.inputs)
        self.outputs: dict[str, Value] = {}
        for name in model.outputs:
            value = values[name]
            self.outputs[name] = value.like(self._named_output(name, value.name))
            if value.mask is not None:
                mask_name = f"{name}.mask"
                self.outputs[mask_name] = Value(self._named_output(mask_name, value.mask.name), (value.mask.steps,),
                                                "bool")

    def _named_output(self, name: str, tensor: str) -> str:
        from onnx import helper

        self.graph.nodes.append(helper.make_node("Identity", [tensor], [self.graph.reserve(name)],
                                                 name=self.graph.fresh(f"{name}/output")))
        return name

    def model(self, onnx: Any) -> Any:
        """The ModelProto: graph, opsets, the lowest IR version they need, and the metadata."""
        helper, graph = onnx.helper, self.graph
        info = [helper.make_tensor_value_info(v.name, tensor_type(v.dtype), ["batch", *v.shape])
                for v in self.inputs.values()]
        results = [helper.make_tensor_value_info(v.name, tensor_type(v.dtype), ["batch", *v.shape])
                   for v in self.outputs.values()]
        proto = helper.make_graph(graph.nodes, self.source.spec.name, info, results, graph.initializers)
        opsets = [helper.make_opsetid("", self.opset)]
        if graph.needs_ml:
            opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
        model = helper.make_model(proto, opset_imports=opsets, producer_name="dlcli", producer_version=__version__,
                                  doc_string=self.source.spec.description or "")
        model.ir_version = helper.find_min_ir_version_for(opsets)
        helper.set_model_props(model, self.metadata())
        return model

    def metadata(self) -> dict[str, str]:
        """The file's metadata_props (strings, as ONNX requires; structured values as JSON)."""
        source = self.source
        return {"dlcli_version": __version__, "spec_name": source.spec.name,
                "spec_sha256": spec_sha256(source.spec), "checkpoint": source.checkpoint.name,
                "epoch": "" if source.epoch is None else str(source.epoch),
                "class_names": json.dumps(source.class_names, ensure_ascii=False)}

    @staticmethod
    def described(values: dict[str, Value]) -> dict[str, str]:
        """name -> "float32 [batch, 28, 28]"."""
        return {name: f"{v.dtype} [{', '.join(['batch', *map(str, v.shape)])}]" for name, v in values.items()}

