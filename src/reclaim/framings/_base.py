"""Framing interface and the shared padding collate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from reclaim.data.glue import GlueTask
    from reclaim.models import ResolvedModel


class Framing:
    name: str = ""

    def load(self, model: ResolvedModel, task: GlueTask) -> tuple[nn.Module, Any]:
        """Return (model, tokenizer)."""
        raise NotImplementedError

    def head_modules(self, model: nn.Module) -> list[str]:
        """Freshly initialised modules that adapters must keep fully trainable."""
        return []

    def encode(self, tokenizer: Any, task: GlueTask, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def collate(self, tokenizer: Any, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


def pad(seqs: list[list[int]], value: int) -> torch.Tensor:
    import torch

    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def sequence_logprob(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum of log p(target token) per row; targets == -100 are ignored."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    mask = targets != -100
    gathered = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (gathered * mask).sum(dim=-1)
