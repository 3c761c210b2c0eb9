"""LoRA on a frozen base inside a pretrain (causal-LM) step: the chain compress -> train of the
compression claims, where the base is a compressed model and only the low-rank factors train
(QLoRA's setting, Dettmers et al., arXiv 2305.14314, Sec. 3, here on fake-quantized weights).

``init: zero`` is LoRA's own start (Hu et al., arXiv 2106.09685, Sec. 4.1: A random, B = 0, so
training starts from the compressed model). ``init: compensation`` starts from the factors a
compensation step (EoRA or SVD, ``reclaim.compress.eora`` / ``svd_comp``) wrote for that base:
EoRA (arXiv 2410.21271) offers its factors as a start for fine-tuning the compressed model, and
the eora_wikitext claim asks whether that start beats the zero start (the paper's fine-tuning
numbers are not verified in the notes, so none are quoted). The base weights are then the *uncompensated* compressed model (the
directory the compensation step read), and the factors are loaded as a trainable PEFT adapter,
so the two arms differ only in where B and A start. PEFT does LoRA faithfully; nothing here
reimplements it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

INITS = ("zero", "compensation")


@dataclass(frozen=True)
class LoraStep:
    r: int = 8
    alpha: float | None = None   # None: alpha = r (scaling 1, what the compensation factors assume)
    init: str = "zero"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.r, int) and self.r >= 1):
            raise ValueError(f"r must be an integer >= 1, got {self.r!r}")
        if self.alpha is not None and not (isinstance(self.alpha, (int, float)) and self.alpha > 0):
            raise ValueError(f"alpha must be > 0 or null, got {self.alpha!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve(raw: dict[str, Any] | None) -> LoraStep:
    from reclaim.registry import make_params

    return make_params(LoraStep, raw)


def wrap(model: Any, lora: LoraStep, adapter_dir: str | None) -> tuple[Any, list[str]]:
    """The PEFT model with trainable LoRA factors, and the module names they sit on. With
    ``compensation`` the factors (and the modules) are the adapter's; their rank must be ``r``."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if lora.init == "compensation":
        if not adapter_dir or not (Path(adapter_dir) / "adapter_config.json").is_file():
            raise ValueError(f"lora.init compensation: no PEFT adapter at {adapter_dir!r} (the compensation "
                             "step writes its factors under model/adapter)")
        peft_model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
        cfg = peft_model.peft_config["default"]
        if cfg.r != lora.r:
            raise ValueError(f"lora.r: {lora.r} differs from the compensation factors' rank {cfg.r} ({adapter_dir})")
    else:
        config = LoraConfig(r=lora.r, lora_alpha=lora.alpha or lora.r, lora_dropout=lora.dropout, bias="none",
                            target_modules="all-linear", task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, config)
    prefix = "base_model.model."
    modules = sorted(n.removeprefix(prefix) for n, m in peft_model.named_modules()
                     if hasattr(m, "lora_A") and "default" in m.lora_A)
    return peft_model, modules


def save(peft_model: Any, out_dir: Path) -> Any:
    """The trained factors as a PEFT adapter under ``out_dir/adapter``; returns the merged model
    (base + B A), which is what the evaluators score."""
    peft_model.save_pretrained(str(out_dir / "adapter"))
    return peft_model.merge_and_unload()
