"""Random selection, the baseline of every selection claim: each example gets a seeded
uniform score, drawn in canonical (``example_id``) order so the result depends only on the
seed and the pool's content, never on its row order or the number of processes."""

from __future__ import annotations

from typing import Any

import numpy as np

from reclaim.select._base import Selector


class RandomSelector(Selector):
    orientation = "uniform draw (no meaning)"

    def score(self, pool: list[dict[str, Any]], target: list[dict[str, Any]] | None, params: Any,
              seed: int) -> list[float]:
        return np.random.default_rng([seed, 0x5E1EC7]).random(len(pool)).tolist()


SELECTOR = RandomSelector()
