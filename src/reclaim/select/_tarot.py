"""The math of TAROT (Feng, Nie, Liu, Alahi; ICML 2025, arXiv 2412.00420) and of its LESS-style
greedy baseline: gradient features, whitening, the whitened feature distance (WFD), the
fixed-size layering (Algorithm 1) and OT-distance minimisation (OTM, Algorithm 2).

Written here (about 200 lines) rather than installed: the authors' repository is not
packaged, imports wandb/seaborn at import time, keeps the whitening in float16 and pins CUDA
calls into the CPU path (../shared/notes/data_selection.md, Sec. 2.3). Sinkhorn is POT's
log-domain solver (``ot.sinkhorn`` / ``ot.sinkhorn2``, ``method="sinkhorn_log"``).

- **Features** (Sec. 3.1; the paper sums per-example gradients over checkpoints): the
  closed-form gradient of a linear softmax head on frozen encoder features,
  g = (softmax(W^T h + b) - e_y) (x) [h, 1], after a short seeded warm-up of the head on the
  candidates (reclaim.select._frozen.train_head). Labels are a row key (``joint_label`` in the
  multi-task pool), so one head covers every task of the mixture. No projection: at smoke
  the gradient has (d + 1) * C entries (a few thousand).
- **Whitening** (Sec. 3.2), float64: X = [G_cand; G_target] centred, Sigma = X^T X / n +
  ridge I = L L^T (Cholesky, unique with a positive diagonal, so no sign convention is
  needed), X <- X L^-T, rows L2-normalised. **WFD**: d_ij = sqrt(2 - 2 <x_i, y_j>).
  Unwhitened: the same on the raw gradients' unit vectors (cosine geometry, as LESS).
- **Fixed size** (Algorithm 1): for r = 1, 2, ... every target's r-th nearest candidate joins
  (one union "layer" per r); the last, partial layer is filled by the Sinkhorn dual potentials
  of OT(selection so far + layer, target). The potential f_i is dOT/da_i (up to a constant):
  adding mass at a low-f candidate lowers the OT distance, so the partial layer takes the
  **lowest** f. The reference code takes the largest, which favours points that raise OT;
  tests/test_tarot.py moves mass and checks the sign. Because the layers and each layer's
  potentials do not depend on the budget, the selector emits one ordering (layer, then f)
  whose top k is Algorithm 1's selection for every k; potentials order the layers up to
  ``order_fraction`` of the pool, later layers by distance to their nearest target. The
  potential is a first-order (marginal) criterion: one ranking by the full layer's potentials
  (Algorithm 1, the default) can drop a whole small mode when the layer is roughly balanced
  and the budget cuts deep into it (tests/test_tarot.py builds such a case);
  ``elimination_step < 1`` orders the layer by backward elimination instead, recomputing the
  potentials after each drop of that share of the survivors (our option, not the paper's).
- **OTM** (Algorithm 2): K folds of the target; per fold, grow k and take the union of the
  fold's targets' k nearest candidates while the OT distance to the other K - 1 folds keeps
  decreasing; the selection is the union over folds, so its size (the ratio) is an output.
- **LESS-style greedy** (Xia et al., arXiv 2402.04333, as TAROT's baseline): the mean cosine
  between a candidate's gradient and the targets' gradients, top-k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reclaim.select import _frozen
from reclaim.select._base import ModelContext


def _require(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


@dataclass(frozen=True)
class GradParams(_frozen.EmbedParams):
    """The gradient features: a linear head warmed up on the candidates' labels ``label_key``."""

    label_key: str = "joint_label"
    warmup_epochs: int = 1
    lr: float = 0.1
    batch_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(isinstance(self.label_key, str) and bool(self.label_key),
                 f"label_key must be a row key, got {self.label_key!r}")
        _require(_frozen._is_int(self.warmup_epochs) and self.warmup_epochs >= 0,
                 f"warmup_epochs must be an integer >= 0, got {self.warmup_epochs!r}")
        _require(isinstance(self.lr, (int, float)) and self.lr > 0, f"lr must be > 0, got {self.lr!r}")
        _require(_frozen._is_int(self.batch_size) and self.batch_size >= 1,
                 f"batch_size must be an integer >= 1, got {self.batch_size!r}")


# --- features --------------------------------------------------------------------------------


def row_labels(rows: list[dict[str, Any]], key: str, where: str) -> np.ndarray:
    bad = next((i for i, r in enumerate(rows) if not isinstance(r.get(key), int) or r[key] < 0), None)
    if bad is not None:
        raise ValueError(f"{where}: row {bad + 1} has no integer {key!r} label (a labeled pool, e.g. glue_mixture)")
    return np.array([r[key] for r in rows], dtype=np.int64)


def head_gradients(h: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-example gradient of the cross-entropy of softmax(h W + b) w.r.t. (W, b), flattened:
    (softmax - e_y) (x) [h, 1], shape (n, k * (d + 1))."""
    err = _frozen.softmax(h @ w + b)
    err[np.arange(len(y)), y] -= 1.0
    hb = np.hstack([h, np.ones((len(h), 1))])
    return (err[:, :, None] * hb[:, None, :]).reshape(len(h), -1)


def gradient_features(ctx: ModelContext, pool: list[dict[str, Any]], target: list[dict[str, Any]],
                      p: GradParams, seed: int, desc: str) -> tuple[np.ndarray, np.ndarray]:
    """(candidate gradients, target gradients) from one embedding pass over pool + target and a
    head warmed up ``p.warmup_epochs`` epochs on the candidates from ``default_rng([seed, 0, ...])``."""
    yc = row_labels(pool, p.label_key, "pool")
    yt = row_labels(target, p.label_key, "target")
    k = int(max(yc.max(), yt.max())) + 1
    h = _frozen.embed(ctx, pool + target, p, desc)
    mu, sd = h[: len(pool)].mean(axis=0), h[: len(pool)].std(axis=0)
    h = (h - mu) / np.where(sd > 0, sd, 1.0)  # z-scored by the candidates (lr then fits any encoder)
    hc, ht = h[: len(pool)], h[len(pool):]
    hp = _frozen.HeadParams(epochs=p.warmup_epochs, runs=1, seed=seed, lr=p.lr, batch_size=p.batch_size)
    w, b = _frozen.train_head(hc, yc, k, hp, run=0)
    acc = float((_frozen.softmax(ht @ w + b).argmax(axis=1) == yt).mean())
    print(f"{desc}: warm-up head ({p.warmup_epochs} epochs, {k} classes) target accuracy {100 * acc:.1f}%")
    return head_gradients(hc, yc, w, b), head_gradients(ht, yt, w, b)


# --- geometry ----------------------------------------------------------------------------------


def unit_rows(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def whiten(x: np.ndarray, ridge: float = 1e-5) -> np.ndarray:
    """Rows of x centred and whitened (covariance -> identity, up to the ridge), float64."""
    from scipy.linalg import solve_triangular

    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(axis=0)
    cov = xc.T @ xc / len(xc) + ridge * np.eye(x.shape[1])
    chol = np.linalg.cholesky(cov)
    return solve_triangular(chol, xc.T, lower=True).T


def feature_distance(gc: np.ndarray, gt: np.ndarray, whitened: bool, ridge: float = 1e-5) -> np.ndarray:
    """(n_cand, n_target) WFD (``whitened``) or the unwhitened cosine-geometry distance."""
    x = np.vstack([gc, gt])
    z = unit_rows(whiten(x, ridge) if whitened else x)
    zc, zt = z[: len(gc)], z[len(gc):]
    return np.sqrt(np.clip(2.0 - 2.0 * zc @ zt.T, 0.0, None))


# --- optimal transport -------------------------------------------------------------------------


STOP_THR = 1e-6  # Sinkhorn stops when the marginal violation falls below this


def ot_distance(cost: np.ndarray, eps: float, iters: int = 2000) -> float:
    """Entropic OT cost <T, M> between uniform measures on the rows and columns of ``cost``
    (``eps`` in the cost's units)."""
    import ot

    n, m = cost.shape
    return float(ot.sinkhorn2(np.full(n, 1 / n), np.full(m, 1 / m), cost, eps, method="sinkhorn_log",
                              numItermax=iters, stopThr=STOP_THR, warn=False))


def potentials(cost: np.ndarray, eps: float, iters: int = 2000,
               a: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sinkhorn dual potentials (f on rows, g on columns), f = eps * log u, centred so that
    <a, f> = 0; f_i is dOT/da_i up to a constant."""
    import ot

    n, m = cost.shape
    a = np.full(n, 1 / n) if a is None else a
    _, log = ot.sinkhorn(a, np.full(m, 1 / m), cost, eps, method="sinkhorn_log", numItermax=iters,
                         stopThr=STOP_THR, log=True, warn=False)
    f, g = eps * np.asarray(log["log_u"]), eps * np.asarray(log["log_v"])
    shift = float(a @ f)
    return f - shift, g + shift


def epsilon(dist: np.ndarray, reg: float) -> float:
    """Sinkhorn's epsilon as ``reg`` times the distance matrix's standard deviation: the plan
    depends on cost / eps and not on a constant shift, so the same ``reg`` blurs whitened and
    unwhitened geometries alike (unwhitened cosine distances bunch near sqrt(2), and a fixed
    eps would blur their potentials into the mean distance, i.e. into LESS's score)."""
    sd = float(dist.std())
    return reg * (sd if sd > 0 else 1.0)


def eliminate(dist: np.ndarray, kept: np.ndarray, layer: np.ndarray, eps: float, step: float,
              iters: int = 2000) -> np.ndarray:
    """``layer`` ordered best first by backward elimination: with the ``kept`` candidates and
    the layer's survivors against the target, drop the ``step`` share (at least one) of the
    survivors with the highest potential (the mass that raises OT most), recompute, repeat.
    ``step = 1`` is a single ranking by the full layer's potentials."""
    alive = [int(i) for i in layer]
    dropped: list[int] = []
    while len(alive) > 1:
        f, _ = potentials(dist[np.concatenate([kept, np.array(alive, dtype=np.int64)])], eps, iters)
        fl = f[len(kept):]
        worst_first = sorted(range(len(alive)), key=lambda i: (-fl[i], -alive[i]))
        cut = len(alive) - 1 if step >= 1 else max(1, int(np.ceil(step * len(alive))))
        gone = set(worst_first[:cut])
        dropped += [alive[i] for i in worst_first[:cut]]
        alive = [a for i, a in enumerate(alive) if i not in gone]
    return np.array(alive + dropped[::-1], dtype=np.int64)


def fixed_size_order(dist: np.ndarray, eps: float, order_count: int, iters: int = 2000,
                     step: float = 1.0) -> np.ndarray:
    """Candidate indices in Algorithm 1's order: layer by layer (r-th nearest candidates of the
    targets), within a layer by Sinkhorn potentials (``eliminate``; up to ``order_count``
    candidates, then by distance to the nearest target); ties by index. The top k is the
    fixed-size-k selection."""
    n = dist.shape[0]
    ranks = np.argsort(dist, axis=0, kind="stable")  # ranks[r, j]: target j's r-th nearest candidate
    nearest = dist.min(axis=1)
    taken = np.zeros(n, dtype=bool)
    order: list[int] = []
    for r in range(n):
        new = np.unique(ranks[r][~taken[ranks[r]]])
        if not len(new):
            continue
        if len(order) < order_count and len(new) > 1:
            order += [int(i) for i in eliminate(dist, np.array(order, dtype=np.int64), new, eps, step, iters)]
        else:
            order += [int(new[i]) for i in np.lexsort((new, nearest[new]))]
        taken[new] = True
        if len(order) == n:
            break
    return np.array(order, dtype=np.int64)


def otm_select(dist: np.ndarray, folds: int, eps: float, max_k: int, rng: np.random.Generator,
               iters: int = 2000) -> tuple[np.ndarray, list[int]]:
    """OTM: a boolean selection over candidates and the k chosen per fold."""
    n, m = dist.shape
    if m < 2 or folds < 2:
        raise ValueError(f"OTM needs at least 2 targets and 2 folds (got {m} targets, {folds} folds)")
    parts = np.array_split(rng.permutation(m), min(folds, m))
    ranks = np.argsort(dist, axis=0, kind="stable")
    selected = np.zeros(n, dtype=bool)
    chosen: list[int] = []
    for part in parts:
        rest = np.setdiff1d(np.arange(m), part)
        best, prev, k_best = None, np.inf, 0
        for k in range(1, min(max_k, n) + 1):
            cand = np.unique(ranks[:k, part].ravel())
            d = ot_distance(dist[np.ix_(cand, rest)], eps, iters)
            if d >= prev:
                break
            best, prev, k_best = cand, d, k
        selected[best] = True
        chosen.append(k_best)
    return selected, chosen


def less_scores(gc: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """LESS-style greedy influence: mean cosine between each candidate's and the targets' gradients."""
    return unit_rows(gc) @ unit_rows(gt).mean(axis=0)
