"""Layers: importing this package registers every layer type."""

from dlcli.layers import core, dense, merge, normalization
from dlcli.layers.base import Layer, LayerSpec, Shape, create_layer

__all__ = ["Layer", "LayerSpec", "Shape", "core", "create_layer", "dense", "merge", "normalization"]
