"""Leave-one-out valuation, the baseline of Data Shapley (Ghorbani & Zou, ICML 2019, arXiv
1904.02868, Sec. 1 and 4): value(i) = v(D) - v(D \\ {i}), with the same learner and utility as
``tmc_shapley`` (reclaim.select._valuation). High = valuable. Deterministic (the L-BFGS fit
has no randomness), so one scoring job serves every seed; many values are exactly 0 when one
point does not change the fitted model's test predictions, the weakness the paper shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.select import _valuation
from reclaim.select._base import ModelContext, Selector


@dataclass(frozen=True)
class LooParams(_valuation.LearnerParams):
    pass


class LeaveOneOut(Selector):
    Params = LooParams
    orientation = "high = valuable (v(D) - v(D without the point))"
    needs_target = True
    needs_labels = True
    needs_model = True
    seeded = False

    def score(self, pool: list[dict[str, Any]], target: list[dict[str, Any]] | None, params: LooParams,
              seed: int, model: ModelContext | None = None) -> list[float]:
        if model is None or not target:
            raise ValueError("loo needs the arm's model and the pool's target sample")
        x, x_t = _valuation.features(model, pool, target, params, "loo")
        u = _valuation.Utility(x, _valuation.labels(pool, "pool"), x_t, _valuation.labels(target, "target"), params)
        values, v_full = _valuation.leave_one_out(u, len(pool))
        print(f"loo: v(D) {v_full:.4f}; {int((values == 0).sum())} of {len(values)} values exactly 0")
        return values.tolist()


SELECTOR = LeaveOneOut()
