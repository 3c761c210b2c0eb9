"""How a training job consumes a selection (``example_id, weight``; reclaim.select).

Weight modes (chosen per train step in params.yaml, recorded in the job spec and result):

- ``hard``: keep exactly the listed examples (weights must all be 1);
- ``repeat``: example i appears round(w_i) times per epoch (weights from resampling with
  replacement or OT potentials); a weight that rounds to 0 drops the example.

The selection's ids must all exist in the training rows the job reads (the same data, the
same subsample): a stale or foreign selection is an error naming the file, never a silent
smaller run.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

WEIGHT_MODES = ("hard", "repeat")


def subsample(rows: list[dict[str, Any]], limit: int | None, seed: int) -> list[dict[str, Any]]:
    """A fixed seeded subset, the same for every training seed (variance comes from training)."""
    if limit is None or len(rows) <= limit:
        return rows
    idx = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in idx]


def apply(rows: list[dict[str, Any]], subset_path: str | Path, mode: str) -> list[dict[str, Any]]:
    from reclaim.select._base import read_table

    if mode not in WEIGHT_MODES:
        raise ValueError(f"unknown weight_mode {mode!r} (known: {', '.join(WEIGHT_MODES)})")
    weights = read_table(subset_path, "weight")
    by_id = {r.get("example_id"): r for r in rows}
    unknown = [e for e in weights if e not in by_id]
    if unknown:
        raise ValueError(f"{subset_path}: {len(unknown)} of {len(weights)} example ids are not in the "
                         f"training data (first: {unknown[0]}); was it selected from other data?")
    out: list[dict[str, Any]] = []
    for row in rows:  # keep the data's own order; the trainer shuffles with its seed
        w = weights.get(row.get("example_id"))
        if w is None:
            continue
        if mode == "hard":
            if w != 1.0:
                raise ValueError(f"{subset_path}: weight {w} for {row['example_id']} in hard mode "
                                 "(use weight_mode: repeat for weighted selections)")
            out.append(row)
        else:
            out.extend([row] * int(round(w)))
    if not out:
        raise ValueError(f"{subset_path}: the selection keeps no training example")
    return out
