"""AdaLoRA (Zhang et al., arXiv 2303.10512): SVD-form adapters P diag(lambda) Q whose ranks
are pruned by an importance budget during training. PEFT's AdaLoraConfig and
``update_and_allocate`` do the allocation; the trainer calls it after every optimizer step.

The orthogonality regulariser R(P, Q) = ||P^T P - I||_F + ||Q Q^T - I||_F (paper eq. 4,
averaged over matrices as PEFT does) is added here, because PEFT adds it only when the model
itself returns a loss, and reclaim's framings compute their own loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.adapters._base import check_positive
from reclaim.adapters._lora import LoraAdapter, check_rank, linear_targets


@dataclass(frozen=True)
class AdaLoraParams:
    init_r: int = 12
    target_r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    tinit_frac: float = 0.1  # warm-up without pruning, as a fraction of the training steps
    tfinal_frac: float = 0.2  # final phase with the ranks fixed
    delta_t: int = 10  # steps between budget re-allocations
    beta1: float = 0.85
    beta2: float = 0.85
    orth_reg_weight: float = 0.5
    target_modules: str | tuple[str, ...] = "all-linear"

    def __post_init__(self) -> None:
        check_rank("init_r", self.init_r)
        check_rank("target_r", self.target_r)
        if self.target_r > self.init_r:
            raise ValueError(f"target_r ({self.target_r}) must be <= init_r ({self.init_r})")
        check_positive("alpha", self.alpha)
        check_rank("delta_t", self.delta_t)
        if not 0 <= self.tinit_frac < 1 or not 0 <= self.tfinal_frac < 1 or self.tinit_frac + self.tfinal_frac >= 1:
            raise ValueError("tinit_frac and tfinal_frac must be in [0, 1) and sum to < 1")


class AdaLoraAdapter(LoraAdapter):
    Params = AdaLoraParams

    def apply(self, model, params, ctx):  # type: ignore[no-untyped-def]
        from peft import AdaLoraConfig, get_peft_model

        total = ctx.total_steps
        tinit = int(params.tinit_frac * total)
        tfinal = int(params.tfinal_frac * total)
        if tinit >= total - tfinal:  # too few steps for a budgeting phase: no pruning
            tinit, tfinal = 0, max(0, total - 2)
        config = AdaLoraConfig(
            init_r=params.init_r, target_r=params.target_r, lora_alpha=params.alpha,
            lora_dropout=params.dropout, tinit=tinit, tfinal=tfinal, deltaT=params.delta_t,
            beta1=params.beta1, beta2=params.beta2, orth_reg_weight=params.orth_reg_weight,
            total_step=total, target_modules=linear_targets(model, params.target_modules, ctx.head_modules),
            modules_to_save=ctx.head_modules or None,
        )
        return get_peft_model(model, config)

    def extra_loss(self, model: Any, params: Any) -> Any:
        import torch

        terms = []
        for name, p in model.named_parameters():
            if not p.requires_grad or "default" not in name:
                continue
            if "lora_A" in name:
                cov = p @ p.T
            elif "lora_B" in name:
                cov = p.T @ p
            else:
                continue
            terms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype)))
        if not terms or params.orth_reg_weight == 0:
            return None
        return params.orth_reg_weight * torch.stack(terms).mean()

    def on_step_end(self, model: Any, params: Any, step: int) -> None:
        model.base_model.update_and_allocate(step)

    _IPT = ("ipt", "exp_avg_ipt", "exp_avg_unc")

    def checkpoint_state(self, model: Any, params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The rank allocator's smoothed importance scores and the current rank pattern: without
        them a resumed run would prune different ranks than an uninterrupted one."""
        base = model.base_model
        alloc = base.rankallocator
        tensors = {f"{kind}/{n}": t for kind in self._IPT for n, t in getattr(alloc, kind).items()}
        return tensors, {"rank_pattern": base.peft_config[base.trainable_adapter_name].rank_pattern}

    def load_checkpoint_state(self, model: Any, params: Any, tensors: dict[str, Any],
                              meta: dict[str, Any]) -> None:
        base = model.base_model
        alloc = base.rankallocator
        alloc.reset_ipt()
        device = next(model.parameters()).device
        for key, t in tensors.items():
            kind, name = key.split("/", 1)
            if kind not in self._IPT:
                raise ValueError(f"AdaLoRA checkpoint: unknown rank-allocator state {key!r}")
            getattr(alloc, kind)[name] = t.to(device)
        base.peft_config[base.trainable_adapter_name].rank_pattern = meta.get("rank_pattern")


ADAPTER = AdaLoraAdapter()
