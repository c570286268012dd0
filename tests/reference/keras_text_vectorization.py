"""Prints the Keras 3 values of tests/layers/test_text_vectorization.py's KERAS_* constants: TextVectorization
adapted on texts with non-ASCII capitals and non-ASCII whitespace.

    KERAS_BACKEND=torch /path/to/venv/bin/python tests/reference/keras_text_vectorization.py

Run once, in a venv with keras 3.15.1, torch and tensorflow-cpu (Keras 3's TextVectorization runs on tf.strings
whatever the backend); never a dependency of dlcli or its tests. Keras lowercases with tf.strings.lower (ASCII A-Z
only) and splits with tf.strings.split (the six ASCII whitespace characters only).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

TEXTS = ["ÉCOLE école École", "new\u00a0york new york", "ΣΊΣΥΦΟΣ σίσυφος İstanbul ISTANBUL",
         "a\u2003b a b\u0085c", "x\x1cy\x1dz\x1e w\x1fv", "Café 🎉 CAFÉ! 🎉", "line one\r\nline two\r\n",
         "tab\there\vvt\fff\rcr"]
PROBES = ["ÉCOLE NEW\u00a0YORK", "İSTANBUL σίσυφος\u0085a"]

for standardize, split in (("lower_and_strip_punctuation", "whitespace"), ("lower", None), (None, None)):
    layer = keras.layers.TextVectorization(output_sequence_length=6, standardize=standardize, split=split)
    layer.adapt(TEXTS)
    print(standardize, split)
    print(" vocabulary", [str(token) for token in layer.get_vocabulary()])
    print(" ids", np.asarray(layer(np.array(TEXTS)[:, None])).tolist())
    print(" probes", np.asarray(layer(np.array(PROBES)[:, None])).tolist())
