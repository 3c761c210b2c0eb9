"""Training-strategy registry (stage 3, memory-efficient training): one module per method.

A strategy decides how a training step turns a batch into an update: which optimizer is
built from the parameter groups (GaLore, 8-bit AdamW), what happens when a step begins
(LISA's block switch), or the whole step (zeroth-order methods: two forward passes, no
backward). It combines with any adapter (``reclaim.adapters``) and any data selection: a
``methods:`` entry names ``optimizer: {name, params}`` beside its adapter. Adding one is one
file defining ``STRATEGY`` (a :class:`reclaim.optim._base.Strategy`); the file name is the key.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from reclaim.registry import ModuleRegistry

if TYPE_CHECKING:
    from reclaim.optim._base import Strategy

REGISTRY = ModuleRegistry(__name__, Path(__file__).parent, "STRATEGY", "optimizer")
DEFAULT = "adamw"  # what a method without ``optimizer:`` trains with (the adapter's own optimizer)


def names() -> list[str]:
    return REGISTRY.names()


def module(name: str) -> ModuleType:
    return REGISTRY.module(name)


def get(name: str) -> Strategy:
    return REGISTRY.get(name)
