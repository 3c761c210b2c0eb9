"""Verdict rules: a claim holds, does not hold, or is inconclusive, computed from measured
numbers with a stated tolerance.

The interval is estimate +/- z * se. For a claim "estimate >= threshold": holds when the
whole interval is at or above the threshold, does not hold when it is entirely below, and is
inconclusive when the interval straddles it (a difference smaller than the noise). "<=" is
the mirror image. Without any noise estimate the verdict is inconclusive, never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def std(xs: Sequence[float]) -> float:
    """Sample standard deviation (n-1); 0.0 for a single value."""
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def binomial_se(accuracy_pct: float, n: int) -> float:
    """Standard error, in points, of an accuracy measured on n examples."""
    p = min(max(accuracy_pct / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1 - p) / n) if n > 0 else float("nan")


def threshold_verdict(estimate: float, se: float, threshold: float, z: float, direction: str) -> dict[str, Any]:
    if direction not in (">=", "<="):
        raise ValueError(f"direction must be '>=' or '<=', got {direction!r}")
    rule = (f"estimate {direction} {threshold:g}: holds if the whole interval estimate +/- {z:g}*se "
            f"satisfies it, does not hold if none of it does, inconclusive otherwise")
    out: dict[str, Any] = {"estimate": estimate, "se": se, "z": z, "threshold": threshold,
                           "direction": direction, "rule": rule}
    if not (math.isfinite(estimate) and math.isfinite(se)) or se < 0:
        out.update(lower=float("nan"), upper=float("nan"), verdict=INCONCLUSIVE,
                   reason="no noise estimate (need a finite estimate and standard error)")
        return out
    lo, hi = estimate - z * se, estimate + z * se
    out.update(lower=lo, upper=hi)
    if direction == ">=":
        out["verdict"] = HOLDS if lo >= threshold else FAILS if hi < threshold else INCONCLUSIVE
    else:
        out["verdict"] = HOLDS if hi <= threshold else FAILS if lo > threshold else INCONCLUSIVE
    return out


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average (expanding over the first window-1 steps)."""
    window = max(1, int(window))
    return [sum(values[max(0, i + 1 - window): i + 1]) / min(i + 1, window) for i in range(len(values))]


def steps_to_reach(curve: Sequence[float], target: float) -> tuple[int, bool]:
    """First 1-based step at which ``curve`` <= target; (len, True) when never reached."""
    tol = 1e-9 * max(1.0, abs(target))  # float noise must not decide "never reached"
    for i, v in enumerate(curve):
        if v <= target + tol:
            return i + 1, False
    return len(curve), True
