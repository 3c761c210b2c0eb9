"""Masked-language-model continued pretraining (BERT, Devlin et al., arXiv 1810.04805,
Sec. 3.1: 15 % of the tokens are chosen; of those 80 % become [MASK], 10 % a random token,
10 % stay; the loss is the cross-entropy on the chosen tokens).

Written here rather than through ``DataCollatorForLanguageModeling`` because that collator
draws from torch's global generator; the masks here come from a generator seeded by the job,
so the same seed masks the same tokens on any machine.

A sentence-embedding checkpoint (all-MiniLM-L6-v2) ships without an MLM head: transformers
initialises one (seeded by the job) and it trains with the encoder. The saved directory holds
the encoder with the checkpoint's own pooler, so fine-tuning from it differs from fine-tuning
the original only by what the pretraining changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclaim.pretrain._base import Objective, PretrainParams


class MaskedLM(Objective):
    def load(self, model):  # type: ignore[no-untyped-def]
        from transformers import AutoModelForMaskedLM

        from reclaim.models import load_pretrained, load_tokenizer

        tok = load_tokenizer(model)
        if tok.mask_token_id is None:
            raise ValueError(f"model {model.name}: its tokenizer has no mask token, so it cannot train "
                             "with objective mlm")
        return load_pretrained(AutoModelForMaskedLM, model), tok

    def collate(self, tokenizer: Any, ids: list[list[int]], params: PretrainParams, generator):  # type: ignore[no-untyped-def]
        import torch

        from reclaim.framings._base import pad

        input_ids = pad(ids, tokenizer.pad_token_id)
        attention = pad([[1] * len(s) for s in ids], 0)
        special = torch.tensor([tokenizer.get_special_tokens_mask(s, already_has_special_tokens=True)
                                + [1] * (input_ids.shape[1] - len(s)) for s in ids], dtype=torch.bool)
        draw = torch.rand(input_ids.shape, generator=generator)
        chosen = (draw < params.mask_prob) & ~special
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
        how = torch.rand(input_ids.shape, generator=generator)
        random_ids = torch.randint(len(tokenizer), input_ids.shape, generator=generator)
        masked = input_ids.clone()
        masked[chosen & (how < 0.8)] = tokenizer.mask_token_id
        swap = chosen & (how >= 0.8) & (how < 0.9)
        masked[swap] = random_ids[swap]
        batch = {"input_ids": masked, "attention_mask": attention, "labels": labels}
        return batch

    def example_losses(self, model, batch):  # type: ignore[no-untyped-def]
        """The MLM head applied to the chosen positions only (15 % of them), not to every
        position as ``BertForMaskedLM.forward`` does: the head's vocabulary projection costs
        about as much as the whole MiniLM encoder, and the loss only reads chosen tokens."""
        import torch
        import torch.nn.functional as F

        inputs = {k: v for k, v in batch.items() if k != "labels"}
        hidden = getattr(model, model.base_model_prefix)(**inputs).last_hidden_state
        labels = batch["labels"]
        chosen = labels != -100
        head = model.get_output_embeddings()
        mlm_head = model.cls if hasattr(model, "cls") else model.lm_head  # BERT family / RoBERTa family
        if head is None or mlm_head is None:
            raise ValueError(f"{type(model).__name__}: no masked-LM head found")
        logits = mlm_head(hidden[chosen]).float()
        tok = F.cross_entropy(logits, labels[chosen], reduction="none")
        rows = chosen.nonzero()[:, 0]
        counts = chosen.sum(dim=1)
        sums = torch.zeros(labels.shape[0], dtype=tok.dtype, device=tok.device).index_add(0, rows, tok)
        return sums / counts.clamp(min=1), counts

    def save(self, model, tokenizer, base, out_dir: Path) -> list[str]:  # type: ignore[no-untyped-def]
        from transformers import AutoModel

        from reclaim.models import load_pretrained

        encoder = load_pretrained(AutoModel, base)  # the checkpoint's architecture, pooler included
        trained = getattr(model, model.base_model_prefix).state_dict()
        missing, unexpected = encoder.load_state_dict(trained, strict=False)
        if unexpected or any(not k.startswith("pooler.") for k in missing):
            raise RuntimeError(f"mlm save: encoder weights do not line up (missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]})")
        encoder.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        return sorted(p.name for p in out_dir.iterdir())


OBJECTIVE = MaskedLM()
