"""Stage 2, compression: post-training quantization, pruning and low-rank compensation.

One module per method (file name = registry key), each defining ``COMPRESSOR`` (a
:class:`reclaim.compress._base.Compressor`); files starting with ``_`` are shared helpers: the
one fake quantizer (``_quant``), block-by-block calibration (``_blocks``), params and records
(``_base``) and the job (``_run``). A compress job takes a model (packaged, pretrained,
trained or compressed by an earlier step) and writes a model directory that transformers
loads, plus ``compress.json``: what it did per layer, the calibration it saw, and its cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclaim.registry import ModuleRegistry

REGISTRY = ModuleRegistry(__name__, Path(__file__).parent, "COMPRESSOR", "compressor")


def names() -> list[str]:
    return REGISTRY.names()


def get(name: str) -> Any:
    return REGISTRY.get(name)


def code_modules(spec: dict[str, Any]) -> list[str]:
    """The modules a compress job executes (its rule's code inputs)."""
    return ["reclaim.compress._run", f"reclaim.compress.{spec['method']}"]
