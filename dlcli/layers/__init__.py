"""Layers: importing this package registers every layer type."""

from dlcli.layers import augmentation  # noqa: F401 - registers the random_* layers
from dlcli.layers import embedding  # noqa: F401 - registers embedding
from dlcli.layers import conv1d, conv2d, core, dense, merge, normalization
from dlcli.layers import batch_normalization, pooling  # noqa: F401 - registers pooling and batch_normalization
from dlcli.layers import recurrent  # noqa: F401 - registers simple_rnn, lstm and gru
from dlcli.layers import bidirectional  # noqa: F401 - registers bidirectional
from dlcli.layers import text_vectorization  # noqa: F401 - registers text_vectorization
from dlcli.layers import layer_normalization, multi_head_attention, positional_embedding  # noqa: F401
from dlcli.layers import transformer_encoder  # noqa: F401 - registers transformer_encoder
from dlcli.layers import conv2d_transpose, depthwise_conv2d, padding2d, separable_conv2d, up_sampling2d  # noqa: F401
from dlcli.layers.base import Layer, LayerSpec, Shape, create_layer

__all__ = [
    "Layer", "LayerSpec", "Shape", "augmentation", "batch_normalization", "conv1d", "conv2d", "core", "create_layer",
    "dense", "merge", "normalization", "pooling",
]
