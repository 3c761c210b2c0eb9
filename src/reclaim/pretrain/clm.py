"""Causal-language-model continued pretraining: next-token cross-entropy on every real token
(GPT-2, Radford et al. 2019, Sec. 2), the objective of the loss-reweighting paper's LM runs
(Sow et al., arXiv 2502.06733, Sec. 5). Per-example losses (mean over the example's predicted
tokens) feed the reweighting hook unchanged.

Saving: a model loaded from a GGUF file (SmolLM2's packaged Q4_1) is dequantized by
transformers into an ordinary torch model, but marked quantized, so ``save_pretrained`` refuses
it: its state dict is written with safetensors and its config without the GGUF quantization
entry, the tokenizer beside them, so later steps load the directory without the GGUF file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclaim.pretrain._base import Objective, PretrainParams


class CausalLM(Objective):
    def load(self, model):  # type: ignore[no-untyped-def]
        from transformers import AutoModelForCausalLM

        from reclaim.models import load_pretrained, load_tokenizer

        tok = load_tokenizer(model)
        return load_pretrained(AutoModelForCausalLM, model), tok

    def collate(self, tokenizer: Any, ids: list[list[int]], params: PretrainParams, generator):  # type: ignore[no-untyped-def]
        import torch

        from reclaim.framings._base import pad

        input_ids = pad(ids, tokenizer.pad_token_id)
        attention = pad([[1] * len(s) for s in ids], 0)
        labels = torch.where(attention.bool(), input_ids, torch.full_like(input_ids, -100))
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}

    def example_losses(self, model, batch):  # type: ignore[no-untyped-def]
        import torch.nn.functional as F

        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        labels = batch["labels"][:, 1:]
        tok = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1),
                              ignore_index=-100, reduction="none").view(labels.shape)
        counts = (labels != -100).sum(dim=1)
        return tok.sum(dim=1) / counts.clamp(min=1), counts

    def save(self, model, tokenizer, base, out_dir: Path) -> list[str]:  # type: ignore[no-untyped-def]
        from reclaim.models import save_model_dir

        save_model_dir(model, tokenizer, out_dir)
        return sorted(p.name for p in out_dir.iterdir())


OBJECTIVE = CausalLM()
