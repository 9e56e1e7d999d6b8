"""Train the `srcnn` detector's network on synthetic series and write its weights.

    .venv/bin/python scripts/train_srcnn.py [--out src/mad/detect/detectors/srcnn.json]

Everything comes from one seed. The script generates normal series of several kinds (white
noise, autoregressive noise, daily-like and short cycles, random walks, trends, small counts),
injects anomalies into them (spikes and dips of 3 to 12 local standard deviations, level
shifts), and labels the point of each spike or dip and the first point of each shift. Every
point past the window becomes one example: the `sr` saliency features that `srcnn` computes
(mad.detect.detectors.srcnn.features), labelled 1 if the newest value is an injected anomaly.
Negatives are subsampled and weighted back. The network (two 1-D convolutions, one hidden
dense layer, a logistic output) is trained with Adam on the weighted cross-entropy, in numpy.
A held-out set of series, from the same generator, reports the ROC AUC of the network and of
the plain `sr` score.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from mad.detect.detectors.sr import saliency_map
from mad.detect.detectors.srcnn import WEIGHTS, features

SEED = 20190603
WINDOW = 256
SPAN, TAIL, Q, Z = 32, 5, 3, 21
KERNEL, C1, C2, HIDDEN = 5, 4, 8, 8
LEAK = 0.05  # slope of the leaky ReLU below 0: no layer has a flat region
SERIES, HELD_OUT, LENGTH = 240, 60, 1400
NEGATIVES_PER_POSITIVE = 12
EPOCHS, BATCH, LR = 12, 256, 2e-3


def normal_series(rng: np.random.Generator, n: int) -> np.ndarray:
    """One anomaly-free series of a random kind, level and scale."""
    kind = rng.integers(0, 7)
    e = rng.normal(size=n)
    t = np.arange(n)
    if kind == 0:
        x = e
    elif kind == 1:
        phi = rng.uniform(0.5, 0.97)
        x = np.zeros(n)
        for i in range(1, n):
            x[i] = phi * x[i - 1] + e[i]
    elif kind == 2:
        period = rng.choice([24, 96, 144, 288])
        x = rng.uniform(2, 8) * np.sin(2 * np.pi * t / period + rng.uniform(0, 6.3)) + e
    elif kind == 3:
        period = rng.integers(8, 60)
        x = rng.uniform(1, 5) * np.sin(2 * np.pi * t / period) + e
    elif kind == 4:
        x = np.cumsum(e) * rng.uniform(0.2, 1.0)
    elif kind == 5:
        x = rng.uniform(-0.02, 0.02) * t + e
    else:
        x = rng.poisson(rng.uniform(0.5, 6.0), n).astype(float)
    return rng.uniform(-100, 100) + rng.choice([0.01, 1.0, 50.0]) * x


def inject(rng: np.random.Generator, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A copy of `x` with anomalies past the window, and the labels of their points."""
    x = x.copy()
    n = len(x)
    labels = np.zeros(n, dtype=bool)
    scale = float(np.std(np.diff(x))) / math.sqrt(2.0) + 1e-9 * (1.0 + float(np.abs(x).max()))
    for _ in range(rng.integers(3, 10)):
        i = int(rng.integers(WINDOW + 10, n - 5))
        size = rng.uniform(3, 12) * scale * rng.choice([-1.0, 1.0])
        if rng.random() < 0.75:
            x[i] += size
        else:
            x[i:] += size * rng.uniform(0.7, 1.5)
        labels[i] = True
    return x, labels


def examples(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and plain `sr` ratios of every scored point of `count` series."""
    xs, ys, rs = [], [], []
    for _ in range(count):
        x, labels = inject(rng, normal_series(rng, LENGTH))
        rows = np.lib.stride_tricks.sliding_window_view(x, WINDOW)
        saliency = saliency_map(rows, TAIL, 1, Q, "last")
        feats, local = features(saliency, WINDOW, SPAN, Z)
        keep = local > 0.0
        ratio = saliency[:, WINDOW - 1] / np.where(keep, local, 1.0)
        xs.append(feats[keep])
        ys.append(labels[WINDOW - 1 :][keep])
        rs.append(ratio[keep])
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(rs)


def init(rng: np.random.Generator, length: int) -> dict[str, np.ndarray]:
    t2 = length - 2 * (KERNEL - 1)

    def he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)

    return {"w1": he((C1, KERNEL), KERNEL), "b1": np.zeros(C1),
            "w2": he((C2, C1, KERNEL), C1 * KERNEL), "b2": np.zeros(C2),
            "w3": he((HIDDEN, t2, C2), t2 * C2), "b3": np.zeros(HIDDEN),
            "w4": he((HIDDEN,), HIDDEN), "b4": np.zeros(1)}


def leaky(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0.0, z, LEAK * z)


def slope(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0.0, 1.0, LEAK)


def run(p: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Forward pass of a batch; returns probabilities and what the backward pass needs."""
    p1 = np.lib.stride_tricks.sliding_window_view(x, KERNEL, axis=1)  # (B, T1, K)
    z1 = p1 @ p["w1"].T + p["b1"]  # (B, T1, C1)
    a1 = leaky(z1)
    p2 = np.lib.stride_tricks.sliding_window_view(a1, KERNEL, axis=1)  # (B, T2, C1, K)
    b, t2 = p2.shape[0], p2.shape[1]
    p2f = p2.reshape(b, t2, C1 * KERNEL)
    z2 = p2f @ p["w2"].reshape(C2, C1 * KERNEL).T + p["b2"]  # (B, T2, C2)
    a2 = leaky(z2)
    flat = a2.reshape(b, t2 * C2)
    z3 = flat @ p["w3"].reshape(HIDDEN, t2 * C2).T + p["b3"]
    a3 = leaky(z3)
    logit = a3 @ p["w4"] + p["b4"][0]
    prob = 1.0 / (1.0 + np.exp(-logit))
    cache = {"p1": p1, "z1": z1, "p2f": p2f, "z2": z2, "flat": flat, "z3": z3, "a3": a3}
    return prob, cache


def gradients(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
              weight: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    prob, c = run(p, x)
    eps = 1e-12
    total = weight.sum()
    loss = float(-(weight * (y * np.log(prob + eps) + (1 - y) * np.log(1 - prob + eps))).sum()
                 / total)
    b, t2 = c["z2"].shape[0], c["z2"].shape[1]
    d_logit = (prob - y) * weight / total  # (B,)
    g: dict[str, np.ndarray] = {"w4": c["a3"].T @ d_logit, "b4": np.array([d_logit.sum()])}
    d3 = np.outer(d_logit, p["w4"]) * slope(c["z3"])  # (B, H)
    g["w3"] = (d3.T @ c["flat"]).reshape(p["w3"].shape)
    g["b3"] = d3.sum(axis=0)
    d_flat = d3 @ p["w3"].reshape(HIDDEN, t2 * C2)
    d2 = d_flat.reshape(b, t2, C2) * slope(c["z2"])
    g["w2"] = np.einsum("btc,btj->cj", d2, c["p2f"]).reshape(p["w2"].shape)
    g["b2"] = d2.sum(axis=(0, 1))
    d_p2 = (d2 @ p["w2"].reshape(C2, C1 * KERNEL)).reshape(b, t2, C1, KERNEL)
    d_a1 = np.zeros_like(c["z1"])
    for k in range(KERNEL):
        d_a1[:, k : k + t2, :] += d_p2[:, :, :, k]
    d1 = d_a1 * slope(c["z1"])
    g["w1"] = np.einsum("btc,btk->ck", d1, c["p1"])
    g["b1"] = d1.sum(axis=(0, 1))
    return loss, g


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    # average ranks of ties
    sorted_scores = scores[order]
    start = 0
    for end in range(1, len(scores) + 1):
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + 1 + end) / 2.0
            start = end
    pos = labels.sum()
    neg = len(labels) - pos
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def train(out: Path) -> None:
    rng = np.random.default_rng(SEED)
    x, y, _ = examples(rng, SERIES)
    pos = np.flatnonzero(y)
    neg = np.flatnonzero(~y)
    picked = rng.choice(neg, size=min(len(neg), NEGATIVES_PER_POSITIVE * len(pos)),
                        replace=False)
    idx = np.concatenate([pos, picked])
    xw, yw = x[idx], y[idx].astype(float)
    weight = np.where(yw > 0, 1.0, len(neg) / len(picked))
    weight *= len(weight) / weight.sum()
    print(f"{len(x)} points, {len(pos)} anomalies; training on {len(idx)}")
    params = init(rng, xw.shape[1])
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(val) for k, val in params.items()}
    step = 0
    for epoch in range(EPOCHS):
        order = rng.permutation(len(idx))
        losses = []
        lr = LR * (0.5 ** (epoch // 4))
        for lo in range(0, len(order), BATCH):
            bi = order[lo : lo + BATCH]
            loss, g = gradients(params, xw[bi], yw[bi], weight[bi])
            losses.append(loss)
            step += 1
            for k in params:
                m[k] = 0.9 * m[k] + 0.1 * g[k]
                v[k] = 0.999 * v[k] + 0.001 * g[k] ** 2
                mh = m[k] / (1 - 0.9**step)
                vh = v[k] / (1 - 0.999**step)
                params[k] -= lr * mh / (np.sqrt(vh) + 1e-8)
        print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}")
    hx, hy, hr = examples(np.random.default_rng(SEED + 1), HELD_OUT)
    prob, _ = run(params, hx)
    print(f"held out: {len(hx)} points, {int(hy.sum())} anomalies; ROC AUC srcnn "
          f"{roc_auc(prob, hy):.4f}, sr {roc_auc(hr, hy):.4f}")

    def rounded(a: np.ndarray) -> object:
        return np.vectorize(lambda f: float(f"{f:.6g}"), otypes=[object])(a).tolist()

    data = {"trained_by": "scripts/train_srcnn.py", "seed": SEED, "window": WINDOW,
            "features": {"span": SPAN, "tail": TAIL, "q": Q, "z": Z}, "leak": LEAK,
            "weights": {"w1": rounded(params["w1"]), "b1": rounded(params["b1"]),
                        "w2": rounded(params["w2"]), "b2": rounded(params["b2"]),
                        "w3": rounded(params["w3"]), "b3": rounded(params["b3"]),
                        "w4": rounded(params["w4"]), "b4": float(f"{params['b4'][0]:.6g}")}}
    out.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    train(parser.parse_args().out)


if __name__ == "__main__":
    main()
