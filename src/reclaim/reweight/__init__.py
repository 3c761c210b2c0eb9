"""Loss-based sample reweighting inside the training loop (Sow et al., ICLR 2025,
arXiv 2502.06733): one module per strategy (file name = registry key), each defining
``STRATEGY`` (a :class:`reclaim.reweight._base.Strategy`).

The train loop asks :func:`hook` for its loss function. Without a ``reweighting`` entry in the
job spec the hook is the framing's own mean loss, so unweighted jobs compute exactly what they
did before this package existed; the math lives in ``_base`` and is reached only through a
strategy module, which ``reclaim.jobs.train_code`` declares as code of reweighted jobs alone
(editing the math reruns those jobs, not every training job).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from reclaim.registry import ModuleRegistry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from reclaim.framings._base import Framing

REGISTRY = ModuleRegistry(__name__, Path(__file__).parent, "STRATEGY", "reweighting strategy")


def names() -> list[str]:
    return REGISTRY.names()


def get(name: str) -> Any:
    return REGISTRY.get(name)


def resolve(raw: dict[str, Any]) -> dict[str, Any]:
    """A step's ``reweighting`` entry, validated, with defaults filled in (what the job id hashes)."""
    if not isinstance(raw, dict) or "strategy" not in raw:
        raise ValueError("needs a 'strategy' (one of: " + ", ".join(names()) + ")")
    if raw["strategy"] not in names():
        raise ValueError(f"unknown strategy {raw['strategy']!r} (known: {', '.join(names())})")
    return get(raw["strategy"]).make_params(raw).as_dict()


class MeanLoss:
    """The hook of an unweighted job: the framing's mean loss, untouched."""

    def __init__(self, framing: Framing) -> None:
        self.framing = framing

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        return self.framing.loss(model, batch)

    def record(self) -> None:
        return None


def hook(config: dict[str, Any] | None, framing: Framing) -> Any:
    """The training loop's loss function for a job whose spec has ``config`` as ``reweighting``."""
    if not config:
        return MeanLoss(framing)
    return get(config["strategy"]).hook(config, framing)
