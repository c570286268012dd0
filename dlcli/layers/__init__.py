"""Layers: importing this package registers every layer type."""

from dlcli.layers import conv1d, conv2d, core, dense, merge, normalization
from dlcli.layers.base import Layer, LayerSpec, Shape, create_layer

__all__ = ["Layer", "LayerSpec", "Shape", "conv1d", "conv2d", "core", "create_layer", "dense", "merge", "normalization"]
