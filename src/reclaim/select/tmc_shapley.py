"""TMC-Shapley: Data Shapley by truncated Monte Carlo over permutations (Ghorbani & Zou, ICML
2019, arXiv 1904.02868, Sec. 3, Algorithm 1). High = valuable: the point's mean marginal
contribution to the learner's accuracy on the pool's target (validation) sample.

The learner is a logistic regression on the arm's frozen encoder features; the truncation,
v(D) estimate, empty-set score, class-presence rule and convergence rule are the paper's
(reclaim.select._valuation states them and why this is written here rather than taken from
pyDVL). Permutations and bootstrap resamples come from ``default_rng([seed, ...])`` with the
job seed, so the values depend on the seed and the data only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from reclaim.select import _frozen, _valuation
from reclaim.select._base import ModelContext, Selector


@dataclass(frozen=True)
class TmcParams(_valuation.LearnerParams):
    tolerance: float = 0.01          # truncate once |v(S) - v(D)| <= tolerance * v(D) ...
    patience: int = 5                # ... for more than this many consecutive prefixes
    bootstrap_resamples: int = 100   # test resamples v(D) is averaged over
    max_iterations: int = 200        # permutations at most
    convergence_err: float = 0.1     # stop when the running means' mean relative change < this ...
    window: int = 100                # ... over the last this many permutations

    def __post_init__(self) -> None:
        super().__post_init__()
        req, is_int = _frozen._require, _frozen._is_int
        req(isinstance(self.tolerance, (int, float)) and 0 <= self.tolerance < 1,
            f"tolerance must be in [0, 1), got {self.tolerance!r}")
        for name in ("patience", "bootstrap_resamples", "max_iterations", "window"):
            v = getattr(self, name)
            req(is_int(v) and v >= (0 if name == "patience" else 1), f"{name} must be an integer >= "
                f"{0 if name == 'patience' else 1}, got {v!r}")
        req(isinstance(self.convergence_err, (int, float)) and self.convergence_err > 0,
            f"convergence_err must be > 0, got {self.convergence_err!r}")


class TmcShapley(Selector):
    Params = TmcParams
    orientation = "high = valuable (TMC-Shapley value: mean marginal accuracy contribution)"
    needs_target = True
    needs_labels = True
    needs_model = True
    seeded = True

    def score(self, pool: list[dict[str, Any]], target: list[dict[str, Any]] | None, params: TmcParams,
              seed: int, model: ModelContext | None = None) -> list[float]:
        if model is None or not target:
            raise ValueError("tmc_shapley needs the arm's model and the pool's target sample")
        x, x_t = _valuation.features(model, pool, target, params, "tmc_shapley")
        u = _valuation.Utility(x, _valuation.labels(pool, "pool"), x_t, _valuation.labels(target, "target"), params)
        rng = np.random.default_rng([seed, 0x7AC5])
        v_full, v_sd = _valuation.full_score(u, rng, params.bootstrap_resamples)
        t0 = time.perf_counter()
        values, info = _valuation.tmc_shapley(u, len(pool), u.empty, v_full, rng, params.tolerance,
                                              params.max_iterations, params.convergence_err, params.window,
                                              params.patience)
        print(f"tmc_shapley: v(D) {v_full:.4f} (bootstrap sd {v_sd:.4f}), v(empty) {u.empty:.4f}; "
              f"{info['iterations']} permutations, {u.calls} fits, mean prefix {info['mean_prefix_fraction']:.2f}, "
              f"converged {info['converged']} (err {info['convergence_error']:.3f}) in {time.perf_counter() - t0:.1f}s")
        return values.tolist()


SELECTOR = TmcShapley()
