"""TextVectorization: raw strings -> token ids or multi-hot/count rows, with a vocabulary adapted on training data."""

from __future__ import annotations

import re
from collections import Counter
from itertools import chain, repeat
from typing import Iterable, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from dlcli import registry
from dlcli.errors import SpecError
from dlcli.layers.base import Layer, LayerSpec, Shape
from dlcli.tensor import Tensor

# Keras' DEFAULT_STRIP_REGEX: ASCII punctuation, removed (not replaced by a space) before splitting
PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
# Keras splits with tf.strings.split(), at these six ASCII characters only: a no-break space, U+2003, U+0085 or
# \x1c-\x1f (all of which Python's str.split() splits at) stay inside a token
WHITESPACE = " \t\n\v\f\r"
_TOKEN = re.compile(f"[^{re.escape(WHITESPACE)}]+")
_SEPARATOR = "\x00"  # joins a batch into one string, so lowercasing and the regex run once per batch
MASK, OOV = "", "[UNK]"
# Keras' reserved entries at the head of the vocabulary: int mode has padding (0) and OOV (1), the others OOV (0)
RESERVED: dict[str, tuple[str, ...]] = {"int": (MASK, OOV), "multi_hot": (OOV,), "count": (OOV,)}


class TextVectorizationSpec(LayerSpec):
    """[[model.layers]] type = "text_vectorization"."""

    type: Literal["text_vectorization"] = "text_vectorization"
    max_tokens: int | None = Field(None, gt=0, description="Vocabulary size, counting the reserved padding and "
                                                           "OOV entries as Keras does; the multi_hot/count width.")
    standardize: Literal["lower_and_strip_punctuation", "lower", "strip_punctuation", "none"] = Field(
        "lower_and_strip_punctuation", description="Clean-up before splitting, as Keras: lowercase A-Z (ASCII only) "
                                                   "and/or strip ASCII punctuation; \"none\" (Keras' None): as is.")
    split: Literal["whitespace", "none"] = Field(
        "whitespace", description="whitespace: at the six ASCII whitespace characters (space, tab, LF, VT, FF, "
                                  "CR), as Keras; \"none\" (Keras' None): each whole string is one token.")
    output_mode: Literal["int", "multi_hot", "count"] = Field("int", description="int: token ids in order; "
                                                                                 "multi_hot: 1 for each vocabulary "
                                                                                 "entry present; count: how often.")
    output_sequence_length: int | None = Field(None, gt=0, description="int mode: pad with 0 or cut, at the end, "
                                                                       "to this many ids.")
    vocabulary: list[str] | None = Field(None, description="A fixed vocabulary (no reserved entries), most "
                                                           "frequent first; without it, adapted on the train split.")

    @field_validator("standardize", "split", mode="before")
    @classmethod
    def _none_spelt_none(cls, value: object) -> object:
        """Keras' None (from Python, or a spec dump) as "none": TOML has no null, so specs write the string."""
        return "none" if value is None else value

    @model_validator(mode="after")
    def _fixed_output_shape(self) -> TextVectorizationSpec:
        reserved = RESERVED[self.output_mode]
        if self.output_mode == "int" and self.output_sequence_length is None:
            raise ValueError('output_sequence_length is required with output_mode = "int": dlcli fixes every '
                             "shape before training, so each text must become the same number of token ids "
                             "(Keras would pad each batch to its longest text instead); e.g. "
                             "output_sequence_length = 200")
        if self.output_mode != "int" and self.output_sequence_length is not None:
            raise ValueError(f'output_sequence_length only applies to output_mode = "int", not '
                             f'"{self.output_mode}"; remove it')
        if self.output_mode != "int" and self.max_tokens is None:
            raise ValueError(f'max_tokens is required with output_mode = "{self.output_mode}": it is the width '
                             f"of each output row, which must be known before the vocabulary is adapted; e.g. "
                             f"max_tokens = 20000")
        if self.max_tokens is not None and self.max_tokens <= len(reserved):
            raise ValueError(f"max_tokens = {self.max_tokens} leaves no room for words: it counts the "
                             f"{len(reserved)} reserved entries {list(reserved)} of output_mode = "
                             f'"{self.output_mode}"; give more than {len(reserved)}')
        if self.vocabulary is not None:
            _check_vocabulary(self.vocabulary, reserved, self.max_tokens)
        return self


def _check_vocabulary(tokens: list[str], reserved: tuple[str, ...], max_tokens: int | None) -> None:
    """ValueError unless `tokens` are distinct words, none reserved, that fit in max_tokens."""
    clashes = sorted({MASK, OOV} & set(tokens))
    if clashes:
        raise ValueError(f"vocabulary: {clashes} are reserved entries (padding '' and OOV '[UNK]'), added "
                         f"by the layer itself; remove them")
    repeated = sorted(token for token, count in Counter(tokens).items() if count > 1)
    if repeated:
        raise ValueError(f"vocabulary: {repeated[:5]} appear more than once; each token must be listed once")
    if max_tokens is not None and len(tokens) + len(reserved) > max_tokens:
        raise ValueError(f"vocabulary: {len(tokens)} tokens plus {len(reserved)} reserved exceed max_tokens = "
                         f"{max_tokens}; raise max_tokens or shorten the vocabulary")


@registry.layers.register("text_vectorization", spec=TextVectorizationSpec)
class TextVectorization(Layer):
    """Strings to token ids (int) or multi-hot/count rows, over a vocabulary adapted on the training texts."""

    spec: TextVectorizationSpec

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        if tuple(in_shape) != (1,):
            raise SpecError(f"{self.key}: text_vectorization takes one string per example, so its input must be "
                            f"a model input with shape = [1] and dtype = \"string\"; found per-example shape "
                            f"{list(in_shape)}")
        self._set_vocabulary(list(self.spec.vocabulary or []))
        if self.spec.output_mode == "int":
            return (self.spec.output_sequence_length,)  # type: ignore[return-value]
        return (self.spec.max_tokens,)  # type: ignore[return-value]

    def _set_vocabulary(self, words: list[str]) -> None:
        """Install reserved entries + `words` as the vocabulary: the lookup dict and the state arrays saving it.

        Checkpoints hold numeric arrays only, so the tokens are stored as their UTF-8 bytes, concatenated,
        with int64 offsets: token i is bytes[offsets[i]:offsets[i + 1]] (any character may occur in a token).
        """
        tokens = [*RESERVED[self.spec.output_mode], *words]
        encoded = [token.encode("utf-8") for token in tokens]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        self.add_state("vocabulary_bytes", np.frombuffer(b"".join(encoded), np.uint8).copy())
        self.add_state("vocabulary_offsets", offsets)
        self.tokens = tokens
        self.lookup = {token: index for index, token in enumerate(tokens)}
        self.oov_index = self.lookup[OOV]

    def get_vocabulary(self) -> list[str]:
        """The vocabulary by index, reserved entries first (Keras' get_vocabulary())."""
        return list(self.tokens)

    def load_state(self, saved: dict[str, np.ndarray]) -> None:
        """Take a checkpoint's vocabulary arrays, whose sizes follow the data adapted on; ValueError if unusable.

        restore_model calls this instead of copying into arrays of a fixed shape, which a vocabulary has not.
        """
        data, offsets = saved["vocabulary_bytes"], saved["vocabulary_offsets"]
        if data.dtype != np.uint8 or data.ndim != 1 or offsets.dtype != np.int64 or offsets.ndim != 1:
            raise ValueError(f"its vocabulary arrays have dtypes {data.dtype}/{offsets.dtype} and shapes "
                             f"{list(data.shape)}/{list(offsets.shape)}; expected 1-D uint8 bytes and int64 offsets")
        if len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(data) or np.any(np.diff(offsets) < 0):
            raise ValueError("its vocabulary offsets do not divide the vocabulary bytes into tokens")
        raw = data.tobytes()
        try:
            tokens = [raw[start:end].decode("utf-8") for start, end in zip(offsets[:-1], offsets[1:])]
        except UnicodeDecodeError as err:
            raise ValueError(f"its vocabulary is not valid UTF-8 ({err})") from None
        reserved = RESERVED[self.spec.output_mode]
        if tuple(tokens[:len(reserved)]) != reserved:
            raise ValueError(f"its vocabulary starts {tokens[:len(reserved)]}, but output_mode = "
                             f'"{self.spec.output_mode}" reserves {list(reserved)}')
        try:
            _check_vocabulary(tokens[len(reserved):], reserved, self.spec.max_tokens)
        except ValueError as err:
            raise ValueError(f"its saved {err}") from None
        self._set_vocabulary(tokens[len(reserved):])

    def parameter_counts(self) -> tuple[int, int]:
        """(0, 0): Keras counts no parameters for TextVectorization; its vocabulary is not a weight."""
        return 0, 0

    def standardized(self, texts: list[str]) -> list[str]:
        """The texts after `standardize`: ASCII letters lowercased and/or ASCII punctuation stripped (Keras)."""
        if self.spec.standardize == "none" or not texts:
            return texts
        joined = _SEPARATOR.join(texts)
        if joined.count(_SEPARATOR) != len(texts) - 1:  # a text holds the separator itself: one at a time
            return [self._standardized_one(text) for text in texts]
        return self._standardized_one(joined).split(_SEPARATOR)

    def _standardized_one(self, text: str) -> str:
        mode = self.spec.standardize
        if mode in ("lower", "lower_and_strip_punctuation"):
            text = lowercase_ascii(text)
        if mode in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = PUNCTUATION.sub("", text)
        return text

    def tokenize(self, texts: np.ndarray) -> list[list[str]]:
        """Each text's tokens, after standardization and splitting (an empty text has none)."""
        strings = self.standardized([str(text) for text in np.asarray(texts).reshape(-1).tolist()])
        if self.spec.split == "whitespace":
            return [_TOKEN.findall(text) for text in strings]
        return [[text] if text else [] for text in strings]

    def id_count(self) -> int | None:
        """How many ids int mode can make (they run from 0), known before adapting: a fixed vocabulary's size
        with the reserved entries, else max_tokens (which counts them, as Keras); None without either (adapting
        decides), or in the multi_hot and count modes, which make no ids."""
        if self.spec.output_mode != "int":
            return None
        if self.spec.vocabulary is not None:
            return len(RESERVED["int"]) + len(self.spec.vocabulary)
        return self.spec.max_tokens

    def check_table_fits(self, table: Layer) -> None:
        """SpecError naming both keys when this layer feeds `table` (an embedding or positional_embedding)
        directly and can make more ids than the table has rows (input_dim)."""
        count, rows = self.id_count(), table.spec.input_dim
        if count is None or count <= rows:
            return
        if self.spec.vocabulary is not None:
            why = (f"its vocabulary has {len(self.spec.vocabulary)} tokens after the padding and OOV entries "
                   f"(ids 0 and 1)")
            fix = f"shorten {self.key}.vocabulary"
        else:
            why = f"max_tokens = {count} counts the padding and OOV entries (ids 0 and 1), as in Keras"
            fix = f"{self.key}.max_tokens to at most {rows}"
        raise SpecError(f"{table.key}.input_dim: {table.spec.type} {table.name!r} has rows for ids "
                        f"0..{rows - 1} (input_dim = {rows}), but {self.key} (text_vectorization) can make ids up "
                        f"to {count - 1}: {why}; set {table.key}.input_dim to at least {count}, or {fix}")

    @property
    def needs_adapt(self) -> bool:
        """Whether training adapts it: only without a fixed `vocabulary` in the spec."""
        return self.spec.vocabulary is None

    def adapt(self, data: np.ndarray | Iterable[np.ndarray]) -> None:
        """Learn the vocabulary from training texts (one array, or its batches one by one): most frequent first,
        ties in reverse byte order (as Keras).

        A `vocabulary` given in the spec is fixed and is not re-learned.
        """
        if not self.needs_adapt:
            return
        counts: Counter[str] = Counter()
        for batch in [data] if isinstance(data, np.ndarray) else data:
            counts.update(chain.from_iterable(self.tokenize(batch)))
        for reserved in (MASK, OOV):  # Keras drops the reserved tokens from the counts
            counts.pop(reserved, None)
        # Keras sorts by (count, token bytes) ascending with np.lexsort and reverses: ties go reverse-alphabetical
        ranked = sorted(counts, key=lambda token: (counts[token], token.encode("utf-8")), reverse=True)
        if self.spec.max_tokens is not None:
            ranked = ranked[:self.spec.max_tokens - len(RESERVED[self.spec.output_mode])]
        self._set_vocabulary(ranked)

    def ids(self, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(token ids of every text, concatenated; the number of tokens of each text), unknown tokens as OOV."""
        tokens = self.tokenize(texts)
        lengths = np.fromiter(map(len, tokens), np.int64, count=len(tokens))
        flat = list(chain.from_iterable(tokens))
        ids = np.fromiter(map(self.lookup.get, flat, repeat(self.oov_index)), np.int64, count=len(flat))
        return ids, lengths

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        if x.dtype.kind not in "UO":
            raise SpecError(f"{self.key}: text_vectorization takes strings, found an input of dtype {x.dtype}; "
                            f"give the model input dtype = \"string\"")
        ids, lengths = self.ids(x.data)
        count = len(lengths)
        rows = np.repeat(np.arange(count), lengths)
        if self.spec.output_mode == "int":
            return Tensor(_padded_end(ids, lengths, self.spec.output_sequence_length))  # type: ignore[arg-type]
        out = np.zeros((count, self.spec.max_tokens), np.float32)  # type: ignore[arg-type]
        if self.spec.output_mode == "multi_hot":
            out[rows, ids] = 1.0
        else:
            np.add.at(out, (rows, ids), 1.0)  # repeated tokens must all count
        return Tensor(out)


def lowercase_ascii(text: str) -> str:
    """`text` with A-Z lowercased and every other character kept, as Keras' tf.strings.lower() does.

    Python's str.lower() would also change É, Σ (to σ or ς) and İ (to two characters); bytes.lower() changes
    ASCII letters only. surrogatepass lets a lone surrogate (from a surrogateescape'd file name) through unchanged.
    """
    return text.encode("utf-8", "surrogatepass").lower().decode("utf-8", "surrogatepass")


def _padded_end(ids: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """Ragged rows (concatenated `ids`, `lengths`) as an int64 (rows, width) array: cut at, or padded with 0 at,
    the end (Keras' output_sequence_length)."""
    kept = np.minimum(lengths, width)
    starts = np.cumsum(lengths) - lengths
    rows = np.repeat(np.arange(len(lengths)), kept)
    columns = np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept) - kept, kept)
    out = np.zeros((len(lengths), width), np.int64)
    out[rows, columns] = ids[np.repeat(starts, kept) + columns]
    return out
