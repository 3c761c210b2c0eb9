"""Task framings: how a classification task is posed to a model family.

One module per framing (file name = registry key), defining ``FRAMING``:
``encoder_cls`` (encoder + classification head), ``seq2seq`` (text-to-text with label words,
the LoRA-GA paper's T5 setup) and ``causal_lm`` (decoder-only with label words).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reclaim.framings._base import Framing

_DIR = Path(__file__).parent


def names() -> list[str]:
    return sorted(p.stem for p in _DIR.glob("*.py") if not p.stem.startswith("_"))


def get(name: str) -> Framing:
    if name not in names():
        raise KeyError(f"unknown framing {name!r}; known: {', '.join(names())}")
    return importlib.import_module(f"reclaim.framings.{name}").FRAMING
