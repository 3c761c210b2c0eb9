"""Self-supervised prototype distance (Sorscher, Geirhos, Shekhar, Ganguli, Morcos, NeurIPS
2022, arXiv 2206.14486, Sec. 6): embed every example with a pretrained model, cluster the
embeddings with k-means, and score an example by the cosine distance to its nearest cluster
centroid. No labels are used. High = far from every prototype = hard; the paper's rule keeps
easy examples (``subset: bottom``) when data is scarce and hard ones (``top``) when it is
abundant (Sec. 3).

The embedding is the arm's frozen encoder (``Framing.features``; the paper used SwAV for
ImageNet), L2-normalised so k-means clusters directions. scikit-learn's KMeans (Lloyd,
float64, ``n_init`` restarts from ``random_state=seed``) is deterministic for a given seed.
The cluster count is a param: the paper's value for this setting is not read (see
../shared/notes/data_selection.md, open item 4). Written from the paper's description; no
reference code is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reclaim.select import _frozen
from reclaim.select._base import ModelContext, Selector


@dataclass(frozen=True)
class PrototypeParams(_frozen.EmbedParams):
    clusters: int = 20
    seed: int = 0
    n_init: int = 10
    max_iter: int = 300

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("clusters", "n_init", "max_iter"):
            v = getattr(self, name)
            if not _frozen._is_int(v) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not _frozen._is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")


def prototype_distances(x: np.ndarray, p: PrototypeParams, threads: int | None = None) -> np.ndarray:
    """1 - max_j cos(x_i, c_j) over the k-means centroids c_j of the normalised rows of x."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    n = x.shape[0]
    if p.clusters > n:
        raise ValueError(f"clusters ({p.clusters}) must not exceed the pool size ({n})")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    u = x / np.where(norms > 0, norms, 1.0)
    with threadpool_limits(limits=threads or 1):
        km = KMeans(n_clusters=p.clusters, n_init=p.n_init, max_iter=p.max_iter, random_state=p.seed,
                    algorithm="lloyd").fit(u)
    c = km.cluster_centers_
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return 1.0 - (u @ c.T).max(axis=1)


class PrototypeSelector(Selector):
    Params = PrototypeParams
    orientation = "high = hard (cosine distance to the nearest k-means prototype)"
    needs_model = True
    seeded = False

    def score(self, pool: list[dict[str, Any]], target: list[dict[str, Any]] | None, params: PrototypeParams,
              seed: int, model: ModelContext | None = None) -> list[float]:
        if model is None:
            raise ValueError("prototypes scores with the arm's model; none was given")
        x = _frozen.embed(model, pool, params, "prototypes")
        return prototype_distances(x, params, model.threads).tolist()


SELECTOR = PrototypeSelector()
