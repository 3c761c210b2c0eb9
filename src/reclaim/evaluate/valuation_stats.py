"""What a data valuation is worth on a pool with known flipped labels, the two experiments of
Data Shapley (Ghorbani & Zou, ICML 2019, arXiv 1904.02868, Sec. 4):

- detection: inspect the points from the lowest value up; the recall curve is the share of
  the flipped labels found after inspecting each fraction of the pool. Ties in value (LOO
  gives many exact zeros) are inspected in uniformly random order, in expectation: the
  curve is the expected recall under random tie-breaking, so a tie-breaking rule cannot
  flatter a method. Reported: the curve on a fixed fraction grid, its area (the normalised
  area under recall vs inspected fraction; 0.5 for a random order, 1 - f/2 for a perfect
  one with flipped share f), recall at 10% and 20% inspected, and the AUROC of -value
  against "flipped" (ties count 1/2). ``detection_area_se`` is a bootstrap standard error
  over pool points (fixed generator: the evaluator is deterministic given its inputs);
- removal: retrain the learner of reclaim.select._valuation on the pool (its noisy labels)
  minus the highest-valued (and, separately, the lowest-valued) x% of the points and
  measure accuracy on the held-out dev rows (disjoint from the target the values were
  computed on). Ties are removed in canonical example_id order. The random arm's
  "highest-first" curve is random removal. Areas are the mean accuracy over the fractions.

The evaluator embeds the pool and the held-out rows with the arm's model (``needs_model``),
exactly as the valuation selectors do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from reclaim.io import read_jsonl
from reclaim.select import _valuation
from reclaim.select._base import ModelContext, canonical, read_table


@dataclass(frozen=True)
class ValuationStatsParams(_valuation.LearnerParams):
    removal_fractions: list[float] = field(default_factory=lambda: [round(0.05 * i, 2) for i in range(11)])
    recall_grid: int = 20          # the recall curve is reported at 0, 1/grid, ..., 1
    bootstrap: int = 200           # resamples for detection_area_se

    def __post_init__(self) -> None:
        super().__post_init__()
        fr = self.removal_fractions
        if not isinstance(fr, (list, tuple)) or not fr or any(not isinstance(f, (int, float)) or not 0 <= f < 1
                                                              for f in fr):
            raise ValueError(f"removal_fractions must be a non-empty list of fractions in [0, 1), got {fr!r}")
        if list(fr) != sorted(fr):
            raise ValueError(f"removal_fractions must be increasing, got {fr!r}")
        for name in ("recall_grid", "bootstrap"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


def recall_curve(values: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """Expected recall of the flipped points after inspecting k = 0..n points from the lowest
    value up, ties in value inspected in uniformly random order."""
    n = len(values)
    total = flipped.sum()
    if total == 0:
        raise ValueError("no flipped labels in the pool: detection is undefined")
    uniq, inv = np.unique(values, return_inverse=True)
    size = np.bincount(inv, minlength=len(uniq)).astype(np.float64)   # tie groups, increasing value
    hits = np.bincount(inv, weights=flipped.astype(np.float64), minlength=len(uniq))
    end = np.cumsum(size)
    start, before = end - size, np.cumsum(hits) - hits
    k = np.arange(1, n + 1)
    g = np.searchsorted(end, k, side="left")                          # the group holding position k
    found = np.concatenate([[0.0], before[g] + hits[g] * (k - start[g]) / size[g]])
    return found / total


def curve_area(recall: np.ndarray) -> float:
    """Trapezoidal area under recall against inspected fraction (0..1)."""
    n = len(recall) - 1
    return float(((recall[1:] + recall[:-1]) / 2).sum() / n)


def auroc(values: np.ndarray, flipped: np.ndarray) -> float:
    """P(a flipped point has a lower value than a clean one), ties 1/2 (Mann-Whitney)."""
    from scipy.stats import rankdata

    r = rankdata(-values)        # high rank = low value
    n1, n0 = int(flipped.sum()), int((~flipped).sum())
    return float((r[flipped].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def removal_order(ids: list[str], values: np.ndarray, highest_first: bool) -> np.ndarray:
    """Indices in removal order; ties by canonical id order."""
    key = -values if highest_first else values
    return np.lexsort((np.arange(len(ids)), key))


class ValuationStats:
    Params = ValuationStatsParams
    inputs = ("scores", "pool", "heldout")
    needs_model = True

    def make_params(self, raw: dict[str, Any] | None) -> ValuationStatsParams:
        return ValuationStatsParams(**(raw or {}))

    def evaluate(self, inputs: dict[str, str], params: ValuationStatsParams,
                 model: ModelContext | None = None) -> dict[str, Any]:
        if model is None:
            raise ValueError("valuation_stats embeds with the arm's model; none was given")
        pool = canonical(read_jsonl(inputs["pool"], ("example_id", "label", "flipped")), inputs["pool"])
        heldout = read_jsonl(inputs["heldout"], ("label",))
        scores = read_table(inputs["scores"], "score")
        ids = [r["example_id"] for r in pool]
        if set(scores) != set(ids):
            raise ValueError(f"{inputs['scores']}: its example ids are not those of {inputs['pool']}")
        values = np.array([scores[e] for e in ids])
        flipped = np.array([bool(r["flipped"]) for r in pool])
        n = len(pool)

        rec = recall_curve(values, flipped)
        grid = [round(i * n / params.recall_grid) for i in range(params.recall_grid + 1)]
        area = curve_area(rec)
        boot_rng = np.random.default_rng([0, 0xB007])
        boots = []
        for _ in range(params.bootstrap):
            idx = boot_rng.integers(0, n, n)
            if flipped[idx].any():
                boots.append(curve_area(recall_curve(values[idx], flipped[idx])))

        x, x_h = _valuation.features(model, pool, heldout, params, "valuation_stats")
        y, y_h = _valuation.labels(pool, "pool"), _valuation.labels(heldout, "heldout")

        def removal(highest_first: bool) -> list[float]:
            order = removal_order(ids, values, highest_first)
            accs = []
            for f in params.removal_fractions:
                keep = np.sort(order[round(f * n):])
                accs.append(float((_valuation.fit_predict(x[keep], y[keep], x_h, params) == y_h).mean()))
            return accs

        high, low = removal(True), removal(False)
        acc_se = float(np.mean([np.sqrt(a * (1 - a) / len(y_h)) for a in high]))
        return {
            "detection_area": area, "detection_area_se": float(np.std(boots, ddof=1)),
            "detection_at_10": float(rec[round(0.1 * n)]), "detection_at_20": float(rec[round(0.2 * n)]),
            "auroc": auroc(values, flipped),
            "recall_fractions": [k / n for k in grid], "recall_curve": [float(rec[k]) for k in grid],
            "removal_fractions": list(params.removal_fractions),
            "removal_high_curve": high, "removal_low_curve": low,
            "removal_high_area": float(np.mean(high)), "removal_low_area": float(np.mean(low)),
            "removal_area_se": acc_se,
            "n_pool": n, "n_flipped": int(flipped.sum()), "n_heldout": len(y_h),
            "values": values.tolist(), "flipped": flipped.tolist(),  # canonical order: for paired comparisons
            "protocol": {"learner": "logistic regression (L-BFGS) on frozen features, z-scored on the pool",
                         **{k: v for k, v in asdict(params).items() if k != "removal_fractions"}},
        }


EVALUATOR = ValuationStats()
