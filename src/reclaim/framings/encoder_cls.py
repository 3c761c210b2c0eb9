"""Encoder + classification head (BERT-style), the embedded default framing."""

from __future__ import annotations

from typing import Any

from reclaim.framings._base import Framing, pad


class EncoderClassification(Framing):
    name = "encoder_cls"

    def load(self, model, task):  # type: ignore[no-untyped-def]
        from transformers import AutoModelForSequenceClassification

        from reclaim.models import load_pretrained, load_tokenizer

        tok = load_tokenizer(model)
        net = load_pretrained(
            AutoModelForSequenceClassification, model,
            num_labels=task.num_labels, ignore_mismatched_sizes=True,
        )
        if net.config.pad_token_id is None:
            net.config.pad_token_id = tok.pad_token_id
        return net, tok

    def head_modules(self, model):  # type: ignore[no-untyped-def]
        children = dict(model.named_children())
        return [n for n in ("classifier", "score") if n in children]

    def encode(self, tokenizer, task, rows, max_length):  # type: ignore[no-untyped-def]
        items = []
        for r in rows:
            enc = tokenizer(r["text_a"], r["text_b"], truncation=True, max_length=max_length)
            item: dict[str, Any] = {"input_ids": enc["input_ids"], "label": int(r["label"])}
            if "token_type_ids" in enc:
                item["token_type_ids"] = enc["token_type_ids"]
            items.append(item)
        return items

    def collate(self, tokenizer, items):  # type: ignore[no-untyped-def]
        import torch

        ids = [it["input_ids"] for it in items]
        batch = {
            "input_ids": pad(ids, tokenizer.pad_token_id),
            "attention_mask": pad([[1] * len(s) for s in ids], 0),
            "labels": torch.tensor([it["label"] for it in items], dtype=torch.long),
        }
        if "token_type_ids" in items[0]:
            batch["token_type_ids"] = pad([it["token_type_ids"] for it in items], 0)
        return batch

    def _logits(self, model, batch):  # type: ignore[no-untyped-def]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs).logits

    def loss(self, model, batch):  # type: ignore[no-untyped-def]
        import torch.nn.functional as F

        return F.cross_entropy(self._logits(model, batch).float(), batch["labels"])

    def predict(self, model, batch):  # type: ignore[no-untyped-def]
        return self._logits(model, batch).argmax(dim=-1)


FRAMING = EncoderClassification()
