"""torch, imported on first use.

The plan and the config check import every method module on each Snakemake call (for its
``Params`` and flags); a top-level ``import torch`` there costs over a second of every
``snakemake -n``. Method modules take ``torch``, ``nn`` and ``no_grad`` from here instead, and
a job pays for torch when it first touches a tensor."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any


class _Lazy:
    def __init__(self, module: str) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self._module), name)


torch: Any = _Lazy("torch")
nn: Any = _Lazy("torch.nn")


def no_grad(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``@torch.no_grad()`` without importing torch when the module is imported."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch as real

        with real.no_grad():
            return fn(*args, **kwargs)

    return wrapper
