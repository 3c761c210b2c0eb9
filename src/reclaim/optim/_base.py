"""The strategy interface the training loop and the memory probe drive.

The default step is the first-order one the loop always ran: loss, backward, optional
gradient clipping, ``optimizer.step()``. Strategies override only the hook they change:
``build_optimizer`` (parameter groups), ``on_step_begin`` (before the batch's forward),
``step`` (replace the whole step), ``loss_framing`` (swap the framing's loss: chunked
cross-entropy from the hidden states and the LM head), ``extra_state`` (tensors outside
``optimizer.state`` that the memory probe must count, e.g. projection matrices),
``paper_accounting`` (the paper's own memory estimate, recorded beside the probe's peak).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reclaim.registry import make_params

if TYPE_CHECKING:
    import torch
    from torch import nn

    from reclaim.adapters._base import Adapter
    from reclaim.framings._base import Framing

# (model, batch, step) -> (the loss to record, the loss to optimise): the framing's (possibly
# reweighted) loss, and that plus the adapter's extra loss
LossFn = Callable[["nn.Module", dict[str, Any], int], tuple["torch.Tensor", "torch.Tensor"]]


@dataclass(frozen=True)
class NoParams:
    pass


@dataclass
class StepContext:
    """What one step needs beyond the model and the batch."""

    loss_fn: LossFn
    max_grad_norm: float = 0.0
    seed: int = 0


class Strategy:
    Params: type = NoParams
    first_order: bool = True   # False: the step runs no backward pass (zeroth-order)
    fixed_trainable: bool = True  # False: what is trained changes between steps (LISA); the
    #                               memory probe then reports the largest of its steps' peaks

    def make_params(self, raw: dict[str, Any] | None) -> Any:
        return make_params(self.Params, raw)

    def fresh(self) -> Strategy:
        """A new instance for one run: strategies that remember what they did (LISA's active
        blocks) keep it on the instance, and the registry's instance is shared."""
        return type(self)()

    def check(self, params: Any, widths: dict[str, Any], where: str) -> None:
        """Refuse params that cannot fit the model before any job starts (``widths``: the
        model's config values, reclaim.models.config_widths); raise ValueError naming ``where``."""

    def build_optimizer(self, model: nn.Module, params: Any, adapter: Adapter, adapter_params: Any,
                        lr: float, weight_decay: float) -> torch.optim.Optimizer:
        return adapter.optimizer(model, adapter_params, lr, weight_decay)

    def on_step_begin(self, model: nn.Module, optimizer: torch.optim.Optimizer, params: Any,
                      step: int, seed: int) -> None:
        """Before the step's forward pass (LISA switches blocks here)."""

    def step(self, model: nn.Module, batch: dict[str, Any], optimizer: torch.optim.Optimizer,
             params: Any, step: int, ctx: StepContext) -> torch.Tensor:
        """One update; returns the (detached) loss to record."""
        import torch

        loss, total = ctx.loss_fn(model, batch, step)
        total.backward()
        if ctx.max_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], ctx.max_grad_norm)
        optimizer.step()
        return loss.detach()

    def loss_framing(self, framing: Framing, params: Any) -> Framing:
        """The framing whose ``loss`` the step optimises: the framing itself, or a loss
        override that computes it from the framing's ``head_inputs`` (chunked_ce)."""
        return framing

    def extra_state(self, optimizer: torch.optim.Optimizer) -> list[Any]:
        """Tensors the method keeps outside ``optimizer.state`` (counted by the memory probe)."""
        return []

    def paper_accounting(self, model: nn.Module, optimizer: torch.optim.Optimizer, params: Any) -> dict[str, Any]:
        """The memory the method's paper counts, when it is an estimate rather than a peak
        (GaLore Tables 2/4: bf16 weights + the projected matrices' states), for the probe's
        memory.json; empty when the paper measured peaks (the default)."""
        return {}

    def probe_stride(self, params: Any) -> int:
        """Steps between the memory probe's steps: one per switching interval for a method
        that changes what it trains every K steps, so two probe steps cross a switch."""
        return 1

    # Checkpoint/resume: a strategy keeps no state of its own unless it says so; state that
    # is a function of (seed, step) is rebuilt by ``on_step_begin`` after a resume.
    def checkpoint_state(self) -> dict[str, Any]:
        return {}
