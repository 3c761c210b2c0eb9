"""What a selection is, measured without training: KL reduction toward a held-out target
sample and the in-domain share, the mechanism checks of DSIR (Xie et al., arXiv 2302.03169,
Sec. 6, "KL reduction").

KL reduction of a selection S is ``KL(p_T || q_raw) - KL(p_T || q_S)`` in the hashed n-gram
space (reclaim.select.ngrams), where p_T is the held-out target's distribution and q_raw,
q_S are the pool's and the selection's. q gets a pseudo-count of ``smoothing`` per bucket
so the KL is finite; the paper does not state its smoothing, so this is our convention,
recorded in every result. ``precision`` is the share of selected examples whose source is
the hidden in-domain one, against its ``base_rate`` in the pool.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from reclaim.io import read_jsonl
from reclaim.select._base import read_table, row_text
from reclaim.select.ngrams import NgramHasher, distribution, kl


@dataclass(frozen=True)
class SelectionStatsParams:
    buckets: int = 10000
    ngram: int = 2
    smoothing: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.buckets, int) or self.buckets < 2:
            raise ValueError(f"buckets must be an integer >= 2, got {self.buckets!r}")
        if self.smoothing <= 0:
            raise ValueError(f"smoothing must be > 0, got {self.smoothing!r}")


class SelectionStats:
    Params = SelectionStatsParams
    inputs = ("subset", "pool", "heldout")

    def make_params(self, raw: dict[str, Any] | None) -> SelectionStatsParams:
        return SelectionStatsParams(**(raw or {}))

    def evaluate(self, inputs: dict[str, str], params: SelectionStatsParams,
                 in_domain: str | None = None) -> dict[str, Any]:
        pool = read_jsonl(inputs["pool"], ("example_id", "text", "source"))
        heldout = read_jsonl(inputs["heldout"], ("text",))
        kept = set(read_table(inputs["subset"], "weight"))
        unknown = kept - {r["example_id"] for r in pool}
        if unknown:
            raise ValueError(f"{inputs['subset']}: {len(unknown)} example ids are not in {inputs['pool']}")
        selected = [r for r in pool if r["example_id"] in kept]
        hasher = NgramHasher(params.buckets, params.ngram)
        p_t = distribution(hasher.counts(row_text(r) for r in heldout), 0.0)
        q_raw = distribution(hasher.counts(row_text(r) for r in pool), params.smoothing)
        q_sel = distribution(hasher.counts(row_text(r) for r in selected), params.smoothing)
        kl_raw, kl_sel = kl(p_t, q_raw), kl(p_t, q_sel)
        source = in_domain or heldout[0].get("source")
        n_in = sum(r["source"] == source for r in pool)
        hit = sum(r["source"] == source for r in selected)
        by_source: dict[str, int] = {}
        for r in selected:
            by_source[r["source"]] = by_source.get(r["source"], 0) + 1
        return {
            "kl_reduction": kl_raw - kl_sel, "kl_target_raw": kl_raw, "kl_target_selected": kl_sel,
            "precision": hit / len(selected), "base_rate": n_in / len(pool),
            "recall": hit / n_in if n_in else float("nan"),
            "n_selected": len(selected), "n_pool": len(pool), "n_heldout": len(heldout),
            "in_domain_source": source, "selected_by_source": by_source,
            "protocol": {"space": "hashed n-grams", **asdict(params)},
        }


EVALUATOR = SelectionStats()
