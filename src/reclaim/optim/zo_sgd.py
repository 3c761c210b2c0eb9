"""ZO-SGD (MeZO; ZO-Bench arXiv 2402.11592, Sec. 3): SGD on the two-point estimate g z."""

from __future__ import annotations

from reclaim.optim._zo import ZerothOrder

STRATEGY = ZerothOrder()
