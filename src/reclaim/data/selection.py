"""How a training job consumes a selection (``example_id, weight``; reclaim.select).

Weight modes (chosen per train step in params.yaml, recorded in the job spec and result):

- ``hard``: keep exactly the listed examples (weights must all be 1);
- ``repeat``: example i appears round(w_i) times per epoch (weights from resampling with
  replacement or OT potentials); a weight that rounds to 0 drops the example.
- ``loss``: every example with w_i > 0 is kept once and the batch loss is the weighted mean
  sum_i w_i n_i l_i / sum_i w_i n_i (n_i: the example's loss terms), so fractional weights
  count exactly and equal weights give the plain mean loss;
- ``sampler``: each epoch draws as many examples as are kept, with replacement, with
  probability proportional to w_i, from a generator seeded by the job's seed and the epoch.

``loss`` and ``sampler`` keep their weights beside the rows (:func:`apply_weighted`); the
train loop takes them through :class:`WeightedLoss` and :func:`sampled_order`.

The selection's ids must all exist in the training rows the job reads (the same data, the
same subsample): a stale or foreign selection is an error naming the file, never a silent
smaller run.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from reclaim.framings._base import Framing

WEIGHT_MODES = ("hard", "repeat", "loss", "sampler")
WEIGHTED_MODES = ("loss", "sampler")  # modes that keep weights beside the rows


def subsample(rows: list[dict[str, Any]], limit: int | None, seed: int) -> list[dict[str, Any]]:
    """A fixed seeded subset, the same for every training seed (variance comes from training)."""
    if limit is None or len(rows) <= limit:
        return rows
    idx = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in idx]


def apply(rows: list[dict[str, Any]], subset_path: str | Path, mode: str) -> list[dict[str, Any]]:
    """The training rows of a ``hard`` or ``repeat`` selection (see :func:`apply_weighted`)."""
    kept, weights = apply_weighted(rows, subset_path, mode)
    if weights is not None:
        raise ValueError(f"weight_mode {mode!r} keeps weights beside the rows: use apply_weighted")
    return kept


def apply_weighted(rows: list[dict[str, Any]], subset_path: str | Path,
                   mode: str) -> tuple[list[dict[str, Any]], list[float] | None]:
    """(rows, weights): weights is None for ``hard``/``repeat`` (applied to the rows), else
    one positive weight per kept row."""
    from reclaim.select._base import read_table

    if mode not in WEIGHT_MODES:
        raise ValueError(f"unknown weight_mode {mode!r} (known: {', '.join(WEIGHT_MODES)})")
    weights = read_table(subset_path, "weight")
    by_id = {r.get("example_id"): r for r in rows}
    unknown = [e for e in weights if e not in by_id]
    if unknown:
        raise ValueError(f"{subset_path}: {len(unknown)} of {len(weights)} example ids are not in the "
                         f"training data (first: {unknown[0]}); was it selected from other data?")
    bad = [e for e, w in weights.items() if not (w >= 0.0 and w < float("inf"))]
    if bad:
        raise ValueError(f"{subset_path}: weight {weights[bad[0]]} for {bad[0]}: weights must be finite and >= 0")
    out: list[dict[str, Any]] = []
    kept_w: list[float] = []
    for row in rows:  # keep the data's own order; the trainer shuffles with its seed
        w = weights.get(row.get("example_id"))
        if w is None:
            continue
        if mode in WEIGHTED_MODES:
            if w > 0.0:
                out.append(row)
                kept_w.append(float(w))
        elif mode == "hard":
            if w != 1.0:
                raise ValueError(f"{subset_path}: weight {w} for {row['example_id']} in hard mode "
                                 "(use weight_mode: repeat for weighted selections)")
            out.append(row)
        else:
            out.extend([row] * int(round(w)))
    if not out:
        raise ValueError(f"{subset_path}: the selection keeps no training example")
    return out, (kept_w if mode in WEIGHTED_MODES else None)


def sampled_order(weights: list[float], seed: int) -> list[int]:
    """One ``sampler`` epoch: len(weights) indices drawn with replacement, P(i) ∝ w_i."""
    import torch

    w = torch.tensor(weights, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(w, len(weights), replacement=True, generator=g).tolist()


class WeightedLoss:
    """The ``loss`` mode's training loss: the batch's weighted mean of per-term losses, the
    weights riding in the batch as ``sample_weight`` (set by the train loop's batcher)."""

    def __init__(self, framing: Framing) -> None:
        self.framing = framing

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        batch = dict(batch)
        weights = batch.pop("sample_weight")  # the framing sees the batch it collated
        losses, counts = self.framing.example_losses(model, batch)
        w = weights.to(losses.dtype) * counts.to(losses.dtype)
        return (w * losses).sum() / w.sum()

    def record(self) -> None:
        return None
