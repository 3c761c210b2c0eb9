"""DSIR: data selection by importance resampling (Xie, Santurkar, Ma, Liang, NeurIPS 2023,
arXiv 2302.03169, Sec. 3).

Fit two bag-of-hashed-n-gram models, gamma_T on the target sample and gamma_R on the raw
pool (reclaim.select.ngrams), and score every pool example by its log importance weight
``log w(x) = sum_j h_j(x) * (log(gamma_T,j + 1e-8) - log(gamma_R,j + 1e-8))``. The
resampling step (Gumbel top-k: keep the k largest ``log w + G``, G ~ Gumbel(0, 1), which
samples k without replacement with probability proportional to w) is the ``sample`` subset
of reclaim.select.subsets, drawn with a seeded generator in canonical example order, so the
selection does not depend on the number of processes (the authors' package draws from the
global NumPy RNG per shard; see ../shared/notes/data_selection.md, 1.3).

Written here rather than taken from the ``data-selection`` package: that package's
selection depends on ``num_proc``, it breaks with nltk >= 3.10, and it returns rows, not ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reclaim.select._base import Selector, row_text
from reclaim.select.ngrams import NgramHasher

EPS = 1e-8  # the paper's additive constant inside the logs


@dataclass(frozen=True)
class DsirParams:
    buckets: int = 10000       # hashed feature dimension B
    ngram: int = 2             # unigrams up to n-grams
    target_laplace: float = 0.0  # pseudo-count per bucket in gamma_T (GitHub master's option; 0: the paper)
    min_words: int = 0         # shorter examples are never selected (the package's min_example_length)

    def __post_init__(self) -> None:
        if not isinstance(self.buckets, int) or self.buckets < 2:
            raise ValueError(f"buckets must be an integer >= 2, got {self.buckets!r}")
        if self.ngram not in (1, 2, 3):
            raise ValueError(f"ngram must be 1, 2 or 3, got {self.ngram!r}")
        if self.target_laplace < 0:
            raise ValueError(f"target_laplace must be >= 0, got {self.target_laplace!r}")
        if self.min_words < 0:
            raise ValueError(f"min_words must be >= 0, got {self.min_words!r}")


class DsirSelector(Selector):
    Params = DsirParams
    orientation = "high = target-like (log importance weight)"
    needs_target = True
    seeded = False  # the weights are deterministic; the seed enters at resampling

    def log_weights(self, pool_texts: list[str], target_texts: list[str], p: DsirParams) -> np.ndarray:
        hasher = NgramHasher(p.buckets, p.ngram)
        target_counts = hasher.counts(target_texts) + p.target_laplace
        gamma_t = target_counts / target_counts.sum()
        feats = hasher.matrix(pool_texts)
        raw_counts = np.asarray(feats.sum(axis=0)).ravel()
        gamma_r = raw_counts / raw_counts.sum()
        log_ratio = np.log(gamma_t + EPS) - np.log(gamma_r + EPS)
        return np.asarray(feats @ log_ratio).ravel()

    def score(self, pool: list[dict[str, Any]], target: list[dict[str, Any]] | None, params: DsirParams,
              seed: int) -> list[float]:
        if not target:
            raise ValueError("dsir needs a non-empty target sample")
        texts = [row_text(r) for r in pool]
        logw = self.log_weights(texts, [row_text(r) for r in target], params)
        if params.min_words:
            short = np.array([len(t.split()) < params.min_words for t in texts])
            logw[short] = -np.inf
        return logw.tolist()


SELECTOR = DsirSelector()
