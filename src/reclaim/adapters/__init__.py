"""Adapter registry: one module per method in this package.

Adding a method means adding one file here that defines ``ADAPTER`` (an
:class:`reclaim.adapters._base.Adapter`); the file name is the registry key. Modules keep
torch/peft imports inside functions so that config validation stays fast.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from reclaim.registry import ModuleRegistry

if TYPE_CHECKING:
    from reclaim.adapters._base import Adapter

REGISTRY = ModuleRegistry(__name__, Path(__file__).parent, "ADAPTER", "adapter")


def names() -> list[str]:
    return REGISTRY.names()


def module(name: str) -> ModuleType:
    return REGISTRY.module(name)


def get(name: str) -> Adapter:
    return REGISTRY.get(name)
