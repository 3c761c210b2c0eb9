"""Claim aggregators: one module per claim kind (file name = registry key), defining
``AGGREGATOR`` with ``check_config`` (run at DAG time) and ``aggregate`` (the claim's rule)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

_DIR = Path(__file__).parent


def names() -> list[str]:
    return sorted(p.stem for p in _DIR.glob("*.py") if not p.stem.startswith("_"))


def get(name: str) -> Any:
    if name not in names():
        raise KeyError(f"unknown aggregator {name!r}; known: {', '.join(names())}")
    return importlib.import_module(f"reclaim.claims.{name}").AGGREGATOR
