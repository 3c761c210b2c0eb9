"""The heuristic-classifier filter DSIR compares against (the GPT-3 / The Pile / PaLM quality
filter; Xie et al., arXiv 2302.03169, Sec. 5 baselines): a logistic-regression classifier
on hashed n-gram features (the same featuriser as DSIR) trained to tell target examples
(label 1) from pool examples (label 0); an example's score is the log-odds of "target".

scikit-learn's LogisticRegression (lbfgs, L2, C from params) fits it; the fit is
deterministic, so the scores do not depend on the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reclaim.select._base import Selector, row_text
from reclaim.select.ngrams import NgramHasher


@dataclass(frozen=True)
class HeuristicParams:
    buckets: int = 10000
    ngram: int = 2
    C: float = 1.0         # inverse L2 strength
    max_iter: int = 1000

    def __post_init__(self) -> None:
        if not isinstance(self.buckets, int) or self.buckets < 2:
            raise ValueError(f"buckets must be an integer >= 2, got {self.buckets!r}")
        if self.ngram not in (1, 2, 3):
            raise ValueError(f"ngram must be 1, 2 or 3, got {self.ngram!r}")
        if not self.C > 0:
            raise ValueError(f"C must be > 0, got {self.C!r}")


class HeuristicClassifierSelector(Selector):
    Params = HeuristicParams
    orientation = "high = classified as target (log-odds)"
    needs_target = True
    seeded = False

    def score(self, pool: list[dict[str, Any]], target: list[dict[str, Any]] | None,
              params: HeuristicParams, seed: int) -> list[float]:
        from scipy import sparse
        from sklearn.linear_model import LogisticRegression

        if not target:
            raise ValueError("heuristic_classifier needs a non-empty target sample")
        hasher = NgramHasher(params.buckets, params.ngram)
        xp = hasher.matrix([row_text(r) for r in pool])
        xt = hasher.matrix([row_text(r) for r in target])

        def norm(m):  # type: ignore[no-untyped-def]
            # term frequencies, so long chunks are not "more target" by length alone
            s = np.asarray(m.sum(axis=1)).ravel()
            s[s == 0] = 1.0
            return sparse.diags(1.0 / s) @ m

        x = sparse.vstack([norm(xt), norm(xp)]).tocsr()
        y = np.r_[np.ones(xt.shape[0]), np.zeros(xp.shape[0])]
        clf = LogisticRegression(C=params.C, max_iter=params.max_iter, class_weight="balanced")
        clf.fit(x, y)
        return clf.decision_function(norm(xp)).tolist()


SELECTOR = HeuristicClassifierSelector()
