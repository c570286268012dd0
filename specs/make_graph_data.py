"""Write the synthetic .npz files the graph specs train on (specs/data/), deterministically from a seed.

    python specs/make_graph_data.py [--out specs/data] [--seed 0] [--tickets 2000]

tickets_{train,test}.npz: multi-hot title and body words (10000) and tags (100); a priority in [0, 1] and
one of four departments, both determined by a few indicative words, so the model has something to learn.
halves_{train,test}.npz: two 16-wide halves of a noisy signal; its kind (3 classes) and level (a number).
reversal_{train,test}.npz: 6 digits one-hot (source), the same reversed (next, one label a step) and the
answer shifted right behind a start token 0 (target_in, one-hot): a decoder fed the answer so far
(teacher forcing) from the encoder's final states.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def tickets(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    """Multi-hot tickets whose department and priority follow from marker words."""
    department = rng.integers(0, 4, count)
    title = (rng.random((count, 10000)) < 0.0008).astype(np.float32)
    body = (rng.random((count, 10000)) < 0.002).astype(np.float32)
    tags = (rng.random((count, 100)) < 0.02).astype(np.float32)
    markers = rng.choice(10000, size=(4, 20), replace=False)  # 20 words typical of each department
    picks = markers[department[:, None], rng.integers(0, 20, (count, 3))]
    np.put_along_axis(body, picks, 1.0, axis=1)
    np.put_along_axis(title, picks[:, :1], 1.0, axis=1)
    urgent = rng.random(count) < 0.3
    tags[urgent, 0] = 1.0
    priority = np.clip(0.2 + 0.6 * urgent + rng.normal(0, 0.05, count), 0, 1).astype(np.float32)
    return {"title": title, "text_body": body, "tags": tags, "priority": priority[:, None],
            "department": np.eye(4, dtype=np.float32)[department]}


def halves(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    """Sine, square or ramp signals of random level and phase, cut into two halves."""
    kind = rng.integers(0, 3, count)
    level = rng.uniform(-1, 1, count).astype(np.float32)
    t = np.linspace(0, 2 * np.pi, 32)[None, :] + rng.uniform(0, 2 * np.pi, (count, 1))
    shapes = np.stack([np.sin(t), np.sign(np.sin(t)), (t % (2 * np.pi)) / np.pi - 1])
    signal = shapes[kind, np.arange(count)] + level[:, None] + rng.normal(0, 0.1, (count, 32))
    signal = signal.astype(np.float32)
    return {"left": signal[:, :16], "right": signal[:, 16:], "kind": kind, "level": level[:, None]}


def reversal(rng: np.random.Generator, count: int, steps: int = 6, vocabulary: int = 10) -> dict[str, np.ndarray]:
    """Digit sequences (1-9) to reverse; 0 starts the answer."""
    digits = rng.integers(1, vocabulary, (count, steps))
    answer = digits[:, ::-1]
    target_in = np.concatenate([np.zeros((count, 1), answer.dtype), answer[:, :-1]], axis=1)
    eye = np.eye(vocabulary, dtype=np.float32)
    return {"source": eye[digits], "target_in": eye[target_in], "next": answer.astype(np.int64)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tickets", type=int, default=2000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for name, make, count in (("tickets", tickets, args.tickets), ("halves", halves, 3000),
                              ("reversal", reversal, 10000)):
        arrays = make(rng, count)  # one draw, then split: train and test share the marker words
        cut = int(count * 0.8)
        for split, part in (("train", slice(0, cut)), ("test", slice(cut, count))):
            np.savez_compressed(args.out / f"{name}_{split}.npz", **{k: v[part] for k, v in arrays.items()})
            print(f"wrote {args.out / f'{name}_{split}.npz'} ({len(next(iter(arrays.values()))[part])} examples)")


if __name__ == "__main__":
    main()
