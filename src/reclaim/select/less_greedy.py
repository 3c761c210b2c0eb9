"""LESS-style greedy influence selection, TAROT's baseline (Xia, Malladi, Gururangan, Arora,
Chen; LESS, arXiv 2402.04333, Sec. 3: cosine similarity of (LoRA) gradients to the target's;
as "LESS/DSDM" in Feng et al., arXiv 2412.00420, Sec. 4): each candidate's score is the mean
cosine between its gradient and the target examples' gradients (unwhitened), and the top-k
are kept (``subset: top``). Because the mean over a multimodal target is dominated by its
largest mode, the top-k collapses onto that mode, the failure TAROT is built against.

Same features as ``tarot`` (reclaim.select._tarot.gradient_features), seeded the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.select import _tarot
from reclaim.select._base import ModelContext, Selector


@dataclass(frozen=True)
class LessGreedyParams(_tarot.GradParams):
    pass


class LessGreedySelector(Selector):
    Params = LessGreedyParams
    orientation = "high = larger mean gradient cosine to the target (keep top)"
    needs_target = True
    needs_labels = True
    needs_model = True
    seeded = True

    def score(self, pool: list[dict[str, Any]], target: list[dict[str, Any]] | None, params: LessGreedyParams,
              seed: int, model: ModelContext | None = None) -> list[float]:
        if model is None:
            raise ValueError("less_greedy scores with the arm's model (scale score_with); none was given")
        if not target:
            raise ValueError("less_greedy needs a target sample")
        gc, gt = _tarot.gradient_features(model, pool, target, params, seed, "less_greedy")
        return _tarot.less_scores(gc, gt).tolist()


SELECTOR = LessGreedySelector()
