"""Pool builders: one module per way of making the data a selection claim selects from
(file name = registry key), each defining ``BUILDER`` with

- ``Params`` (a dataclass validated at DAG time),
- ``glue_sources(params)`` -> [(task, split)] prepared GLUE splits it reads,
- ``wikitext_splits(params)`` -> WikiText-2 raw splits it reads,
- ``outputs`` -> the files it provides, a subset of ("pool", "target", "heldout"),
- ``build(params, glue_rows, wikitext)`` -> {output name: rows}.

Every pool row has an ``example_id``; the ``build_pool`` rule writes each output as JSONL
(unprovided outputs as empty files, so the rule's outputs are the same for every builder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclaim.registry import ModuleRegistry

REGISTRY = ModuleRegistry(__name__, Path(__file__).parent, "BUILDER", "pool builder")
OUTPUTS = ("pool", "target", "heldout")


def names() -> list[str]:
    return REGISTRY.names()


def get(name: str) -> Any:
    return REGISTRY.get(name)
