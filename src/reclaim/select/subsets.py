"""Subsets derived from scores: the ``subset`` rule's math, separate from scoring so that
keep-hard, keep-easy, several budgets and several draws share one scoring job.

Kinds (``budget`` is the kept fraction of the pool, 0 < budget <= 1; k = round(budget * n),
at least 1):

- ``top`` / ``bottom``: the k highest / lowest scores (keep-hard / keep-easy for EL2N).
- ``offset``: skip the ``offset`` fraction of highest scores, then keep the next k (Data
  Diet's window that drops the hardest, often mislabelled, tail; Paul et al., arXiv
  2107.07075, Sec. 4).
- ``stratified``: ``top`` within each stratum (a row key such as ``label`` or ``source``),
  with the budget split in proportion to stratum size (largest remainders).
- ``sample``: k draws without replacement with probability proportional to exp(score), by
  Gumbel top-k (DSIR's resampling, Xie et al., arXiv 2302.03169, Sec. 3), with a seeded
  generator in canonical example order.
- ``selected``: every example with a positive score, for selectors whose selection size is
  their own output (TAROT's OTM, arXiv 2412.00420, Algorithm 2, scores 1 = selected); the
  budget is a cap (the k highest positive scores; 1 = no cap).

Ties break by example_id, so every kind is a pure function of (scores, params, seed).
The output is ``example_id, weight`` with weight 1 (hard subsets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("top", "bottom", "offset", "stratified", "sample", "selected")


@dataclass(frozen=True)
class SubsetParams:
    kind: str
    budget: float
    offset: float = 0.0
    stratify_by: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown subset kind {self.kind!r} (known: {', '.join(KINDS)})")
        if not isinstance(self.budget, (int, float)) or not 0 < self.budget <= 1:
            raise ValueError(f"budget must be a fraction in (0, 1], got {self.budget!r}")
        if not 0 <= self.offset < 1 or self.offset + self.budget > 1 + 1e-12:
            raise ValueError(f"offset must be in [0, 1) with offset + budget <= 1, got {self.offset!r}")
        if self.kind == "stratified" and not self.stratify_by:
            raise ValueError("a stratified subset needs stratify_by (a row key, e.g. label)")


def budget_count(budget: float, n: int) -> int:
    return max(1, min(n, int(round(budget * n))))


def _order_desc(ids: list[str], scores: np.ndarray) -> list[int]:
    """Indices by score descending, ties by example_id ascending; -inf (filtered) last."""
    return sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))


def select(ids: list[str], scores: list[float], p: SubsetParams, seed: int,
           strata: list[Any] | None = None) -> list[str]:
    """The kept example ids (sorted)."""
    if len(ids) != len(scores):
        raise ValueError(f"{len(ids)} ids but {len(scores)} scores")
    if not ids:
        raise ValueError("empty pool: nothing to select from")
    s = np.asarray(scores, dtype=np.float64)
    n = len(ids)
    k = budget_count(p.budget, n)
    if p.kind == "top":
        keep = _order_desc(ids, s)[:k]
    elif p.kind == "bottom":
        keep = sorted(range(n), key=lambda i: (s[i], ids[i]))[:k]
    elif p.kind == "offset":
        start = int(round(p.offset * n))
        keep = _order_desc(ids, s)[start:start + k]
    elif p.kind == "selected":
        keep = [i for i in _order_desc(ids, s) if s[i] > 0][:k]
        if not keep:
            raise ValueError("subset kind 'selected': no example has a positive score (the selector selected none)")
    elif p.kind == "stratified":
        if strata is None or len(strata) != n:
            raise ValueError(f"stratified subset needs a {p.stratify_by!r} value per example")
        keep = _stratified(ids, s, strata, k)
    else:  # sample
        order = sorted(range(n), key=lambda i: ids[i])  # canonical order for the draws
        g = np.random.default_rng([seed, 0x6D5E1]).gumbel(size=n)
        keys = np.full(n, -np.inf)
        for j, i in enumerate(order):
            keys[i] = s[i] + g[j]
        keep = _order_desc(ids, keys)[:k]
    kept = [ids[i] for i in keep if np.isfinite(s[i])]
    if not kept:
        raise ValueError("every example was filtered out (score -inf): nothing selected")
    return sorted(kept)


def _stratified(ids: list[str], s: np.ndarray, strata: list[Any], k: int) -> list[int]:
    groups: dict[str, list[int]] = {}
    for i, v in enumerate(strata):
        groups.setdefault(str(v), []).append(i)
    n = len(ids)
    quota = {g: k * len(ix) / n for g, ix in groups.items()}
    take = {g: int(q) for g, q in quota.items()}
    for g in sorted(groups, key=lambda g: (-(quota[g] - take[g]), g))[: k - sum(take.values())]:
        take[g] += 1
    out: list[int] = []
    for g, ix in sorted(groups.items()):
        out += sorted(ix, key=lambda i: (-s[i], ids[i]))[: take[g]]
    return out
