"""Task framings: how a classification task is posed to a model family.

One module per framing (file name = registry key), defining ``FRAMING``:
``encoder_cls`` (encoder + classification head), ``seq2seq`` (text-to-text with label words,
the LoRA-GA paper's T5 setup), ``causal_lm`` (decoder-only with label words) and
``image_cls`` (CNNs trained from scratch on the image tasks).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from reclaim.registry import ModuleRegistry

if TYPE_CHECKING:
    from reclaim.framings._base import Framing

REGISTRY = ModuleRegistry(__name__, Path(__file__).parent, "FRAMING", "framing")


def names() -> list[str]:
    return REGISTRY.names()


def get(name: str) -> Framing:
    return REGISTRY.get(name)
