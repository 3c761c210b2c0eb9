"""Claim: activation-aware weight quantization beats round-to-nearest and GPTQ at low bits
(Lin et al., MLSys 2024, arXiv 2306.00978, Table 4: Llama-2-7B, group 128, WikiText-2 at
seqlen 2048: INT3 RTN 6.66, GPTQ 6.43, AWQ 6.24, FP16 5.47; INT4 5.73 / 5.69 / 5.60).

Verdicts (reclaim.claims._lm_compression): AWQ below RTN, GPTQ below RTN and AWQ below GPTQ
in perplexity at each bit width the scale runs, and the share of RTN's loss that AWQ recovers,
g = (RTN - AWQ) / (RTN - reference) >= 0.25 (the paper's Llama-2-7B INT3 value is 0.35 and is
shown beside ours; gap fractions transfer across model sizes, absolute perplexity does not).
At smoke the subject is SmolLM2-135M, whose linears sit on a Q4_1 grid: W3 at group 64 only.
"""

from __future__ import annotations

from reclaim.claims._lm_compression import PerplexityClaim

AGGREGATOR = PerplexityClaim({}, headline_rule="d3",
                             quantity="share of RTN's W3 perplexity gap that AWQ closes (gap fraction)")
