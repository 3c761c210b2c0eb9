"""Shared LoRA machinery (PEFT-backed) for the LoRA family of adapters.

LoRA: Hu et al., arXiv 2106.09685. A layer computes W x + s B A x with A (r x n),
B (m x r) and s = alpha / r, or alpha / sqrt(r) with rsLoRA (Kalajdzievski, arXiv 2312.03732).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reclaim.adapters._base import Adapter, AdapterContext, check_positive

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class LoraParams:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"

    def __post_init__(self) -> None:
        check_rank("r", self.r)
        check_positive("alpha", self.alpha)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def check_rank(name: str, r: Any) -> None:
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {r!r}")


def linear_targets(model: nn.Module, spec: str | tuple[str, ...] | list[str],
                   exclude: list[str]) -> list[str]:
    """Full names of the Linear (and GPT-2 Conv1D) layers to adapt.

    "all-linear" is every linear layer except the fresh heads in ``exclude`` and the output
    embedding (lm_head), which the paper's "all linear layers" setup leaves alone.
    """
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = []
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.Linear, Conv1D)) or mod is out_emb:
            continue
        if any(name == h or name.startswith(h + ".") for h in exclude):
            continue
        if spec != "all-linear" and name.split(".")[-1] not in spec:
            continue
        names.append(name)
    if not names:
        raise ValueError(f"no linear layers match target_modules={spec!r}")
    return names


def lora_layers(model: nn.Module) -> dict[str, Any]:
    """PEFT LoRA layers keyed by the original module name."""
    from peft.tuners.lora import LoraLayer

    prefix = "base_model.model."
    return {
        (n[len(prefix):] if n.startswith(prefix) else n): m
        for n, m in model.named_modules()
        if isinstance(m, LoraLayer)
    }


class LoraAdapter(Adapter):
    """Plain LoRA through PEFT; subclasses flip PEFT switches (rsLoRA, DoRA, PiSSA init)."""

    Params: type = LoraParams
    use_rslora = False
    use_dora = False

    def init_lora_weights(self, params: Any) -> bool | str:
        return True

    def lora_config(self, model: nn.Module, params: Any, ctx: AdapterContext, **extra: Any) -> Any:
        from peft import LoraConfig

        targets = linear_targets(model, params.target_modules, ctx.head_modules)
        kwargs: dict[str, Any] = dict(
            r=params.r, lora_alpha=params.alpha, lora_dropout=params.dropout,
            target_modules=targets, use_rslora=self.use_rslora, use_dora=self.use_dora,
            init_lora_weights=self.init_lora_weights(params),
            modules_to_save=ctx.head_modules or None,
        )
        kwargs.update(extra)
        return LoraConfig(**kwargs)

    def apply(self, model: nn.Module, params: Any, ctx: AdapterContext) -> nn.Module:
        from peft import get_peft_model

        return get_peft_model(model, self.lora_config(model, params, ctx))

    def save(self, model: nn.Module, params: Any, out_dir: Path) -> list[str]:
        model.save_pretrained(str(out_dir))
        return sorted(p.name for p in out_dir.iterdir())


class ResidualLoraAdapter(LoraAdapter):
    """LoRA variants whose init moves part of W into the adapter (W <- W - s B0 A0: PiSSA,
    LoRA-GA). The initial factors are recorded so the saved adapter still works on the
    ORIGINAL base weights: it is saved at rank 2r as B' = [B | B0], A' = [A ; -A0], with
    alpha rescaled so the scale s is unchanged, hence s B'A' = s (BA - B0 A0)."""

    def record_initial(self, model: nn.Module) -> None:
        self._initial = {
            name: (layer.lora_A["default"].weight.detach().clone(),
                   layer.lora_B["default"].weight.detach().clone())
            for name, layer in lora_layers(model).items()
        }

    def save(self, model: nn.Module, params: Any, out_dir: Path) -> list[str]:
        import torch
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        config = model.peft_config["default"]
        state = get_peft_model_state_dict(model)
        layers = lora_layers(model)
        scale = next(iter(layers.values())).scaling["default"]
        for name, (a0, b0) in self._initial.items():
            key = f"base_model.model.{name}"
            a, b = state[f"{key}.lora_A.weight"], state[f"{key}.lora_B.weight"]
            state[f"{key}.lora_A.weight"] = torch.cat([a, -a0.to(a)], dim=0).contiguous()
            state[f"{key}.lora_B.weight"] = torch.cat([b, b0.to(b)], dim=1).contiguous()
        r2 = 2 * config.r
        cfg = config.to_dict()
        cfg.update(r=r2, lora_alpha=scale * (math.sqrt(r2) if config.use_rslora else r2),
                   init_lora_weights=True, lora_ga_config=None)
        for k, v in list(cfg.items()):
            if isinstance(v, set):
                cfg[k] = sorted(v)
        save_file({k: v.contiguous() for k, v in state.items()}, str(out_dir / "adapter_model.safetensors"))
        (out_dir / "adapter_config.json").write_text(json.dumps(cfg, indent=2, default=str))
        return sorted(p.name for p in out_dir.iterdir())


def weight_matrix(layer: Any) -> torch.Tensor:
    """The base weight as (out, in), whatever the storage layout (GPT-2 Conv1D is (in, out))."""
    w = layer.get_base_layer().weight
    return w.T if layer.fan_in_fan_out else w

