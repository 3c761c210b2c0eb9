"""The adapter interface the trainer drives. Defaults implement plain full-parameter
training with AdamW; adapters override only what they change."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reclaim.registry import make_params

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class NoParams:
    pass


@dataclass
class AdapterContext:
    """What an adapter may need beyond the model: the task loss (LoRA-GA's gradient
    estimate), training batches, the step budget (AdaLoRA's schedule) and the heads that
    must stay fully trainable (a freshly initialised classifier)."""

    loss_fn: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]
    train_batches: Callable[[int, int], Iterable[dict[str, torch.Tensor]]]
    total_steps: int
    head_modules: list[str]
    seed: int
    device: torch.device | str = "cpu"


class Adapter:
    """Base: full-parameter training; subclasses override the hooks they need."""

    Params: type = NoParams

    def make_params(self, raw: dict[str, Any] | None) -> Any:
        """Validate raw params (from params.yaml) into the Params dataclass."""
        return make_params(self.Params, raw)

    def check(self, params: Any, shape: dict[str, Any], where: str) -> None:
        """Refuse params that cannot fit the model before any job starts (``shape``: the
        model's widths and block count read without loading it, reclaim.models.model_shape;
        empty when unknown, e.g. a Hub id); raise ValueError."""

    def apply(self, model: nn.Module, params: Any, ctx: AdapterContext) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def optimizer(self, model: nn.Module, params: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        import torch

        trainable = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)

    def extra_loss(self, model: nn.Module, params: Any) -> torch.Tensor | None:
        return None

    def on_step_end(self, model: nn.Module, params: Any, step: int) -> None:
        """Called after optimizer.step() and before zero_grad() (AdaLoRA needs the grads)."""

    def save(self, model: nn.Module, params: Any, out_dir: Path) -> list[str]:
        """Persist what training produced; returns the files written (relative names)."""
        return []

    # Checkpoint/resume (reclaim.checkpoint). The trainer saves the trainable parameters,
    # optimizer, scheduler and RNG states itself, and rebuilds everything else by re-running
    # ``apply`` from the same seed; an adapter adds only state it keeps elsewhere. One that
    # cannot be resumed exactly sets ``resumable = False`` and restarts from step 0.
    resumable: bool = True

    def checkpoint_state(self, model: nn.Module, params: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Training state outside parameters and optimizer: (tensors, JSON-able values)."""
        return {}, {}

    def load_checkpoint_state(self, model: nn.Module, params: Any, tensors: dict[str, torch.Tensor],
                              meta: dict[str, Any]) -> None:
        """Restore what ``checkpoint_state`` returned, after ``apply`` on a fresh model."""
        if tensors or meta:
            raise ValueError(f"{type(self).__name__} keeps no checkpoint state, but the checkpoint "
                             f"has some ({sorted(tensors) or sorted(meta)})")


def check_positive(name: str, value: float | int) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def count_trainable(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
