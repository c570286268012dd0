"""Every layer type exported on its own (a tiny model with random weights), run in onnxruntime and compared with
dlcli's predict: every padding, stride and activation, batch normalization's moving statistics, identities in
inference, merges and graphs with several inputs and outputs. Recurrent layers and masks: test_onnx_recurrent.py;
text: test_onnx_text.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import pytest

from dlcli import registry
from dlcli.components import load_all
from dlcli.errors import SpecError
from dlcli.export import check_export
from dlcli.export.onnx.converters import ACTIVATIONS, CONVERTERS, NOT_EXPORTABLE_YET
from tests.cases import covers
from tests.export.exports import checked, export_case
from tests.export.test_onnx_recurrent import CASES as RECURRENT_CASES
from tests.export.test_onnx_text import CASES as TEXT_CASES
from tests.export.test_onnx_transformer import CASES as TRANSFORMER_CASES

Inputs = Callable[[np.random.Generator], dict[str, np.ndarray]]
N = 6  # examples per check: enough rows to catch a batch-axis mistake


def floats(*shape: int, name: str = "input") -> Inputs:
    return lambda rng: {name: rng.normal(0.0, 1.0, (N, *shape)).astype(np.float32)}


def stack(shape: list[int], *layers: dict[str, Any], dtype: str = "float32") -> dict[str, Any]:
    return {"input": {"shape": shape, "dtype": dtype}, "layers": list(layers)}


def conv(kind: str, **keys: Any) -> dict[str, Any]:
    return {"type": kind, "filters": 3, **keys}


# name -> (model document, inputs); a name starts with the layer type it covers
CASES: dict[str, tuple[dict[str, Any], Inputs]] = {
    "dense": (stack([5], {"type": "dense", "units": 3, "activation": "relu"}), floats(5)),
    "dense_rank3_without_bias": (stack([4, 6], {"type": "dense", "units": 3, "use_bias": False,
                                                "activation": "tanh"}), floats(4, 6)),
    "dropout": (stack([6], {"type": "dropout", "rate": 0.5}, {"type": "dense", "units": 2}), floats(6)),
    "flatten": (stack([3, 4, 2], {"type": "flatten"}, {"type": "dense", "units": 2}), floats(3, 4, 2)),
    "reshape": (stack([12], {"type": "reshape", "target_shape": [3, -1]}), floats(12)),
    "permute": (stack([2, 3, 4], {"type": "permute", "dims": [3, 1, 2]}), floats(2, 3, 4)),
    "rescaling": (stack([5], {"type": "rescaling", "scale": 0.25, "offset": -1.5}), floats(5)),
    "rescaling_integer_pixels": (stack([4], {"type": "rescaling", "scale": 1 / 255}, dtype="int32"),
                                 lambda rng: {"input": rng.integers(0, 256, (N, 4)).astype(np.int32)}),
    "normalization": (stack([5], {"type": "normalization"}), floats(5)),
    "normalization_axis_1_of_2": (stack([3, 4], {"type": "normalization", "axis": 1}), floats(3, 4)),
    "normalization_fixed": (stack([2], {"type": "normalization", "mean": [1.0, -2.0], "variance": [4.0, 0.0]}),
                            floats(2)),
    "batch_normalization": (stack([4, 4, 3], {"type": "batch_normalization"}), floats(4, 4, 3)),
    "batch_normalization_channel_axis_1": (stack([3, 5], {"type": "batch_normalization", "axis": 1,
                                                          "center": False}), floats(3, 5)),
    "conv1d_valid_stride_2": (stack([9, 2], conv("conv1d", kernel_size=3, strides=2)), floats(9, 2)),
    "conv1d_same_even_kernel": (stack([8, 2], conv("conv1d", kernel_size=4, padding="same",
                                                   activation="relu")), floats(8, 2)),
    "conv1d_causal_dilated": (stack([10, 2], conv("conv1d", kernel_size=3, padding="causal", dilation_rate=2,
                                                  activation="tanh")), floats(10, 2)),
    "conv1d_causal_stride_2": (stack([9, 2], conv("conv1d", kernel_size=2, padding="causal", strides=2)),
                               floats(9, 2)),
    "conv2d_valid": (stack([6, 7, 2], conv("conv2d", kernel_size=3)), floats(6, 7, 2)),
    "conv2d_same_asymmetric": (stack([7, 8, 2], conv("conv2d", kernel_size=[2, 3], strides=2, padding="same",
                                                     activation="relu", use_bias=False)), floats(7, 8, 2)),
    "conv2d_dilated_softmax": (stack([7, 7, 1], conv("conv2d", kernel_size=2, dilation_rate=[2, 1],
                                                     padding="same", activation="softmax")), floats(7, 7, 1)),
    "max_pooling1d_same": (stack([7, 3], {"type": "max_pooling1d", "pool_size": 2, "padding": "same"}),
                           floats(7, 3)),
    "max_pooling2d_valid_strides": (stack([7, 6, 2], {"type": "max_pooling2d", "pool_size": [3, 2],
                                                      "strides": [2, 1]}), floats(7, 6, 2)),
    "max_pooling2d_same": (stack([5, 5, 2], {"type": "max_pooling2d", "pool_size": 2, "padding": "same"}),
                           floats(5, 5, 2)),
    "average_pooling1d": (stack([8, 3], {"type": "average_pooling1d", "pool_size": 3, "strides": 2}),
                          floats(8, 3)),
    "average_pooling2d_same_counts_inside": (stack([5, 4, 2], {"type": "average_pooling2d", "pool_size": 3,
                                                               "strides": 2, "padding": "same"}), floats(5, 4, 2)),
    "global_average_pooling1d": (stack([5, 3], {"type": "global_average_pooling1d"}), floats(5, 3)),
    "global_average_pooling2d_keepdims": (stack([4, 3, 2], {"type": "global_average_pooling2d", "keepdims": True}),
                                          floats(4, 3, 2)),
    "global_max_pooling1d_keepdims": (stack([5, 3], {"type": "global_max_pooling1d", "keepdims": True}),
                                      floats(5, 3)),
    "global_max_pooling2d": (stack([4, 3, 2], {"type": "global_max_pooling2d"}), floats(4, 3, 2)),
    "layer_normalization": (stack([3, 5], {"type": "layer_normalization"}), floats(3, 5)),
    "layer_normalization_axes_1_2_without_scale": (stack([3, 4, 2], {"type": "layer_normalization", "axis": [1, 2],
                                                                     "scale": False, "epsilon": 0.5}),
                                                   floats(3, 4, 2)),
    "layer_normalization_middle_axis": (stack([3, 4, 2], {"type": "layer_normalization", "axis": 2,
                                                          "center": False}), floats(3, 4, 2)),
    "zero_padding2d": (stack([3, 4, 2], {"type": "zero_padding2d"}), floats(3, 4, 2)),
    "zero_padding2d_each_edge": (stack([3, 4, 2], {"type": "zero_padding2d", "padding": [[0, 2], [3, 1]]},
                                       {"type": "conv2d", "filters": 2, "kernel_size": 2}), floats(3, 4, 2)),
    "cropping2d": (stack([5, 6, 2], {"type": "cropping2d", "cropping": [[1, 0], [2, 1]]}), floats(5, 6, 2)),
    "cropping2d_symmetric": (stack([5, 6, 2], {"type": "cropping2d", "cropping": [1, 2]}), floats(5, 6, 2)),
    "up_sampling2d_nearest": (stack([3, 4, 2], {"type": "up_sampling2d", "size": [2, 3]}), floats(3, 4, 2)),
    "up_sampling2d_bilinear": (stack([3, 4, 2], {"type": "up_sampling2d", "size": [3, 2],
                                                 "interpolation": "bilinear"}), floats(3, 4, 2)),
    "up_sampling2d_bilinear_one_pixel": (stack([1, 2, 1], {"type": "up_sampling2d", "interpolation": "bilinear"}),
                                         floats(1, 2, 1)),
    "depthwise_conv2d_valid": (stack([6, 7, 2], {"type": "depthwise_conv2d", "kernel_size": 3}), floats(6, 7, 2)),
    "depthwise_conv2d_same_strides_multiplier": (stack([7, 8, 3], {"type": "depthwise_conv2d", "kernel_size": [2, 3],
                                                                   "strides": 2, "padding": "same",
                                                                   "depth_multiplier": 2, "activation": "relu"}),
                                                 floats(7, 8, 3)),
    "depthwise_conv2d_dilated_without_bias": (stack([7, 7, 2], {"type": "depthwise_conv2d", "kernel_size": 2,
                                                                "dilation_rate": [2, 1], "padding": "same",
                                                                "use_bias": False}), floats(7, 7, 2)),
    "separable_conv2d_valid": (stack([6, 7, 2], conv("separable_conv2d", kernel_size=3)), floats(6, 7, 2)),
    "separable_conv2d_same_strides_gelu": (stack([7, 8, 3], conv("separable_conv2d", kernel_size=3, strides=2,
                                                                 padding="same", depth_multiplier=2,
                                                                 activation="gelu")), floats(7, 8, 3)),
    "conv2d_transpose_valid": (stack([4, 5, 2], conv("conv2d_transpose", kernel_size=3)), floats(4, 5, 2)),
    "conv2d_transpose_same_stride_2": (stack([4, 5, 2], conv("conv2d_transpose", kernel_size=3, strides=2,
                                                             padding="same", activation="relu")), floats(4, 5, 2)),
    "conv2d_transpose_same_even_kernel": (stack([4, 3, 2], conv("conv2d_transpose", kernel_size=[4, 2], strides=2,
                                                                padding="same")), floats(4, 3, 2)),
    "conv2d_transpose_valid_stride_above_kernel": (stack([3, 4, 2], conv("conv2d_transpose", kernel_size=2,
                                                                         strides=3)), floats(3, 4, 2)),
    "conv2d_transpose_output_padding": (stack([3, 4, 2], conv("conv2d_transpose", kernel_size=3, strides=2,
                                                              padding="same", output_padding=[1, 0])),
                                        floats(3, 4, 2)),
    "conv2d_transpose_dilated_without_bias": (stack([4, 4, 2], conv("conv2d_transpose", kernel_size=2,
                                                                    dilation_rate=2, use_bias=False,
                                                                    activation="silu")), floats(4, 4, 2)),
    "embedding": (stack([5], {"type": "embedding", "input_dim": 9, "output_dim": 3}, dtype="int32"),
                  lambda rng: {"input": rng.integers(0, 9, (N, 5)).astype(np.int32)}),
    "embedding_float_ids": (stack([4], {"type": "embedding", "input_dim": 7, "output_dim": 2}),
                            lambda rng: {"input": rng.integers(0, 7, (N, 4)).astype(np.float32)}),
    "random_flip": (stack([4, 4, 2], {"type": "random_flip"}, {"type": "flatten"}), floats(4, 4, 2)),
    "random_translation": (stack([4, 4, 1], {"type": "random_translation", "height_factor": 0.2,
                                             "width_factor": 0.2}), floats(4, 4, 1)),
    "random_zoom": (stack([4, 4, 1], {"type": "random_zoom", "height_factor": 0.3}), floats(4, 4, 1)),
    "random_rotation": (stack([4, 4, 1], {"type": "random_rotation", "factor": 0.1}), floats(4, 4, 1)),
}


def _merge_graph(kind: str, **keys: Any) -> tuple[dict[str, Any], Inputs]:
    """Three inputs merged, then a dense head and the merge itself as two outputs."""
    document = {"inputs": {name: {"shape": [2, 3]} for name in ("a", "b", "c")},
                "nodes": {"merged": {"type": kind, "inputs": ["a", "b", "c"], **keys},
                          "head": {"type": "dense", "units": 2, "input": "merged"}},
                "outputs": {"merged": {"loss": "mse"}, "head": {"loss": "mse"}}}
    return document, lambda rng: {name: rng.normal(0, 1, (N, 2, 3)).astype(np.float32) for name in "abc"}


for merge in ("add", "multiply", "average", "maximum"):
    CASES[merge] = _merge_graph(merge)
CASES["concatenate_last_axis"] = _merge_graph("concatenate")
CASES["concatenate_axis_1"] = _merge_graph("concatenate", axis=1)
for activation in ACTIVATIONS:
    CASES[f"activation_{activation}"] = (stack([2, 5], {"type": "activation", "activation": activation}), floats(2, 5))
CASES["activation_swish_is_silu"] = (stack([2, 5], {"type": "activation", "activation": "swish"}), floats(2, 5))
CASES["dense_gelu_wide_inputs"] = (stack([5], {"type": "dense", "units": 4, "activation": "gelu"}),
                                   lambda rng: {"input": rng.normal(0.0, 4.0, (N, 5)).astype(np.float32)})


def test_every_layer_type_has_an_onnx_converter_and_a_case() -> None:
    load_all()
    every_case = {**CASES, **RECURRENT_CASES, **TEXT_CASES, **TRANSFORMER_CASES}
    exportable = [name for name in registry.layers.names() if name not in NOT_EXPORTABLE_YET]
    missing = [name for name in exportable if name not in CONVERTERS]
    assert not missing, f"layer types without an ONNX converter (dlcli/export/onnx/): {missing}"
    untested = [name for name in exportable if not covers(name, every_case)]
    assert not untested, f"layer types without an export case: {untested}"


def test_every_activation_has_an_onnx_form() -> None:
    load_all()
    exportable = [name for name in registry.activations.names() if name not in NOT_EXPORTABLE_YET]
    assert sorted(ACTIVATIONS) == exportable


def test_the_not_yet_exportable_names_are_registered_and_have_no_onnx_form() -> None:
    """NOT_EXPORTABLE_YET only shrinks: a name leaves it when its converter arrives, and it names nothing else."""
    load_all()
    registered = set(registry.layers.names()) | set(registry.activations.names())
    assert NOT_EXPORTABLE_YET <= registered, sorted(NOT_EXPORTABLE_YET - registered)
    assert not NOT_EXPORTABLE_YET & (set(CONVERTERS) | set(ACTIVATIONS)), sorted(
        NOT_EXPORTABLE_YET & (set(CONVERTERS) | set(ACTIVATIONS)))


def test_the_not_yet_exportable_names_are_listed_in_the_cli_page() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    section = page[page.index("## Exporting to ONNX"):]
    section = section[:section.index("\n## ", 1)]
    unlisted = [name for name in sorted(NOT_EXPORTABLE_YET) if f"`{name}`" not in section]
    assert not unlisted, f"docs/cli.md's export section does not list these not-yet-exportable names: {unlisted}"


def test_a_layer_type_without_a_converter_is_a_spec_error_naming_its_key(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # what a model using a NOT_EXPORTABLE_YET layer type meets; dense stands in, so the test outlives the set
    monkeypatch.delitem(CONVERTERS, "dense")
    with pytest.raises(SpecError, match=r"model.layers\[1\]: layer type 'dense' has no ONNX converter yet, so this "
                                        r"model cannot be exported to onnx") as error:
        export_case(tmp_path, stack([3], {"type": "dropout", "rate": 0.1}, {"type": "dense", "units": 2}))
    assert error.value.exit_code == 2


def test_an_activation_without_an_onnx_form_is_a_spec_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(ACTIVATIONS, "tanh")
    with pytest.raises(SpecError, match="the activation 'tanh' has no ONNX form yet; it cannot be exported"):
        export_case(tmp_path, stack([3], {"type": "dense", "units": 2, "activation": "tanh"}))


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_layer_exports_and_onnxruntime_matches_dlcli(case: str, tmp_path: Path) -> None:
    document, inputs = CASES[case]
    checked(tmp_path, document, inputs(np.random.default_rng(7)))


# issue 18's layers, whose forms use ops that changed between opsets (ReduceMean's axes in 18, Pad, Resize-free
# up-sampling, ConvTranspose's output_padding), exported at the oldest, default and newest opsets written
OPSET_CASES = ["layer_normalization_axes_1_2_without_scale", "zero_padding2d_each_edge", "cropping2d",
               "up_sampling2d_bilinear", "up_sampling2d_nearest", "separable_conv2d_same_strides_gelu",
               "conv2d_transpose_output_padding", "transformer_encoder_masked_gelu",
               "multi_head_attention_cross_with_key"]


@pytest.mark.parametrize("opset", [14, 18, 20])
@pytest.mark.parametrize("case", OPSET_CASES)
def test_the_new_layers_pass_the_checker_and_onnxruntime_at_every_opset(case: str, opset: int,
                                                                       tmp_path: Path) -> None:
    document, inputs = {**CASES, **TRANSFORMER_CASES}[case]
    exporter, source, exported = export_case(tmp_path, document, options={"opset": opset})
    model = onnx.load(exported.path)
    assert model.opset_import[0].version == opset
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    assert check_export(exporter, exported, source, inputs(np.random.default_rng(7))).passed
