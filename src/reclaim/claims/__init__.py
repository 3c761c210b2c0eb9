"""Claim aggregators: one module per claim kind (file name = registry key), defining
``AGGREGATOR`` with ``check_config`` (run at DAG time), ``aggregate`` (the claim's rule) and
``headline`` (the paper-vs-reproduced comparison that results/claims.md and `reclaim list` show)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclaim.registry import ModuleRegistry

REGISTRY = ModuleRegistry(__name__, Path(__file__).parent, "AGGREGATOR", "aggregator")


def names() -> list[str]:
    return REGISTRY.names()


def get(name: str) -> Any:
    return REGISTRY.get(name)
