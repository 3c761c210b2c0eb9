"""GLUE metrics computed locally with scikit-learn and SciPy (the `evaluate` library fetches
metric scripts from the Hub and fails offline). Definitions follow the GLUE benchmark
(Wang et al., 2018): accuracy, binary F1 (MRPC, QQP), Matthews correlation (CoLA), Pearson
and Spearman correlation (STS-B, a regression task)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any


def accuracy(preds: Sequence[int], labels: Sequence[int]) -> float:
    from sklearn.metrics import accuracy_score

    _check(preds, labels)
    return float(accuracy_score(labels, preds))


def f1_binary(preds: Sequence[int], labels: Sequence[int], positive: int = 1) -> float:
    """F1 of the ``positive`` class; 0.0 when it is never predicted nor present."""
    from sklearn.metrics import f1_score

    _check(preds, labels)
    return float(f1_score(labels, preds, pos_label=positive, average="binary", zero_division=0.0))


def matthews_corrcoef(preds: Sequence[int], labels: Sequence[int]) -> float:
    """MCC; 0.0 when a marginal is empty (the sklearn convention)."""
    from sklearn.metrics import matthews_corrcoef as mcc

    _check(preds, labels)
    with warnings.catch_warnings():  # one class only: sklearn warns, then returns the 0.0 we want
        warnings.simplefilter("ignore", UserWarning)
        return float(mcc(labels, preds))


def pearson(preds: Sequence[float], labels: Sequence[float]) -> float:
    """Pearson r; 0.0 when either side is constant (undefined there; e.g. a regression head
    that collapsed to one value), like MCC with an empty marginal."""
    from scipy.stats import pearsonr

    return _correlation(pearsonr, preds, labels)


def spearman(preds: Sequence[float], labels: Sequence[float]) -> float:
    """Spearman rank correlation; 0.0 when either side is constant (see ``pearson``)."""
    from scipy.stats import spearmanr

    return _correlation(spearmanr, preds, labels)


METRICS = {"accuracy": accuracy, "f1": f1_binary, "mcc": matthews_corrcoef,
           "pearson": pearson, "spearman": spearman}


def compute(names: Sequence[str], preds: Sequence[float], labels: Sequence[float]) -> dict[str, float]:
    """Metrics in percent (correlations x 100), as GLUE tables report them."""
    return {name: 100.0 * METRICS[name](preds, labels) for name in names}


def _correlation(fn: Callable[..., Any], preds: Sequence[float], labels: Sequence[float]) -> float:
    _check(preds, labels)
    if len(preds) < 2 or len(set(preds)) < 2 or len(set(labels)) < 2:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = float(fn(preds, labels)[0])
    if not math.isfinite(r):
        raise ValueError(f"correlation is {r} (non-finite predictions?)")
    return r


def _check(preds: Sequence[float], labels: Sequence[float]) -> None:
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    if not labels:
        raise ValueError("no examples to score")
