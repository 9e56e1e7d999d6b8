"""Random Cut Forest over shingles (Guha et al. 2016, "Robust Random Cut Forest Based Anomaly
Detection on Streams").

Points. A point is the shingle of the last `shingle` finite values. All `trees` trees hold the
same sample of at most `sample` shingles, a reservoir whose memory fades with age: shingle `n`
gets the rank `log(-log u_n) - n / memory` (`u_n` uniform in (0, 1)) and the sample keeps the
`sample` lowest ranks. That is a weighted reservoir (Efraimidis and Spirakis) with weights
`exp(n / memory)`: a shingle of age `a` stays with a probability that falls like
`exp(-a / memory)`, so the sample spans about `memory` shingles (default `10 * sample`, the
AWS library's default time decay) and covers several days of a daily cycle instead of the
last few hours. A new shingle that ranks below the highest rank in a full sample is inserted
and the highest is deleted; otherwise the trees do not change. `memory=0` ranks by age
alone: the sample is then the last `sample` shingles (a sliding window).

Trees. A node's bounding box is the smallest box holding the points below it. Inserting `p`
at a node with box `B`: take the box `B'` of `B` and `p`, draw a cut over `B'` (a dimension
with probability proportional to its range in `B'`, then a value uniform in that range); if
the cut separates `p` from `B`, a new node with that cut gets `p` as a new leaf and the old
subtree as its children, otherwise `p` follows the node's own cut down (no cut is drawn
where `p` is inside `B`: none could separate it). A point equal to a leaf's joins it (the
leaf's mass grows). Deleting a point removes its leaf (or lowers its mass) and splices the
sibling into the parent's place; masses and boxes are kept up to date on the path.

Score. The collusive displacement of `p` if it were inserted: on the path from its leaf to
the root, the largest `mass(sibling) / mass(node)`, with the masses counting `p` (an isolated
point of a tree of `n` points displaces up to `n`, a point inside a dense region about 1, a
copy of a leaf colludes with its copies). It is averaged over trees (`codisp`) and mapped to
`codisp / (codisp + scale * log2(sample))`: monotone, 0 for a point equal to one already
there (a constant series scores 0), 0.5 when the displacement is `scale` times the depth of
a balanced tree of the sample (8 for 256), below 1.

Randomness. Every random number of shingle `n` (its rank, and the cuts in tree `k`) comes
from a splitmix64 stream keyed by `(seed, n, k)`. `score_one` draws the very cuts that
`learn_one` inserts the point with, so the score is the point's displacement as learnt, and
`score_one` changes nothing. The whole random state is `seed` and the shingle count.

Level and scale. Cuts are drawn in proportion to box ranges and every dimension is the same
series, while the sample does not depend on values: adding a level or multiplying by a
positive factor moves every cut with the data, and the scores stay the same (up to rounding).

Warm-up: a point scores 0 until `warmup` shingles (default `sample`) have been learnt. NaN and
infinite values score 0 and are not learnt; timestamps are not used.

Speed. The trees are flat arrays (children, parent, cut dimension, mass: one row each; cut
value; box corners on one cache line per node when `shingle` is 2 or 4; a free list per
tree) worked on by compiled kernels, each of which loops over all trees itself, so a point
costs two kernel calls whatever the number of trees. `score_many` scores and learns a whole
batch in one compiled loop: it inserts each point and takes its displacement from the
insertion, which is exactly what `score_one` computes without inserting.

State. The sample's shingles and ranks (in heap order), and the trees by structure: per tree,
the cut dimension of each node in preorder (-1 for a leaf), the cut values of the inner nodes
and, for each shingle of the sample, the preorder number of its leaf. Boxes and masses are
recomputed on restore (a box is a min and max of points, so this is exact).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from mad.detect.detectors.registry import register

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_UNIT = 1.0 / 9007199254740992.0  # 2 ** -53
MEMORY_PER_SAMPLE = 10  # default memory: ten times the sample

# columns of the integer node table
_LEFT, _RIGHT, _PARENT, _DIM, _MASS = 0, 1, 2, 3, 4
_LEAF = -1
_NONE = -1


@njit(cache=True)
def _mix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _new_leaf(node: np.ndarray, box: np.ndarray, k: int, leaf: int, parent: int,
              p: np.ndarray) -> None:
    """Make node `leaf` of tree `k` a leaf holding point `p`, under `parent`."""
    node[k, _LEFT, leaf] = _NONE
    node[k, _RIGHT, leaf] = _NONE
    node[k, _PARENT, leaf] = parent
    node[k, _DIM, leaf] = _LEAF
    node[k, _MASS, leaf] = 1
    for d in range(len(p)):
        box[k, leaf, 0, d] = p[d]
        box[k, leaf, 1, d] = p[d]


@njit(cache=True)
def _insert(node: np.ndarray, cut: np.ndarray, box: np.ndarray, leaf_of: np.ndarray,
            free: np.ndarray, meta: np.ndarray, path: np.ndarray, p: np.ndarray, slot: int,
            base: np.uint64, commit: bool) -> float:
    """Total over trees of the displacement of `p` if inserted; inserts it as shingle `slot`
    if `commit`. Tree `k` draws its cuts from the stream keyed by `base` and `k`.
    `box[k, v, 0]` and `box[k, v, 1]` are the low and high corners of node `v` of tree `k`."""
    dims = p.shape[0]
    total_codisp = 0.0
    for k in range(node.shape[0]):
        rng = _mix(base + np.uint64(k + 1) * _MIX2)
        root = meta[k, 0]
        if root == _NONE:
            if commit:
                meta[k, 1] -= 1
                leaf = free[k, meta[k, 1]]
                _new_leaf(node, box, k, leaf, _NONE, p)
                meta[k, 0] = leaf
                leaf_of[k, slot] = leaf
            continue
        # descend until a cut separates p from a node's box, or p meets an equal leaf
        v = root
        depth = 0
        split = False
        cut_dim = 0
        cut_val = 0.0
        while True:
            path[depth] = v
            depth += 1
            total = 0.0
            outside = False
            for d in range(dims):
                a = box[k, v, 0, d]
                b = box[k, v, 1, d]
                outside |= (p[d] < a) | (p[d] > b)
                total += max(b, p[d]) - min(a, p[d])
            if outside:
                rng += _GOLDEN
                r = np.float64(_mix(rng) >> np.uint64(11)) * _UNIT * total
                acc = 0.0
                chosen = -1
                offset = 0.0
                for d in range(dims):
                    w = max(box[k, v, 1, d], p[d]) - min(box[k, v, 0, d], p[d])
                    if w > 0.0:
                        if r < acc + w:
                            chosen = d
                            offset = r - acc
                            break
                        chosen = d  # the last dimension with a range, if rounding runs past
                    acc += w
                a = min(box[k, v, 0, chosen], p[chosen])
                b = max(box[k, v, 1, chosen], p[chosen])
                c = a + offset
                if c >= b:
                    c = a
                if c < box[k, v, 0, chosen] or c >= box[k, v, 1, chosen]:
                    split = True
                    cut_dim = chosen
                    cut_val = c
                    break
            if node[k, _DIM, v] == _LEAF:
                break  # inside a leaf's box: equal to its point
            v = node[k, _LEFT + (p[node[k, _DIM, v]] > cut[k, v]), v]
        # collusive displacement, with the masses counting p
        best = float(node[k, _MASS, v]) if split else 0.0
        for i in range(depth - 1, 0, -1):
            here = path[i]
            up = path[i - 1]
            sib = node[k, _LEFT, up] + node[k, _RIGHT, up] - here
            ratio = float(node[k, _MASS, sib]) / float(node[k, _MASS, here] + 1)
            if ratio > best:
                best = ratio
        total_codisp += best
        if not commit:
            continue
        if not split:
            for i in range(depth):
                node[k, _MASS, path[i]] += 1
            leaf_of[k, slot] = v
            continue
        for i in range(depth - 1):
            u = path[i]
            node[k, _MASS, u] += 1
            for d in range(dims):
                box[k, u, 0, d] = min(box[k, u, 0, d], p[d])
                box[k, u, 1, d] = max(box[k, u, 1, d], p[d])
        meta[k, 1] -= 1
        leaf = free[k, meta[k, 1]]
        meta[k, 1] -= 1
        inner = free[k, meta[k, 1]]
        up = node[k, _PARENT, v]
        _new_leaf(node, box, k, leaf, inner, p)
        for d in range(dims):
            box[k, inner, 0, d] = min(box[k, v, 0, d], p[d])
            box[k, inner, 1, d] = max(box[k, v, 1, d], p[d])
        left_is_new = p[cut_dim] <= cut_val
        node[k, _LEFT, inner] = leaf if left_is_new else v
        node[k, _RIGHT, inner] = v if left_is_new else leaf
        node[k, _PARENT, inner] = up
        node[k, _DIM, inner] = cut_dim
        node[k, _MASS, inner] = node[k, _MASS, v] + 1
        cut[k, inner] = cut_val
        node[k, _PARENT, v] = inner
        if up == _NONE:
            meta[k, 0] = inner
        else:
            node[k, _LEFT + (node[k, _RIGHT, up] == v), up] = inner
        leaf_of[k, slot] = leaf
    return total_codisp


@njit(cache=True)
def _delete(node: np.ndarray, box: np.ndarray, leaf_of: np.ndarray, free: np.ndarray,
            meta: np.ndarray, slot: int, q: np.ndarray) -> None:
    """Remove shingle `slot`, the point `q`, from every tree."""
    dims = box.shape[3]
    for k in range(node.shape[0]):
        leaf = leaf_of[k, slot]
        v = leaf
        while v != _NONE:
            node[k, _MASS, v] -= 1
            v = node[k, _PARENT, v]
        if node[k, _MASS, leaf] > 0:
            continue  # a copy of the point is still there
        up = node[k, _PARENT, leaf]
        free[k, meta[k, 1]] = leaf
        meta[k, 1] += 1
        if up == _NONE:
            meta[k, 0] = _NONE
            continue
        sib = node[k, _LEFT, up] + node[k, _RIGHT, up] - leaf
        grand = node[k, _PARENT, up]
        free[k, meta[k, 1]] = up
        meta[k, 1] += 1
        node[k, _PARENT, sib] = grand
        if grand == _NONE:
            meta[k, 0] = sib
            continue
        node[k, _LEFT + (node[k, _RIGHT, grand] == up), grand] = sib
        v = grand
        while v != _NONE:
            # a box changes only if the removed point was on its boundary; once one does not
            # change, neither do the boxes above it
            edge = False
            for d in range(dims):
                edge |= (q[d] == box[k, v, 0, d]) | (q[d] == box[k, v, 1, d])
            if not edge:
                break
            left = node[k, _LEFT, v]
            right = node[k, _RIGHT, v]
            changed = False
            for d in range(dims):
                a = min(box[k, left, 0, d], box[k, right, 0, d])
                b = max(box[k, left, 1, d], box[k, right, 1, d])
                changed |= (a != box[k, v, 0, d]) | (b != box[k, v, 1, d])
                box[k, v, 0, d] = a
                box[k, v, 1, d] = b
            if not changed:
                break
            v = node[k, _PARENT, v]


@njit(cache=True)
def _run(xs: np.ndarray, commit: bool, node: np.ndarray, cut: np.ndarray, box: np.ndarray,
         leaf_of: np.ndarray, free: np.ndarray, meta: np.ndarray, points: np.ndarray,
         ranks: np.ndarray, heap: np.ndarray, ring: np.ndarray, counts: np.ndarray,
         warmup: int, memory: int, key: np.uint64, scale: float) -> np.ndarray:
    """Score each value of `xs` in turn; learn it too if `commit`.

    `counts` = (values learnt, shingles learnt, shingles in the sample, the spare slot);
    `ring` holds the latest values (value `i` at `i % len(ring)`). The sample's shingles are
    `points[slot]`, with their `ranks[slot]`; `heap` orders the slots in use as a max-heap
    of rank, so the shingle to evict is `heap[0]`."""
    trees = node.shape[0]
    dims = box.shape[3]
    cap = ring.shape[0]
    sample = heap.shape[0]
    out = np.zeros(xs.shape[0])
    path = np.empty(node.shape[2], dtype=np.int64)
    point = np.empty(dims)
    seen, learnt, size, spare = counts[0], counts[1], counts[2], counts[3]
    for i in range(xs.shape[0]):
        x = xs[i]
        if not np.isfinite(x):
            continue
        if seen >= dims - 1:
            for j in range(dims - 1):
                point[j] = ring[(seen - dims + 1 + j) % cap]
            point[dims - 1] = x
            base = _mix(key + np.uint64(learnt) * _GOLDEN)
            if memory > 0:
                u = (np.float64(_mix(base ^ _MIX1) >> np.uint64(11)) + 0.5) * _UNIT
                rank = math.log(-math.log(u)) - learnt / memory
            else:
                rank = -float(learnt)
            full = size == sample
            keep = not full or rank < ranks[heap[0]]
            slot = spare if full else size
            codisp = _insert(node, cut, box, leaf_of, free, meta, path, point, slot, base,
                             commit and keep) / trees
            if learnt >= warmup:
                out[i] = codisp / (codisp + scale)
            if commit:
                learnt += 1
                if keep:
                    points[slot] = point
                    ranks[slot] = rank
                    if full:
                        evict = heap[0]
                        _delete(node, box, leaf_of, free, meta, evict, points[evict])
                        spare = evict
                        pos = 0  # the new slot replaces the top and sinks
                        while True:
                            child = 2 * pos + 1
                            if child >= size:
                                break
                            if child + 1 < size and \
                                    ranks[heap[child + 1]] > ranks[heap[child]]:
                                child += 1
                            if ranks[heap[child]] <= rank:
                                break
                            heap[pos] = heap[child]
                            pos = child
                        heap[pos] = slot
                    else:
                        pos = size  # the new slot is appended and rises
                        while pos > 0 and ranks[heap[(pos - 1) // 2]] < rank:
                            heap[pos] = heap[(pos - 1) // 2]
                            pos = (pos - 1) // 2
                        heap[pos] = slot
                        size += 1
        if commit:
            ring[seen % cap] = x
            seen += 1
    if commit:
        counts[0], counts[1], counts[2], counts[3] = seen, learnt, size, spare
    return out


@njit(cache=True)
def _boxes(node: np.ndarray, box: np.ndarray, sizes: np.ndarray) -> None:
    """Masses and boxes of the inner nodes from their leaves, for trees numbered in preorder
    (tree `k` uses nodes `0 .. sizes[k] - 1`; children come after their parent)."""
    for k in range(node.shape[0]):
        for v in range(sizes[k] - 1, -1, -1):
            if node[k, _DIM, v] == _LEAF:
                continue
            left = node[k, _LEFT, v]
            right = node[k, _RIGHT, v]
            node[k, _MASS, v] = node[k, _MASS, left] + node[k, _MASS, right]
            for d in range(box.shape[3]):
                box[k, v, 0, d] = min(box[k, left, 0, d], box[k, right, 0, d])
                box[k, v, 1, d] = max(box[k, left, 1, d], box[k, right, 1, d])


def _aligned_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """Zeros whose data starts on a 64-byte cache line, so that a node's box (16 * shingle
    bytes) spans as few lines as its size allows."""
    size = int(np.prod(shape))
    raw = np.zeros(size + 8)
    start = (-raw.ctypes.data % 64) // 8
    return raw[start: start + size].reshape(shape)


class RandomCutForest:
    """Streaming Random Cut Forest over shingles, scored by collusive displacement."""

    name = "rcf"

    def __init__(self, shingle: int = 2, trees: int = 50, sample: int = 256,
                 memory: int | None = None, warmup: int | None = None, scale: float = 1.0,
                 seed: int = 7) -> None:
        if not 1 <= shingle <= 64:
            raise ValueError("shingle must be between 1 and 64")
        if not 1 <= trees <= 1000:
            raise ValueError("trees must be between 1 and 1000")
        if not 2 <= sample <= 65536:
            raise ValueError("sample must be between 2 and 65536")
        if memory is not None and memory < 0:
            raise ValueError("memory must be >= 0 (0: the last `sample` shingles)")
        if warmup is not None and warmup < 1:
            raise ValueError("warmup must be >= 1")
        if not (math.isfinite(scale) and scale > 0.0):
            raise ValueError("scale must be a positive number")
        if not 0 <= seed < 2**64:
            raise ValueError("seed must be between 0 and 2**64 - 1")
        self.shingle, self.trees, self.sample = shingle, trees, sample
        self.memory = MEMORY_PER_SAMPLE * sample if memory is None else memory
        self.warmup = sample if warmup is None else warmup
        self.scale, self.seed = scale, seed
        nodes = 2 * sample + 2
        self._node = np.full((trees, 5, nodes), _NONE, dtype=np.int32)
        self._node[:, _MASS] = 0
        self._cut = np.zeros((trees, nodes))
        self._box = _aligned_zeros((trees, nodes, 2, shingle))
        self._leaf_of = np.full((trees, sample + 1), _NONE, dtype=np.int64)
        self._free = np.tile(np.arange(nodes - 1, -1, -1, dtype=np.int64), (trees, 1))
        self._meta = np.empty((trees, 2), dtype=np.int64)
        self._meta[:, 0] = _NONE
        self._meta[:, 1] = nodes
        self._points = np.zeros((sample + 1, shingle))
        self._ranks = np.zeros(sample + 1)
        self._heap = np.zeros(sample, dtype=np.int64)
        self._ring = np.zeros(shingle)
        # values learnt, shingles learnt, shingles in the sample, the spare slot
        self._counts = np.array([0, 0, 0, sample], dtype=np.int64)
        self._key = np.uint64(_mix(np.uint64(seed)))
        self._scale = scale * math.log2(sample)

    def _call(self, xs: np.ndarray, commit: bool) -> np.ndarray:
        out: np.ndarray = _run(xs, commit, self._node, self._cut, self._box, self._leaf_of,
                               self._free, self._meta, self._points, self._ranks,
                               self._heap, self._ring, self._counts, self.warmup, self.memory,
                               self._key, self._scale)
        return out

    def score_one(self, x: float, t: float) -> float:
        return float(self._call(np.array([x], dtype=float), False)[0])

    def learn_one(self, x: float, t: float) -> None:
        self._call(np.array([x], dtype=float), True)

    def score_many(self, xs: np.ndarray, ts: np.ndarray) -> np.ndarray:
        return self._call(np.ascontiguousarray(xs, dtype=float), True)

    def state(self) -> dict[str, Any]:
        seen, learnt, size = (int(c) for c in self._counts[:3])
        keep = min(seen, self.shingle - 1)
        cap = len(self._ring)
        recent = [float(self._ring[i % cap]) for i in range(seen - keep, seen)]
        slots = self._heap[:size].tolist()  # the sample, in heap order
        forest = []
        for k in range(self.trees):
            left, right, dims = (self._node[k, f].tolist() for f in (_LEFT, _RIGHT, _DIM))
            cuts_k = self._cut[k].tolist()
            shape: list[int] = []
            cuts: list[float] = []
            number: dict[int, int] = {}
            stack = [int(self._meta[k, 0])] if self._meta[k, 0] != _NONE else []
            while stack:
                v = stack.pop()
                if dims[v] == _LEAF:
                    number[v] = len(number)
                    shape.append(_LEAF)
                else:
                    shape.append(dims[v])
                    cuts.append(cuts_k[v])
                    stack.append(right[v])
                    stack.append(left[v])
            leaf_of = self._leaf_of[k].tolist()
            forest.append([shape, cuts, [number[leaf_of[slot]] for slot in slots]])
        return {"name": self.name, "shingle": self.shingle, "trees": self.trees,
                "sample": self.sample, "memory": self.memory, "warmup": self.warmup,
                "scale": self.scale, "seed": self.seed, "seen": seen, "learnt": learnt,
                "recent": recent, "points": self._points[slots].tolist(),
                "ranks": self._ranks[slots].tolist(), "forest": forest}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> RandomCutForest:
        d = cls(int(s["shingle"]), int(s["trees"]), int(s["sample"]), int(s["memory"]),
                int(s["warmup"]), float(s["scale"]), int(s["seed"]))
        seen = int(s["seen"])
        recent = [float(x) for x in s["recent"]]
        cap = len(d._ring)
        for i, x in enumerate(recent):
            d._ring[(seen - len(recent) + i) % cap] = x
        size = len(s["ranks"])
        d._counts[:] = (seen, int(s["learnt"]), size, d.sample)
        points = np.asarray(s["points"], dtype=float).reshape(size, d.shingle)
        d._points[:size] = points
        d._ranks[:size] = np.asarray(s["ranks"], dtype=float)
        d._heap[:size] = np.arange(size)  # heap position i holds slot i
        nodes = d._node.shape[2]
        sizes = np.zeros(d.trees, dtype=np.int64)
        for k, (shape, cuts, leaves) in enumerate(s["forest"]):
            sizes[k] = len(shape)
            table = d._node[k]
            leaf_nodes: list[int] = []
            open_inner: list[int] = []
            c = 0
            for v, dim in enumerate(shape):
                if open_inner:
                    top = open_inner[-1]
                    if table[_LEFT, top] == _NONE:
                        table[_LEFT, top] = v
                    else:
                        table[_RIGHT, top] = v
                        open_inner.pop()
                    table[_PARENT, v] = top
                table[_DIM, v] = int(dim)
                if dim == _LEAF:
                    leaf_nodes.append(v)
                else:
                    d._cut[k, v] = float(cuts[c])
                    c += 1
                    open_inner.append(v)
            for slot, ordinal in enumerate(leaves):
                leaf = leaf_nodes[int(ordinal)]
                d._leaf_of[k, slot] = leaf
                table[_MASS, leaf] += 1
                d._box[k, leaf, 0] = points[slot]
                d._box[k, leaf, 1] = points[slot]
            d._meta[k, 0] = 0 if len(shape) else _NONE
            d._meta[k, 1] = nodes - len(shape)
            d._free[k, : nodes - len(shape)] = np.arange(nodes - 1, len(shape) - 1, -1)
        _boxes(d._node, d._box, sizes)
        return d


register("rcf", RandomCutForest)
