"""Writes tests/layers/keras_values.py: issue 18's layers run by Keras 3.15.1 (torch backend) on fixed inputs.

    KERAS_BACKEND=torch /work/refvenv/bin/python tests/reference/keras_issue18.py > tests/layers/keras_values.py

Run once, in the benchmark environment (Keras and PyTorch are never dependencies of dlcli or its tests).
Inputs and weights are `wave(shape, scale, phase)`, which tests/layers/keras_values.py defines too, so the
tests rebuild them exactly. MHA runs with return_attention_scores=True: Keras' explicit path (einsum, masked
softmax); its fused dot_product_attention path in 3.15.1's torch backend gives other numbers whenever a mask
is present (checked here: up to 2.3 apart on random inputs), though both agree without masks.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import pprint  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from keras.src import backend  # noqa: E402


def wave(shape, scale=1.0, phase=0.0):
    n = int(np.prod(shape))
    return (np.sin(np.arange(n) * 0.7 + phase) * scale).astype(np.float32).reshape(shape)


def show(name, array):
    values = pprint.pformat(np.asarray(array, dtype=np.float64).round(7).tolist(), width=116 - len(name), compact=True)
    print(f"{name} = " + values.replace("\n", "\n" + " " * (len(name) + 3)) + "\n")


def assign(layer, scale, phases):
    for weight, phase in zip(layer.weights, phases):
        weight.assign(wave(weight.shape, scale, phase))


def layer_normalization():
    x = wave((2, 3, 5), 2.0) + 0.5
    for name, axis, epsilon, shape in (("LN_DEFAULT", -1, 1e-3, (5,)), ("LN_TWO_AXES", [1, 2], 1e-5, (3, 5))):
        layer = keras.layers.LayerNormalization(axis=axis, epsilon=epsilon)
        layer.build(x.shape)
        layer.gamma.assign(wave(shape, 1.0, 1.0) + 1.0)
        layer.beta.assign(wave(shape, 0.5, 2.0))
        show(name, layer(x).detach().numpy())


def multi_head_attention():
    q, v, k = wave((2, 3, 4)), wave((2, 4, 5), 1.0, 1.0), wave((2, 4, 6), 1.0, 2.0)
    layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=2)
    layer.build(q.shape, v.shape, k.shape)
    assign(layer, 0.6, [0.1 * (i + 1) for i in range(8)])
    qt, vt, kt = (torch.tensor(a) for a in (q, v, k))
    backend.set_keras_mask(qt, torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    for t in (vt, kt):
        backend.set_keras_mask(t, torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool))
    out, scores = layer(qt, vt, kt, return_attention_scores=True)
    show("MHA_MASKED_OUTPUT", out.detach().numpy())
    show("MHA_MASKED_SCORES", scores.detach().numpy())
    x = wave((1, 4, 4), 1.0, 0.5)
    layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2, output_shape=3)
    layer.build(x.shape, x.shape)
    assign(layer, 0.6, [0.2 * (i + 1) for i in range(8)])
    out, scores = layer(x, x, use_causal_mask=True, return_attention_scores=True)
    show("MHA_CAUSAL_OUTPUT", out.detach().numpy())
    show("MHA_CAUSAL_SCORES", scores.detach().numpy())


def convolutions():
    x = wave((1, 3, 3, 2))
    cases = [("valid", 3, 2, None), ("valid", 4, 2, None), ("valid", 2, 3, None), ("same", 3, 2, None),
             ("same", 4, 2, None), ("same", 2, 3, None), ("same", 3, 2, 0), ("valid", 3, 2, 1)]
    for padding, k, s, output_padding in cases:
        layer = keras.layers.Conv2DTranspose(2, k, strides=s, padding=padding, output_padding=output_padding)
        layer.build(x.shape)
        layer.kernel.assign(wave(layer.kernel.shape, 0.5, 0.3))
        layer.bias.assign(np.array([0.1, -0.2], np.float32))
        suffix = "" if output_padding is None else f"_OP{output_padding}"
        show(f"CONVT_{padding.upper()}_K{k}_S{s}{suffix}", layer(x).detach().numpy())
    x = wave((1, 5, 4, 2), 1.0, 0.5)
    for name, filters, options, bias in (("SEPARABLE_SAME", 3, dict(padding="same", depth_multiplier=2),
                                          [0.1, 0.0, -0.1]),
                                         ("SEPARABLE_VALID_S2", 2, dict(strides=2), [0.1, -0.1])):
        layer = keras.layers.SeparableConv2D(filters, 3, **options)
        layer.build(x.shape)
        layer.depthwise_kernel.assign(wave(layer.depthwise_kernel.shape, 0.5, 0.1))
        layer.pointwise_kernel.assign(wave(layer.pointwise_kernel.shape, 0.5, 0.2))
        layer.bias.assign(np.array(bias, np.float32))
        show(name, layer(x).detach().numpy())
    layer = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")
    layer.build(x.shape)
    layer.kernel.assign(wave(layer.kernel.shape, 0.5, 0.1))
    layer.bias.assign(wave(layer.bias.shape, 0.1, 0.4))
    show("DEPTHWISE_SAME", layer(x).detach().numpy())
    x = wave((1, 2, 3, 2))
    show("UPSAMPLE_BILINEAR", keras.layers.UpSampling2D((2, 3), interpolation="bilinear")(x).detach().numpy())


if __name__ == "__main__":
    print('"""Issue 18\'s layers as Keras 3.15.1 (torch backend) computes them; written by '
          'tests/reference/keras_issue18.py."""\n')
    print("import numpy as np\n\n")
    print("def wave(shape: tuple[int, ...], scale: float = 1.0, phase: float = 0.0) -> np.ndarray:")
    print('    """The fixed inputs and weights: sin(0.7 i + phase) * scale over the entries, float32."""')
    print("    n = int(np.prod(shape))")
    print("    return (np.sin(np.arange(n) * 0.7 + phase) * scale).astype(np.float32).reshape(shape)\n\n")
    layer_normalization()
    multi_head_attention()
    convolutions()
