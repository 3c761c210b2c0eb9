"""Adapter registry: one module per method in this package.

Adding a method means adding one file here that defines ``ADAPTER`` (an
:class:`reclaim.adapters._base.Adapter`); the file name is the registry key. Modules keep
torch/peft imports inside functions so that config validation stays fast.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reclaim.adapters._base import Adapter

_DIR = Path(__file__).parent


def names() -> list[str]:
    return sorted(p.stem for p in _DIR.glob("*.py") if not p.stem.startswith("_"))


def module(name: str) -> ModuleType:
    if name not in names():
        raise KeyError(f"unknown adapter {name!r}; known: {', '.join(names())}")
    return importlib.import_module(f"reclaim.adapters.{name}")


def get(name: str) -> Adapter:
    return module(name).ADAPTER
