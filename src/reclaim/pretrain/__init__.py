"""Stage 3, continued pretraining: a model keeps training with its pretraining objective on
text a selection chose (the DSIR claim's downstream step; the causal-LM half of the
loss-reweighting claim). One module per objective (file name = registry key), each defining
``OBJECTIVE`` (a :class:`reclaim.pretrain._base.Objective`); ``_run.py`` is the job.

The output is a model directory that later steps (fine-tuning, compression) load like any
local model, so a chain can be select -> pretrain -> train -> evaluate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclaim.registry import ModuleRegistry

REGISTRY = ModuleRegistry(__name__, Path(__file__).parent, "OBJECTIVE", "pretraining objective")


def names() -> list[str]:
    return REGISTRY.names()


def get(name: str) -> Any:
    return REGISTRY.get(name)


def code_modules(spec: dict[str, Any]) -> list[str]:
    """The modules a pretrain job executes (its rule's code inputs)."""
    strategy = ([f"reclaim.reweight.{spec['reweighting']['strategy']}", "reclaim.reweight._base"]
                if spec.get("reweighting") else [])
    lora = ["reclaim.pretrain._lora"] if spec.get("lora") else []
    return ["reclaim.pretrain._run", f"reclaim.pretrain.{spec['params']['objective']}", *strategy, *lora]
