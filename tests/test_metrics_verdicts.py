from __future__ import annotations

import math
import random

import pytest

from reclaim import metrics
from reclaim.verdicts import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    binomial_se,
    smooth,
    steps_to_reach,
    threshold_verdict,
)


def test_glue_metrics_against_hand_computed_values() -> None:
    preds, labels = [1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0]
    assert metrics.accuracy(preds, labels) == pytest.approx(4 / 6)
    assert metrics.f1_binary(preds, labels) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # tp=2 tn=2 fp=1 fn=1: (4 - 1) / sqrt(3 * 3 * 3 * 3)
    assert metrics.matthews_corrcoef(preds, labels) == pytest.approx(3 / 9)
    assert metrics.matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0
    with pytest.raises(ValueError):
        metrics.accuracy([1], [1, 0])


# The hand-written metrics reclaim used before scikit-learn, kept as the reference the library
# versions must match exactly (published results must not move).
def _old_accuracy(p: list[int], y: list[int]) -> float:
    return sum(int(a == b) for a, b in zip(p, y, strict=True)) / len(y)


def _old_f1(p: list[int], y: list[int]) -> float:
    tp = sum(1 for a, b in zip(p, y, strict=True) if a == 1 and b == 1)
    fp = sum(1 for a, b in zip(p, y, strict=True) if a == 1 and b != 1)
    fn = sum(1 for a, b in zip(p, y, strict=True) if a != 1 and b == 1)
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _old_mcc(p: list[int], y: list[int]) -> float:
    tp = sum(1 for a, b in zip(p, y, strict=True) if a == 1 and b == 1)
    tn = sum(1 for a, b in zip(p, y, strict=True) if a == 0 and b == 0)
    fp = sum(1 for a, b in zip(p, y, strict=True) if a == 1 and b == 0)
    fn = sum(1 for a, b in zip(p, y, strict=True) if a == 0 and b == 1)
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denom == 0 else (tp * tn - fp * fn) / denom


def test_library_metrics_equal_the_former_hand_written_ones() -> None:
    rng = random.Random(0)
    cases = [([1], [1]), ([0], [1]), ([0, 0, 0], [0, 0, 0]), ([1, 1, 1], [1, 0, 1]),
             ([0, 0], [1, 1])]
    for _ in range(150):
        n = rng.choice([2, 3, 10, 408, 872, 1043])  # MRPC, SST-2, CoLA dev sizes
        y = [int(rng.random() < 0.7) for _ in range(n)]
        agree = rng.random()
        p = [t if rng.random() < agree else 1 - t for t in y]
        cases.append((p, y) if rng.random() > 0.05 else ([rng.randrange(2)] * n, y))
    for p, y in cases:
        assert metrics.accuracy(p, y) == _old_accuracy(p, y)
        assert metrics.f1_binary(p, y) == _old_f1(p, y)
        assert metrics.matthews_corrcoef(p, y) == _old_mcc(p, y)
        old = {"accuracy": _old_accuracy(p, y), "f1": _old_f1(p, y), "mcc": _old_mcc(p, y)}
        assert metrics.compute(("accuracy", "f1", "mcc"), p, y) == {k: 100.0 * v for k, v in old.items()}


def test_correlation_metrics() -> None:
    preds, labels = [1.0, 2.0, 3.0, 4.0], [1.5, 1.0, 3.5, 5.0]
    # Pearson by hand: centred dot product over the product of norms
    mp, ml = sum(preds) / 4, sum(labels) / 4
    cov = sum((a - mp) * (b - ml) for a, b in zip(preds, labels, strict=True))
    norm = math.sqrt(sum((a - mp) ** 2 for a in preds) * sum((b - ml) ** 2 for b in labels))
    assert metrics.pearson(preds, labels) == pytest.approx(cov / norm)
    # Spearman: Pearson of the ranks (1, 2, 3, 4) vs (2, 1, 3, 4) = 1 - 6 * 2 / (4 * 15)
    assert metrics.spearman(preds, labels) == pytest.approx(0.8)
    assert metrics.spearman([3.0, 1.0, 2.0], [30.0, 10.0, 20.0]) == pytest.approx(1.0)
    out = metrics.compute(("pearson", "spearman"), preds, labels)
    assert out == {"pearson": pytest.approx(100 * cov / norm), "spearman": pytest.approx(80.0)}
    # a collapsed regression head (constant output): undefined, scored 0 like MCC's convention
    assert metrics.pearson([2.5, 2.5, 2.5], [1.0, 2.0, 3.0]) == 0.0
    assert metrics.spearman([2.5, 2.5, 2.5], [1.0, 2.0, 3.0]) == 0.0
    with pytest.raises(ValueError, match="non-finite"):
        metrics.pearson([1.0, float("nan"), 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        metrics.pearson([1.0], [1.0, 2.0])


def test_threshold_verdicts() -> None:
    assert threshold_verdict(3.0, 1.0, 0.0, 2.0, ">=")["verdict"] == HOLDS
    assert threshold_verdict(1.0, 1.0, 0.0, 2.0, ">=")["verdict"] == INCONCLUSIVE
    assert threshold_verdict(-3.0, 1.0, 0.0, 2.0, ">=")["verdict"] == FAILS
    assert threshold_verdict(0.8, 0.3, 1.0, 2.0, "<=")["verdict"] == INCONCLUSIVE
    assert threshold_verdict(0.2, 0.1, 1.0, 2.0, "<=")["verdict"] == HOLDS
    assert threshold_verdict(5.0, 1.0, 1.0, 2.0, "<=")["verdict"] == FAILS
    v = threshold_verdict(5.0, float("nan"), 1.0, 2.0, "<=")
    assert v["verdict"] == INCONCLUSIVE and "noise" in v["reason"]


def test_binomial_se_and_curves() -> None:
    assert binomial_se(50.0, 100) == pytest.approx(5.0)
    assert smooth([4, 2, 0, 2], 2) == [4, 3, 1, 1]
    assert steps_to_reach([5, 4, 3, 2], 3) == (3, False)
    assert steps_to_reach([5, 4], 1) == (2, True)
    assert math.isnan(binomial_se(50.0, 0))
