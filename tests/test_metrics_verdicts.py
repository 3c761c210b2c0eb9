from __future__ import annotations

import math

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
