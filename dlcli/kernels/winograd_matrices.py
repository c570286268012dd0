"""The matrices of Winograd's F(m x m, 3x3) convolutions, as the entry lists winograd.py's kernels run.

F(2x2)'s B^T, G, A^T are the classic ones; cook_toom builds any F(m, 3) from interpolation points, and gives
Lavin and Gray's F(4x4) on 0, 1, -1, 2, -2. Each transform is kept two ways: kron(X, X) entries for tile_map
(one pass over the whole tile), and X itself, whose nonzeros winograd_separable runs in pairs (two passes).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# what an entry does to its target vector: the first one of a target sets it, the next ones add to it, and
# the last one of an output also adds the bias and applies the floor (0: a fused relu; -inf: none)
SET, ADD, ADD_BIAS_FLOOR = 0, 1, 2


class Entries(NamedTuple):
    """One transform as tile_map's entry list, sorted by target (its vector stays in cache)."""

    kind: np.ndarray
    source: np.ndarray
    target: np.ndarray
    coef: np.ndarray


def entries(matrix: np.ndarray, first: int = SET, last: int = ADD) -> Entries:
    """target[i] = sum over j of matrix[i, j] source[j] as entries: each target's first nonzero `first`, its
    last one `last` (when it has two or more), the others ADD."""
    target, source = np.nonzero(matrix)  # row-major: sorted by target, then source
    kind = np.full(len(target), ADD, np.int64)
    starts = np.r_[True, target[1:] != target[:-1]]
    ends = np.r_[target[1:] != target[:-1], True]
    kind[ends & ~starts] = last
    kind[starts] = first
    return Entries(kind, source.astype(np.int64), target.astype(np.int64), matrix[target, source])


class Pairs(NamedTuple):
    """One 1-D transform as winograd_separable's pairs of nonzeros: target[i] gets coef[i] source[i] +
    coef2[i] source2[i], set by its first pair (kind SET), added by the next (ADD)."""

    kind: np.ndarray
    target: np.ndarray
    source: np.ndarray
    coef: np.ndarray
    source2: np.ndarray
    coef2: np.ndarray


def pairs(matrix: np.ndarray) -> Pairs:
    """matrix's nonzeros two at a time, row by row; a row's odd one last, paired with itself at coefficient 0
    (the same number again, so no other cell's value enters the sum)."""
    kind, target, source, coef, source2, coef2 = [], [], [], [], [], []
    for i, row in enumerate(matrix):
        nonzero = list(np.flatnonzero(row))
        for p in range(0, len(nonzero), 2):
            j = nonzero[p]
            j2 = nonzero[p + 1] if p + 1 < len(nonzero) else j
            kind.append(SET if p == 0 else ADD)
            target.append(i)
            source.append(j)
            coef.append(row[j])
            source2.append(j2)
            coef2.append(row[j2] if j2 != j else 0.0)
    return Pairs(np.array(kind, np.int64), np.array(target, np.int64), np.array(source, np.int64),
                 np.array(coef), np.array(source2, np.int64), np.array(coef2))


def cook_toom(points: tuple[float, ...], m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B^T, G, A^T) of F(m, 3) on the interpolation points and infinity (Lavin and Gray's construction): A^T
    evaluates the product polynomial's m outputs, G the kernel polynomial at the points scaled by 1 / prod(a_j -
    a_l), and B^T (integers for integer points) is what makes A^T [(G g) * (B^T d)] the correlation of g and d,
    solved exactly from that identity."""
    alpha = m + 2
    a = np.asarray(points, np.float64)
    at = np.zeros((m, alpha))
    at[:, :-1] = a[None, :] ** np.arange(m)[:, None]
    at[-1, -1] = 1.0
    g = np.zeros((alpha, 3))
    scale = np.array([np.prod([p - q for q in a if q != p]) for p in a])
    g[:-1] = a[:, None] ** np.arange(3)[None, :] / scale[:, None]
    g[-1, -1] = 1.0
    # sum over j of AT[i, j] G[j, k] BT[j, l] = [l == i + k] for every output i, tap k and input cell l
    system = (at[:, None, :] * g.T[None, :, :]).reshape(m * 3, alpha)
    want = np.zeros((m, 3, alpha))
    for i in range(m):
        for k in range(3):
            want[i, k, i + k] = 1.0
    bt = np.linalg.lstsq(system, want.reshape(m * 3, alpha), rcond=None)[0]
    return np.round(bt, 9), g, at


class Transforms(NamedTuple):
    """F(m x m, 3x3): output tiles of m x m from input tiles of alpha = m + 2 on a side, alpha^2 planes."""

    m: int
    alpha: int
    bt: np.ndarray  # B^T (alpha, alpha)
    g: np.ndarray  # G (alpha, 3)
    at: np.ndarray  # A^T (m, alpha)
    g2: np.ndarray  # kron(G, G) (alpha^2, 9): the kernel's transform, one product a step
    into: Entries  # patch cell -> plane
    outof: Entries  # plane -> output cell (+ bias, floor)
    outof_adjoint: Entries  # output cell -> plane: the adjoint of outof
    into_adjoint: Entries  # plane -> patch cell, added: patches overlap


def transforms(bt: np.ndarray, g: np.ndarray, at: np.ndarray) -> Transforms:
    """The entry lists of one F(m x m, 3x3): kron(X, X) maps a tile's 2-D block, flattened row-major, through X
    on both sides: plane alpha a + b of B^T d B is kron(B^T, B^T)[alpha a + b] @ d.ravel()."""
    return Transforms(at.shape[0], bt.shape[0], bt, g, at, np.kron(g, g), entries(np.kron(bt, bt)),
                      entries(np.kron(at, at), last=ADD_BIAS_FLOOR), entries(np.kron(at, at).T),
                      entries(np.kron(bt, bt).T, first=ADD))


# F(2x2, 3x3): B^T (4x4), G (4x3), A^T (2x4); coefficients 0, 1, -1, 1/2
BT = np.array([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, -1.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
AT = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]])
# by output tile side m: F(2x2) above; F(4x4) on Lavin and Gray's points 0, 1, -1, 2, -2 (their matrices:
# B^T's entries up to 5, G's down to 1/24, A^T's up to 8); F(3x3) on 0, 1, -1, 1/2
TRANSFORMS = {2: transforms(BT, G, AT), 3: transforms(*cook_toom((0.0, 1.0, -1.0, 0.5), 3)),
              4: transforms(*cook_toom((0.0, 1.0, -1.0, 2.0, -2.0), 4))}
