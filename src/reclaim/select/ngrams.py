"""Hashed unigram + bigram count features, the representation DSIR (Xie et al., arXiv
2302.03169, Sec. 3: "hashed n-gram features") fits its bag-of-n-grams models in.

Text is lowercased and split into word / punctuation runs (the word-punct rule), and each
unigram and each adjacent-pair bigram ``"w1 w2"`` goes to bucket
``int(sha256(ngram)) mod B``, as the authors' ``data-selection`` package does (their paper
code used Python's ``hash()`` under a fixed PYTHONHASHSEED, which no other process can
reproduce). sha256 is slow in pure Python, so buckets are memoised per n-gram.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]+")


class NgramHasher:
    def __init__(self, buckets: int, ngram: int = 2) -> None:
        self.buckets, self.ngram = buckets, ngram
        self._cache: dict[str, int] = {}

    def _bucket(self, gram: str) -> int:
        b = self._cache.get(gram)
        if b is None:
            b = int(hashlib.sha256(gram.encode("utf-8")).hexdigest(), 16) % self.buckets
            self._cache[gram] = b
        return b

    def buckets_of(self, text: str) -> list[int]:
        words = _TOKEN.findall(text.lower())
        grams = list(words)
        for n in range(2, self.ngram + 1):
            grams += [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
        return [self._bucket(g) for g in grams]

    def counts(self, texts: Iterable[str]) -> np.ndarray:
        """Total bucket counts over ``texts`` (float64, length B)."""
        total = np.zeros(self.buckets, dtype=np.float64)
        for t in texts:
            np.add.at(total, self.buckets_of(t), 1.0)
        return total

    def matrix(self, texts: list[str]):  # -> scipy.sparse.csr_matrix
        """Per-text bucket counts as a sparse (n, B) matrix."""
        from scipy import sparse

        rows, cols = [], []
        for i, t in enumerate(texts):
            bs = self.buckets_of(t)
            rows.extend([i] * len(bs))
            cols.extend(bs)
        data = np.ones(len(rows), dtype=np.float64)
        m = sparse.csr_matrix((data, (rows, cols)), shape=(len(texts), self.buckets))
        m.sum_duplicates()
        return m


def distribution(counts: np.ndarray, smoothing: float) -> np.ndarray:
    """Normalised counts with an additive pseudo-count per bucket."""
    c = counts + smoothing
    total = c.sum()
    if total <= 0:
        raise ValueError("empty n-gram distribution (no tokens and no smoothing)")
    return c / total


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats over buckets where p > 0 (q must be positive there)."""
    mask = p > 0
    return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(q[mask]))))
