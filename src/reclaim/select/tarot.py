"""TAROT: targeted data selection via optimal transport (Feng, Nie, Liu, Alahi; ICML 2025,
arXiv 2412.00420, Sec. 3: whitened feature distance; Algorithm 1 fixed-size selection;
Algorithm 2 OT-distance minimisation, OTM). The math is in reclaim.select._tarot.

``mode: fixed`` scores every candidate by its place in Algorithm 1's order (high = selected
earlier), so ``subset: top`` at budget k is TAROT's fixed-size selection of k. ``mode: otm``
scores 1 for the candidates OTM selects and 0 for the others; the selection's size is
OTM's output, taken whole by ``subset: selected`` (its budget a cap). ``whiten: false`` is
the unwhitened ablation (cosine geometry on the raw gradients).

Seeded: the job seed draws the warm-up head's init and batch order (the paper's features
come from a trained model's checkpoints; different training runs give different features)
and OTM's target folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reclaim.select import _tarot
from reclaim.select._base import ModelContext, Selector

MODES = ("fixed", "otm")


@dataclass(frozen=True)
class TarotParams(_tarot.GradParams):
    whiten: bool = True
    mode: str = "fixed"            # fixed (Algorithm 1) | otm (Algorithm 2)
    ridge: float = 1e-5            # Sigma + ridge I before the Cholesky factor
    reg: float = 0.05              # Sinkhorn epsilon relative to the distances' std (_tarot.epsilon)
    sinkhorn_iters: int = 1000
    order_fraction: float = 0.25   # fixed: potentials order the layers up to this share of the pool
    elimination_step: float = 1.0  # fixed: 1 = one ranking by the layer's potentials (Algorithm 1); < 1: share dropped per recomputation
    folds: int = 10                # otm: K
    max_k: int = 100               # otm: the largest per-target neighbourhood tried

    def __post_init__(self) -> None:
        super().__post_init__()
        req = _tarot._require
        req(isinstance(self.whiten, bool), f"whiten must be true or false, got {self.whiten!r}")
        req(self.mode in MODES, f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        req(isinstance(self.ridge, (int, float)) and self.ridge > 0, f"ridge must be > 0, got {self.ridge!r}")
        req(isinstance(self.reg, (int, float)) and self.reg > 0, f"reg must be > 0, got {self.reg!r}")
        req(isinstance(self.sinkhorn_iters, int) and self.sinkhorn_iters >= 10,
            f"sinkhorn_iters must be an integer >= 10, got {self.sinkhorn_iters!r}")
        req(isinstance(self.order_fraction, (int, float)) and 0 < self.order_fraction <= 1,
            f"order_fraction must be in (0, 1], got {self.order_fraction!r}")
        req(isinstance(self.elimination_step, (int, float)) and 0 < self.elimination_step <= 1,
            f"elimination_step must be in (0, 1], got {self.elimination_step!r}")
        req(isinstance(self.folds, int) and self.folds >= 2, f"folds must be an integer >= 2, got {self.folds!r}")
        req(isinstance(self.max_k, int) and self.max_k >= 1, f"max_k must be an integer >= 1, got {self.max_k!r}")


def tarot_scores(gc: np.ndarray, gt: np.ndarray, p: TarotParams, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Scores (see the module docstring) and what the method measured on the way."""
    dist = _tarot.feature_distance(gc, gt, p.whiten, p.ridge)
    n = len(gc)
    if p.mode == "fixed":
        eps = _tarot.epsilon(dist, p.reg)
        order = _tarot.fixed_size_order(dist, eps, int(np.ceil(p.order_fraction * n)), p.sinkhorn_iters,
                                        p.elimination_step)
        scores = np.empty(n)
        scores[order] = n - np.arange(n, dtype=np.float64)
        return scores, {}
    sel, ks = _tarot.otm_select(dist, p.folds, _tarot.epsilon(dist, p.reg), p.max_k, np.random.default_rng([seed, 0x07A]),
                                p.sinkhorn_iters)
    return sel.astype(np.float64), {"ratio": float(sel.mean()), "k_per_fold": ks}


class TarotSelector(Selector):
    Params = TarotParams
    orientation = "fixed: high = earlier in TAROT's layered order; otm: 1 = selected by OTM, 0 = not"
    needs_target = True
    needs_labels = True
    needs_model = True
    seeded = True

    def score(self, pool: list[dict[str, Any]], target: list[dict[str, Any]] | None, params: TarotParams,
              seed: int, model: ModelContext | None = None) -> list[float]:
        if model is None:
            raise ValueError("tarot scores with the arm's model (scale score_with); none was given")
        if not target:
            raise ValueError("tarot needs a target sample")
        gc, gt = _tarot.gradient_features(model, pool, target, params, seed, "tarot")
        scores, info = tarot_scores(gc, gt, params, seed)
        if info:
            print(f"tarot otm: selected {int(scores.sum())} of {len(pool)} (ratio {info['ratio']:.4f}); "
                  f"k per fold {info['k_per_fold']}")
        return scores.tolist()


SELECTOR = TarotSelector()
