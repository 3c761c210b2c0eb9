"""Shared machinery of the model-based selectors (``el2n``, ``grand``, ``prototypes``): frozen
features of the arm's model and a linear softmax head trained on them.

Why a frozen encoder and a linear head: the papers score with the network being trained
(Data Diet, arXiv 2107.07075, Sec. 2: scores from a ResNet a few epochs into training,
averaged over independent runs). Re-training the whole encoder once per run would cost more
than the pruned training it is meant to save at smoke scale, so the "network" here is the
arm's pretrained encoder, frozen, topped by a linear softmax head trained for ``epochs``
epochs of minibatch SGD; the scores are the papers' formulas applied to that head. This is
a last-layer proxy, not the papers' protocol: the table says so.

A framing whose model is trained from scratch (``image_cls``) has no pretrained encoder to
freeze: it returns its own scoring networks' outputs (``Framing.train_for_scores``: per run
the whole CNN trained ``epochs`` epochs from a seeded init, the paper's protocol), and
``network_outputs`` hands them to EL2N and GraNd instead of the head's.

Features come from the framing (``Framing.features(model, batch)``: text framings mean-pool
the encoder; the image framing gives its penultimate activations), computed once per job
in float64 after a length-sorted, fixed-order pass. The head is plain NumPy float64 with a
generator seeded by ``(seed, run)``, so scores are a function of the data and params only,
on any CPU and any thread count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from reclaim.select._base import ModelContext


def _require(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class EmbedParams:
    """How the frozen features are computed."""

    max_length: int = 128       # tokens per example (the training job's default)
    embed_batch_size: int = 64

    def __post_init__(self) -> None:
        _require(_is_int(self.max_length) and self.max_length >= 8,
                 f"max_length must be an integer >= 8, got {self.max_length!r}")
        _require(_is_int(self.embed_batch_size) and self.embed_batch_size >= 1,
                 f"embed_batch_size must be an integer >= 1, got {self.embed_batch_size!r}")


@dataclass(frozen=True)
class HeadParams(EmbedParams):
    """The linear head whose outputs EL2N and GraNd are computed from."""

    epochs: int = 2             # the "early epoch" the scores are taken at; 0: at initialisation
    runs: int = 3               # independent heads averaged (Data Diet averages over runs)
    seed: int = 0               # run r draws init and batch order from default_rng([seed, r, ...])
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4  # Data Diet's CIFAR-10 recipe
    batch_size: int = 32
    standardize: bool = True    # z-score the features over the pool (lr then fits any encoder)

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(_is_int(self.epochs) and self.epochs >= 0,
                 f"epochs must be an integer >= 0 (0: scores at initialisation), got {self.epochs!r}")
        _require(_is_int(self.runs) and self.runs >= 1, f"runs must be an integer >= 1, got {self.runs!r}")
        _require(_is_int(self.seed) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        _require(isinstance(self.lr, (int, float)) and self.lr > 0, f"lr must be > 0, got {self.lr!r}")
        _require(isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1,
                 f"momentum must be in [0, 1), got {self.momentum!r}")
        _require(isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0,
                 f"weight_decay must be >= 0, got {self.weight_decay!r}")
        _require(_is_int(self.batch_size) and self.batch_size >= 1,
                 f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        _require(isinstance(self.standardize, bool), f"standardize must be true or false, got {self.standardize!r}")


# --- features --------------------------------------------------------------------------------


def embed(ctx: ModelContext, rows: list[dict[str, Any]], p: EmbedParams, desc: str) -> np.ndarray:
    """(n, d) float64 frozen features of ``rows`` (in the given order) from the arm's model."""
    import torch
    from tqdm.auto import tqdm

    from reclaim import framings
    from reclaim.data.tasks import get_task

    if ctx.threads:
        torch.set_num_threads(ctx.threads)
    task = get_task(ctx.task)
    framing = framings.get(ctx.identity["framing"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the framing may initialise a head we do not use
        model, tok = framing.load(ctx.location, task)
    model.eval()
    items = framing.encode(tok, task, rows, p.max_length)
    # length-sorted batches pad less; the order is a function of the data, so still fixed
    order = sorted(range(len(items)), key=lambda i: (len(items[i].get("input_ids", ())), i))
    out: list[np.ndarray] = [np.empty(0)] * len(items)
    bs = p.embed_batch_size
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), bs), desc=f"{desc}: embed {len(items)} examples",
                          mininterval=2.0):
            idx = order[start:start + bs]
            feats = framing.features(model, framing.collate(tok, [items[i] for i in idx]))
            for i, f in zip(idx, feats.double().cpu().numpy(), strict=True):
                out[i] = f
    return np.stack(out).astype(np.float64)


def labels_of(ctx: ModelContext, rows: list[dict[str, Any]]) -> tuple[np.ndarray, int]:
    """Integer class labels and the class count; a regression task has no classes to score."""
    from reclaim.data.tasks import get_task

    task = get_task(ctx.task)
    if task.is_regression:
        raise ValueError(f"task {ctx.task!r} is a regression task: EL2N and GraNd need class labels")
    y = np.array([int(r["label"]) for r in rows], dtype=np.int64)
    k = task.num_labels
    if len(y) and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels outside 0..{k - 1} in the {ctx.task} pool")
    return y, k


def standardized(h: np.ndarray) -> np.ndarray:
    """Features z-scored per dimension over the pool (constant dimensions left at 0)."""
    sd = h.std(axis=0)
    return (h - h.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


# --- the linear head ---------------------------------------------------------------------------


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def train_head(h: np.ndarray, y: np.ndarray, k: int, p: HeadParams, run: int) -> tuple[np.ndarray, np.ndarray]:
    """W (d, k), b (k) of a softmax head: PyTorch's nn.Linear init, then ``p.epochs`` epochs of
    minibatch SGD with momentum and L2 on the mean cross-entropy, all from one seeded generator."""
    rng = np.random.default_rng([p.seed, run, 0xDA7AD1E7])
    n, d = h.shape
    bound = 1.0 / math.sqrt(d)
    w = rng.uniform(-bound, bound, size=(d, k))
    b = rng.uniform(-bound, bound, size=k)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    for _ in range(p.epochs):
        order = rng.permutation(n)
        for s in range(0, n, p.batch_size):
            idx = order[s:s + p.batch_size]
            g = softmax(h[idx] @ w + b)
            g[np.arange(len(idx)), y[idx]] -= 1.0
            g /= len(idx)
            gw = h[idx].T @ g + p.weight_decay * w
            gb = g.sum(axis=0)
            vw = p.momentum * vw + gw
            vb = p.momentum * vb + gb
            w -= p.lr * vw
            b -= p.lr * vb
    return w, b


def head_probs(h: np.ndarray, y: np.ndarray, k: int, p: HeadParams, desc: str) -> np.ndarray:
    """(runs, n, k) softmax outputs of ``p.runs`` independently trained heads on the pool."""
    from tqdm.auto import tqdm

    probs = []
    for r in tqdm(range(p.runs), desc=f"{desc}: {p.runs} heads x {p.epochs} epochs", mininterval=2.0):
        w, b = train_head(h, y, k, p, r)
        probs.append(softmax(h @ w + b))
        acc = float((probs[-1].argmax(axis=1) == y).mean())
        print(f"{desc}: run {r} head accuracy on the pool after {p.epochs} epochs: {100 * acc:.1f}%")
    return np.stack(probs)


def error_norm(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """||softmax - onehot(y)||_2 per example, for probs of shape (..., n, k)."""
    err = probs.copy()
    err[..., np.arange(len(y)), y] -= 1.0
    return np.linalg.norm(err, axis=-1)


def network_outputs(ctx: ModelContext, pool: list[dict[str, Any]], p: HeadParams, desc: str,
                    grad_norms: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray] | None:
    """(probs (runs, n, k), per-example gradient norms (runs, n) or None, labels) from the
    framing's own scoring networks, when its model is trained from scratch (the image framing
    trains them as Data Diet does, arXiv 2107.07075 Sec. 2); None: score with the linear head
    on frozen features (the text encoders)."""
    import torch

    from reclaim import framings
    from reclaim.data.tasks import get_task

    framing = framings.get(ctx.identity["framing"])
    y, _ = labels_of(ctx, pool)
    if ctx.threads:
        torch.set_num_threads(ctx.threads)
    out = framing.train_for_scores(ctx.location, get_task(ctx.task), pool, p, desc, grad_norms)
    return None if out is None else (out.probs, out.grad_norms, y)


def head_inputs(ctx: ModelContext, pool: list[dict[str, Any]], p: HeadParams,
                desc: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(features the head sees, labels, class count) for a pool."""
    y, k = labels_of(ctx, pool)
    h = embed(ctx, pool, p, desc)
    return (standardized(h) if p.standardize else h), y, k
