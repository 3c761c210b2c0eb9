"""ZO-SGD-Sign (ZO-Bench arXiv 2402.11592, Sec. 3): the update direction is sign(g) z, so the
step size does not scale with the (noisy) magnitude of the projected gradient."""

from __future__ import annotations

from reclaim.optim._zo import ZerothOrder


class ZOSign(ZerothOrder):
    def coefficient(self, g: float) -> float:
        return 1.0 if g > 0 else -1.0 if g < 0 else 0.0


STRATEGY = ZOSign()
