"""Stage 4, evaluation: one module per evaluator (file name = registry key), each defining
``EVALUATOR``. An evaluator is its own rule, so one evaluator scores every arm of a claim
the same way; it reads the artifacts its step's inputs name and returns flat metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclaim.registry import ModuleRegistry

REGISTRY = ModuleRegistry(__name__, Path(__file__).parent, "EVALUATOR", "evaluator")


def names() -> list[str]:
    return REGISTRY.names()


def get(name: str) -> Any:
    return REGISTRY.get(name)


def code_modules(spec: dict[str, Any]) -> list[str]:
    """The modules an evaluate job runs: the command, the evaluator, and the modules the
    evaluator picks by its parameters (a registry key), which the import graph cannot see."""
    ev = get(spec["evaluator"])
    extra = ev.code_modules(ev.make_params(spec["params"])) if hasattr(ev, "code_modules") else []
    if "model" in spec:  # a needs_model evaluator runs the model's framing
        extra = [*extra, "reclaim.select._run", f"reclaim.framings.{spec['model']['framing']}"]
    return ["reclaim.evaluate._run", f"reclaim.evaluate.{spec['evaluator']}", *extra]
