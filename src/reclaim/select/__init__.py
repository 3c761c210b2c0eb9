"""Stage 1, data selection and valuation: one module per selector (file name = registry key).

A selector scores every example of a pool (``example_id, score``, written once by the
``score`` rule); the ``subset`` rule derives subsets from those scores (top-k, bottom-k,
offset window, stratified, sampled), so keep-hard, keep-easy and several budgets share one
scoring job. Each module defines ``SELECTOR`` (a :class:`reclaim.select._base.Selector`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from reclaim.registry import ModuleRegistry

if TYPE_CHECKING:
    from reclaim.select._base import Selector

REGISTRY = ModuleRegistry(__name__, Path(__file__).parent, "SELECTOR", "selector")


def names() -> list[str]:
    return REGISTRY.names()


def get(name: str) -> Selector:
    return REGISTRY.get(name)
