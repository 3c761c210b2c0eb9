"""A labelled pool with a known share of flipped labels, for data-valuation claims.

Data Shapley (Ghorbani & Zou, ICML 2019, arXiv 1904.02868, Sec. 4 "label noise") corrupts a
fraction of the training labels and asks whether the lowest-valued points are the corrupted
ones. This builder makes that pool from a GLUE classification task:

- ``pool``: ``pool_size`` rows drawn without replacement from the task's train split (in
  canonical ``example_id`` order, by a generator seeded with ``seed``); exactly
  ``round(flip_fraction * pool_size)`` of them get a different label (for k > 2 classes a
  uniformly drawn other class). Every row keeps its GLUE fields and carries ``label`` (the
  possibly flipped label the valuation sees), ``clean_label`` and ``flipped``;
- ``target``: ``target_size`` dev rows, the validation set the valuation's utility is
  measured on (clean labels);
- ``heldout``: the remaining dev rows (or ``heldout_size`` of them), on which the removal
  curves are measured, disjoint from the target.

Example ids are the GLUE rows' content hashes (computed from the clean row), so a flipped
row keeps the id of its source example.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FlippedLabelsParams:
    task: str = "sst2"
    pool_size: int = 300
    flip_fraction: float = 0.1
    target_size: int = 400
    heldout_size: int | None = None   # None: every dev row not in the target
    seed: int = 0

    def __post_init__(self) -> None:
        from reclaim.data.glue import TASKS

        if self.task not in TASKS:
            raise ValueError(f"task: unknown task {self.task!r} (known: {', '.join(TASKS)})")
        if TASKS[self.task].is_regression:
            raise ValueError(f"task: {self.task!r} is a regression task; flipped labels need classes")
        for name in ("pool_size", "target_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {v!r}")
        if self.heldout_size is not None and (isinstance(self.heldout_size, bool)
                                              or not isinstance(self.heldout_size, int) or self.heldout_size < 1):
            raise ValueError(f"heldout_size must be an integer >= 1 or null, got {self.heldout_size!r}")
        if not isinstance(self.flip_fraction, (int, float)) or not 0 <= self.flip_fraction < 1:
            raise ValueError(f"flip_fraction must be in [0, 1), got {self.flip_fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")


def build(p: FlippedLabelsParams, train: list[dict[str, Any]],
          dev: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """{pool, target, heldout} from the task's canonical train and dev rows."""
    from reclaim.data.glue import TASKS

    k = TASKS[p.task].num_labels
    train = sorted(train, key=lambda r: r["example_id"])
    dev = sorted(dev, key=lambda r: r["example_id"])
    if len(train) < p.pool_size:
        raise ValueError(f"pool_size {p.pool_size} exceeds the {len(train)} rows of {p.task}/train")
    need = p.target_size + (p.heldout_size or 1)
    if len(dev) < need:
        raise ValueError(f"{p.task}/dev has {len(dev)} rows, fewer than target_size + heldout_size = {need}")
    rng = np.random.default_rng([p.seed, 0xF11B])
    picked = np.sort(rng.choice(len(train), size=p.pool_size, replace=False))
    n_flip = round(p.flip_fraction * p.pool_size)
    flip = set(rng.choice(p.pool_size, size=n_flip, replace=False).tolist())
    shift = rng.integers(1, k, size=p.pool_size)  # an other class: (y + shift) mod k, shift in 1..k-1
    pool = []
    for j, i in enumerate(picked):
        row = dict(train[int(i)])
        y = int(row["label"])
        row.update(clean_label=y, flipped=j in flip, label=(y + int(shift[j])) % k if j in flip else y)
        pool.append(row)
    order = rng.permutation(len(dev))
    n_held = p.heldout_size if p.heldout_size is not None else len(dev) - p.target_size
    target = [dev[int(i)] for i in np.sort(order[:p.target_size])]
    heldout = [dev[int(i)] for i in np.sort(order[p.target_size:p.target_size + n_held])]
    return {"pool": pool, "target": target, "heldout": heldout}


class FlippedLabels:
    Params = FlippedLabelsParams
    outputs = ("pool", "target", "heldout")

    def glue_sources(self, p: FlippedLabelsParams) -> list[tuple[str, str]]:
        return [(p.task, "train"), (p.task, "dev")]

    def wikitext_splits(self, p: FlippedLabelsParams) -> list[str]:
        return []

    def build(self, p: FlippedLabelsParams, glue_rows: dict[str, list[dict[str, Any]]],
              wikitext: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
        return build(p, glue_rows[f"{p.task}/train"], glue_rows[f"{p.task}/dev"])


BUILDER = FlippedLabels()
