"""KNN-Shapley: exact Shapley values of the K-nearest-neighbour classifier's utility (Jia et
al., "Efficient task-specific data valuation for nearest neighbor algorithms", VLDB 12(11),
2019, arXiv 1908.08619, Theorem 1), the fast variant of Data Shapley (Ghorbani & Zou, arXiv
1904.02868). High = valuable. O(n log n) per target point, on the arm's frozen encoder
features (z-scored with the pool's statistics); reclaim.select._valuation has the recursion.
Deterministic given the features (ties in distance are broken by canonical row order), so
one scoring job serves every seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.select import _frozen, _valuation
from reclaim.select._base import ModelContext, Selector


@dataclass(frozen=True)
class KnnShapleyParams(_frozen.EmbedParams):
    k: int = 5
    distance: str = "euclidean"   # or "cosine"

    def __post_init__(self) -> None:
        super().__post_init__()
        _frozen._require(_frozen._is_int(self.k) and self.k >= 1, f"k must be an integer >= 1, got {self.k!r}")
        _frozen._require(self.distance in ("euclidean", "cosine"),
                         f"distance must be 'euclidean' or 'cosine', got {self.distance!r}")


class KnnShapley(Selector):
    Params = KnnShapleyParams
    orientation = "high = valuable (exact KNN-Shapley value)"
    needs_target = True
    needs_labels = True
    needs_model = True
    seeded = False

    def score(self, pool: list[dict[str, Any]], target: list[dict[str, Any]] | None, params: KnnShapleyParams,
              seed: int, model: ModelContext | None = None) -> list[float]:
        if model is None or not target:
            raise ValueError("knn_shapley needs the arm's model and the pool's target sample")
        x, x_t = _valuation.features(model, pool, target, params, "knn_shapley")
        dist = _valuation.distances(x, x_t, params.distance)
        values = _valuation.knn_shapley(dist, _valuation.labels(pool, "pool"), _valuation.labels(target, "target"),
                                        params.k)
        return values.tolist()


SELECTOR = KnnShapley()
