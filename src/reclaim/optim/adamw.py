"""AdamW (Loshchilov & Hutter, arXiv 1711.05101) through the adapter's own optimizer: the
default first-order step every fine-tuning claim has always trained with."""

from __future__ import annotations

from reclaim.optim._base import Strategy

STRATEGY = Strategy()
