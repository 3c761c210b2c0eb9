"""Claim: fluctuation-based adaptive structured pruning (FLAP) loses far less perplexity than
structured Wanda (Wanda-sp) at the same share of removed structure, without retraining (An et
al., AAAI 2024, arXiv 2312.11983; FLAP README figure, WikiText-2 at seqlen 128, FLAP's and
LLM-Pruner's protocol: LLaMA-7B dense 12.62; 20% Wanda-sp 22.12, FLAP 14.62; 30% 38.88 /
17.62; 50% 366.43 / 31.80).

Verdicts (reclaim.claims._lm_compression), per ratio: FLAP below Wanda-sp in perplexity, and
the share of Wanda-sp's loss that FLAP avoids, g = (Wanda-sp - FLAP) / (Wanda-sp - dense) >=
0.25 (0.79 in the paper's 20% cells, shown beside ours), for each FLAP variant a scale runs.
magnitude-sp (calibration-free channel norms) is a reference row, not a paper row.

Two FLAP variants (reclaim.compress.flap, ``modules``):

- ``flap_*``: MLP channels only; ``sparsity`` is the share of MLP channels (= of MLP weights).
  Smoke runs this one.
- ``flap_am_*``: the paper's AL-AM, attention units ranked against MLP channels, each
  weighted by the weights it removes; ``sparsity`` is the share of attention + MLP weights.
  On a grouped-query-attention subject (SmolLM2-135M: 9 query heads share 3 KV heads) an
  attention unit is a whole KV group (3 query heads + their KV head), since FLAP's per-head
  removal assumes one KV head per query head (CASIA-IVA-Lab/FLAP#14); on Llama-2-7B (paper
  scale, multi-head) it is one head, as in the paper.

Wanda-sp prunes MLP channels only; every row's ``scope`` says what was removed. The plot is
perplexity against ``sparsity``, one line per method (the AL-AM arms as their own line), the
dense model as a line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclaim.claims._lm_compression import PerplexityClaim


class FLAPClaim(PerplexityClaim):
    def _plot(self, path: str | Path, claim_name: str, scale: str, rows: list[dict[str, Any]]) -> None:
        """MLP-only and AL-AM FLAP share the method name; the scope tells them apart (only
        MLP-only rows say attention was not pruned), so each gets its own line."""
        rows = [{**r, "method": "flap (AL-AM)"} if r["method"] == "flap" and "not pruned" not in r["scope"]
                else r for r in rows]
        super()._plot(path, claim_name, scale, rows)


AGGREGATOR = FLAPClaim({}, headline_rule="g20",
                       quantity="share of Wanda-sp's 20% structured-pruning perplexity gap that FLAP avoids",
                       x_axis="sparsity",
                       x_label="share of weights removed (MLP-only arms: of MLP weights; AL-AM: of attention + MLP)")
