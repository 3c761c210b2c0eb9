"""The pretraining objective interface and the parameters every pretrain step shares."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reclaim.registry import make_params

if TYPE_CHECKING:
    import torch
    from torch import nn

    from reclaim.models import ResolvedModel


@dataclass(frozen=True)
class PretrainParams:
    """One pretrain step (params.yaml ``- pretrain: {objective, ...}``); all of it is hashed
    into the job id."""

    objective: str = "mlm"
    epochs: float = 1.0          # passes over the selected text
    max_steps: int | None = None  # cap on optimizer steps (None: epochs decide)
    batch_size: int = 16
    lr: float = 5.0e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_length: int = 96         # tokens per example (a pool chunk is one example)
    mask_prob: float = 0.15      # mlm only: BERT's 15 %, of which 80/10/10 mask/random/keep
    eval_examples: int = 256     # held-out target rows whose loss (or perplexity) is reported

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.epochs, (int, float)) and self.epochs > 0, "epochs must be > 0"),
            (self.max_steps is None or (isinstance(self.max_steps, int) and self.max_steps >= 1),
             "max_steps must be an integer >= 1 or null"),
            (isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size must be an integer >= 1"),
            (isinstance(self.lr, (int, float)) and self.lr > 0, "lr must be > 0"),
            (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0, "weight_decay must be >= 0"),
            (isinstance(self.warmup_ratio, (int, float)) and 0 <= self.warmup_ratio <= 1,
             "warmup_ratio must be in [0, 1]"),
            (isinstance(self.max_length, int) and self.max_length >= 8, "max_length must be an integer >= 8"),
            (isinstance(self.mask_prob, (int, float)) and 0 < self.mask_prob < 1, "mask_prob must be in (0, 1)"),
            (isinstance(self.eval_examples, int) and self.eval_examples >= 0,
             "eval_examples must be an integer >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                key = msg.split()[0]
                value = getattr(self, key)
                hint = (" (a string: YAML reads 5e-5 without a decimal point as text; write 5.0e-5)"
                        if isinstance(value, str) else "")
                raise ValueError(f"{msg}, got {value!r}{hint}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def total_steps(self, n_examples: int) -> int:
        steps = max(1, math.ceil(self.epochs * math.ceil(n_examples / self.batch_size)))
        return min(steps, self.max_steps) if self.max_steps else steps


def resolve(raw: dict[str, Any]) -> PretrainParams:
    """A step's ``pretrain`` entry, validated, defaults filled in."""
    from reclaim import pretrain

    objective = (raw or {}).get("objective", "mlm")
    if objective not in pretrain.names():
        raise ValueError(f"unknown objective {objective!r} (known: {', '.join(pretrain.names())})")
    return make_params(PretrainParams, raw)


class Objective:
    """Loads a model for its objective, turns text into batches, computes the loss."""

    def load(self, model: ResolvedModel) -> tuple[nn.Module, Any]:
        raise NotImplementedError

    def encode(self, tokenizer: Any, texts: list[str], max_length: int) -> list[list[int]]:
        return [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]

    def collate(self, tokenizer: Any, ids: list[list[int]], params: PretrainParams,
                generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def example_losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(l_i, n_i): each example's mean loss over its n_i predicted tokens; the batch loss is
        sum_i n_i l_i / sum_i n_i (the reweighting hook's contract, reclaim.reweight)."""
        import torch.nn.functional as F

        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.float()
        labels = batch["labels"]
        tok = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                              ignore_index=-100, reduction="none").view(labels.shape)
        counts = (labels != -100).sum(dim=1)
        return tok.sum(dim=1) / counts.clamp(min=1), counts

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        losses, counts = self.example_losses(model, batch)
        c = counts.to(losses.dtype)
        return (losses * c).sum() / c.sum().clamp(min=1)

    def save(self, model: nn.Module, tokenizer: Any, base: ResolvedModel, out_dir: Path) -> list[str]:
        """Write a directory ``transformers`` loads with any Auto class of the family."""
        raise NotImplementedError
