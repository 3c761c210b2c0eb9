"""Encoder + classification head (BERT-style), the embedded default framing.

A regression task (STS-B) gets a 1-output head trained with MSE and predicts the raw
output, a float; as in transformers, one output means regression."""

from __future__ import annotations

from typing import Any

from reclaim.framings._base import Framing, pad


class EncoderClassification(Framing):
    name = "encoder_cls"

    def load(self, model, task):  # type: ignore[no-untyped-def]
        from transformers import AutoModelForSequenceClassification

        from reclaim.models import load_pretrained, load_tokenizer

        tok = load_tokenizer(model)
        extra = {"problem_type": "regression"} if task.is_regression else {}
        net = load_pretrained(
            AutoModelForSequenceClassification, model,
            num_labels=task.num_labels, ignore_mismatched_sizes=True, **extra,
        )
        if net.config.pad_token_id is None:
            net.config.pad_token_id = tok.pad_token_id
        return net, tok

    def head_modules(self, model):  # type: ignore[no-untyped-def]
        children = dict(model.named_children())
        return [n for n in ("classifier", "score") if n in children]

    def encode(self, tokenizer, task, rows, max_length):  # type: ignore[no-untyped-def]
        label = float if task.is_regression else int
        items = []
        for r in rows:
            enc = tokenizer(r["text_a"], r["text_b"], truncation=True, max_length=max_length)
            item: dict[str, Any] = {"input_ids": enc["input_ids"], "label": label(r["label"])}
            if "token_type_ids" in enc:
                item["token_type_ids"] = enc["token_type_ids"]
            items.append(item)
        return items

    def collate(self, tokenizer, items):  # type: ignore[no-untyped-def]
        import torch

        ids = [it["input_ids"] for it in items]
        labels = [it["label"] for it in items]
        batch = {
            "input_ids": pad(ids, tokenizer.pad_token_id),
            "attention_mask": pad([[1] * len(s) for s in ids], 0),
            # encode() makes regression labels floats, class labels ints
            "labels": torch.tensor(labels, dtype=torch.float32 if isinstance(labels[0], float)
                                   else torch.long),
        }
        if "token_type_ids" in items[0]:
            batch["token_type_ids"] = pad([it["token_type_ids"] for it in items], 0)
        return batch

    def features(self, model, batch):  # type: ignore[no-untyped-def]
        """The encoder's last hidden states mean-pooled over real tokens (the pooling
        sentence-transformers models such as MiniLM are trained with); the head is unused."""
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = model.base_model(**inputs).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def _logits(self, model, batch):  # type: ignore[no-untyped-def]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs).logits

    def loss(self, model, batch):  # type: ignore[no-untyped-def]
        import torch.nn.functional as F

        logits = self._logits(model, batch).float()
        if logits.shape[-1] == 1:
            return F.mse_loss(logits.squeeze(-1), batch["labels"].float())
        return F.cross_entropy(logits, batch["labels"])

    def example_losses(self, model, batch):  # type: ignore[no-untyped-def]
        import torch
        import torch.nn.functional as F

        logits = self._logits(model, batch).float()
        if logits.shape[-1] == 1:
            losses = F.mse_loss(logits.squeeze(-1), batch["labels"].float(), reduction="none")
        else:
            losses = F.cross_entropy(logits, batch["labels"], reduction="none")
        return losses, torch.ones_like(losses)

    def predict(self, model, batch):  # type: ignore[no-untyped-def]
        logits = self._logits(model, batch)
        if logits.shape[-1] == 1:
            return logits.squeeze(-1).float()
        return logits.argmax(dim=-1)


FRAMING = EncoderClassification()
