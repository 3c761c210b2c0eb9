"""Text-to-text with label words (the LoRA-GA paper's T5 setup, arXiv 2407.05000 sec. 4.1):
the model is trained to generate the gold label word; prediction scores every label word's
log-likelihood and takes the best, so 3-class tasks (MNLI) are scored correctly."""

from __future__ import annotations

from reclaim.framings._base import (
    Framing,
    pad,
    require_classification,
    sequence_logprob,
    token_losses,
)


class Seq2SeqLabelWords(Framing):
    name = "seq2seq"

    def load(self, model, task):  # type: ignore[no-untyped-def]
        require_classification(self, task)
        from transformers import AutoModelForSeq2SeqLM

        from reclaim.models import load_pretrained, load_tokenizer

        return load_pretrained(AutoModelForSeq2SeqLM, model), load_tokenizer(model)

    def encode(self, tokenizer, task, rows, max_length):  # type: ignore[no-untyped-def]
        require_classification(self, task)
        words = [tokenizer(w)["input_ids"] for w in task.label_words]
        return [
            {
                "input_ids": tokenizer(task.prompt(r["text_a"], r["text_b"]), truncation=True,
                                       max_length=max_length)["input_ids"],
                "label": int(r["label"]),
                "label_words": words,
            }
            for r in rows
        ]

    def collate(self, tokenizer, items):  # type: ignore[no-untyped-def]
        import torch

        ids = [it["input_ids"] for it in items]
        words = items[0]["label_words"]
        labels = [it["label"] for it in items]
        return {
            "input_ids": pad(ids, tokenizer.pad_token_id),
            "attention_mask": pad([[1] * len(s) for s in ids], 0),
            "labels": torch.tensor(labels, dtype=torch.long),
            "targets": pad([words[y] for y in labels], -100),
            "word_targets": torch.stack([pad([w] * len(items), -100) for w in _same_width(words)]),
        }

    def loss(self, model, batch):  # type: ignore[no-untyped-def]
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    labels=batch["targets"])
        return out.loss

    def example_losses(self, model, batch):  # type: ignore[no-untyped-def]
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       labels=batch["targets"]).logits
        return token_losses(logits, batch["targets"])

    def predict(self, model, batch):  # type: ignore[no-untyped-def]
        import torch

        enc = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        scores = []
        for targets in batch["word_targets"]:
            logits = model(encoder_outputs=enc, attention_mask=batch["attention_mask"],
                           labels=targets).logits
            scores.append(sequence_logprob(logits, targets))
        return torch.stack(scores, dim=-1).argmax(dim=-1)


def _same_width(words: list[list[int]]) -> list[list[int]]:
    width = max(len(w) for w in words)
    return [w + [-100] * (width - len(w)) for w in words]


FRAMING = Seq2SeqLabelWords()
