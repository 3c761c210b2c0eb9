"""GLUE metrics computed locally (the `evaluate` library fetches metric scripts from the
Hub and fails offline). Definitions follow the GLUE benchmark (Wang et al., 2018)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def accuracy(preds: Sequence[int], labels: Sequence[int]) -> float:
    _check(preds, labels)
    return sum(int(p == y) for p, y in zip(preds, labels, strict=True)) / len(labels)


def f1_binary(preds: Sequence[int], labels: Sequence[int], positive: int = 1) -> float:
    _check(preds, labels)
    tp = sum(1 for p, y in zip(preds, labels, strict=True) if p == positive and y == positive)
    fp = sum(1 for p, y in zip(preds, labels, strict=True) if p == positive and y != positive)
    fn = sum(1 for p, y in zip(preds, labels, strict=True) if p != positive and y == positive)
    if tp == 0:
        return 0.0
    return 2 * tp / (2 * tp + fp + fn)


def matthews_corrcoef(preds: Sequence[int], labels: Sequence[int]) -> float:
    """Binary MCC; 0.0 when a marginal is empty (the sklearn convention)."""
    _check(preds, labels)
    tp = sum(1 for p, y in zip(preds, labels, strict=True) if p == 1 and y == 1)
    tn = sum(1 for p, y in zip(preds, labels, strict=True) if p == 0 and y == 0)
    fp = sum(1 for p, y in zip(preds, labels, strict=True) if p == 1 and y == 0)
    fn = sum(1 for p, y in zip(preds, labels, strict=True) if p == 0 and y == 1)
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denom == 0 else (tp * tn - fp * fn) / denom


METRICS = {"accuracy": accuracy, "f1": f1_binary, "mcc": matthews_corrcoef}


def compute(names: Sequence[str], preds: Sequence[int], labels: Sequence[int]) -> dict[str, float]:
    """Metrics in percent, as GLUE tables report them."""
    return {name: 100.0 * METRICS[name](preds, labels) for name in names}


def _check(preds: Sequence[int], labels: Sequence[int]) -> None:
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    if not labels:
        raise ValueError("no examples to score")
