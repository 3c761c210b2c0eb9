"""Decoder-only LM with label words: prompt, then the gold label word as the continuation.
Loss is on the label-word tokens only; prediction scores every label word's log-likelihood
(same protocol as the seq2seq framing, so the two are comparable)."""

from __future__ import annotations

from reclaim.framings._base import (
    Framing,
    lm_head_inputs,
    pad,
    require_classification,
    sequence_logprob,
    token_losses,
)


class CausalLabelWords(Framing):
    name = "causal_lm"

    def load(self, model, task):  # type: ignore[no-untyped-def]
        require_classification(self, task)
        from transformers import AutoModelForCausalLM

        from reclaim.models import load_pretrained, load_tokenizer

        tok = load_tokenizer(model)
        net = load_pretrained(AutoModelForCausalLM, model)
        if net.config.pad_token_id is None:
            net.config.pad_token_id = tok.pad_token_id
        return net, tok

    def encode(self, tokenizer, task, rows, max_length):  # type: ignore[no-untyped-def]
        require_classification(self, task)
        words = [tokenizer(" " + w, add_special_tokens=False)["input_ids"] for w in task.label_words]
        suffix = tokenizer("\nresult:", add_special_tokens=False)["input_ids"]
        budget = max_length - len(suffix) - max(len(w) for w in words)
        if budget < 8:
            raise ValueError(f"max_length {max_length} leaves no room for the prompt")
        items = []
        for r in rows:
            head = task.prompt(r["text_a"], r["text_b"]).rsplit("\nresult:", 1)[0]
            prompt = tokenizer(head)["input_ids"][:budget] + suffix
            items.append({"prompt": prompt, "label": int(r["label"]), "label_words": words})
        return items

    def _sequences(self, tokenizer, items, classes):  # type: ignore[no-untyped-def]
        seqs, targets = [], []
        for it, c in zip(items, classes, strict=True):
            word = it["label_words"][c]
            seqs.append(it["prompt"] + word)
            # position t predicts token t+1: the target at the last prompt position is word[0]
            targets.append([-100] * (len(it["prompt"]) - 1) + word + [-100])
        ids = pad(seqs, tokenizer.pad_token_id)
        return {
            "input_ids": ids,
            "attention_mask": pad([[1] * len(s) for s in seqs], 0),
            "targets": pad(targets, -100)[:, : ids.shape[1]],
        }

    def collate(self, tokenizer, items):  # type: ignore[no-untyped-def]
        import torch

        labels = [it["label"] for it in items]
        batch = {f"gold_{k}": v for k, v in self._sequences(tokenizer, items, labels).items()}
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
        for c in range(len(items[0]["label_words"])):
            for k, v in self._sequences(tokenizer, items, [c] * len(items)).items():
                batch[f"c{c}_{k}"] = v
        return batch

    def loss(self, model, batch):  # type: ignore[no-untyped-def]
        import torch.nn.functional as F

        logits = model(input_ids=batch["gold_input_ids"], attention_mask=batch["gold_attention_mask"]).logits
        t = batch["gold_targets"]
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), t.reshape(-1), ignore_index=-100)

    def head_inputs(self, model, batch):  # type: ignore[no-untyped-def]
        hidden, weight = lm_head_inputs(model, batch["gold_input_ids"], batch["gold_attention_mask"])
        # gold_targets are aligned with positions already (position t predicts token t+1)
        return hidden.reshape(-1, hidden.shape[-1]), weight, batch["gold_targets"].reshape(-1)

    def example_losses(self, model, batch):  # type: ignore[no-untyped-def]
        logits = model(input_ids=batch["gold_input_ids"], attention_mask=batch["gold_attention_mask"]).logits
        return token_losses(logits, batch["gold_targets"])

    def predict(self, model, batch):  # type: ignore[no-untyped-def]
        import torch

        scores = []
        c = 0
        while f"c{c}_input_ids" in batch:
            logits = model(input_ids=batch[f"c{c}_input_ids"], attention_mask=batch[f"c{c}_attention_mask"]).logits
            scores.append(sequence_logprob(logits, batch[f"c{c}_targets"]))
            c += 1
        return torch.stack(scores, dim=-1).argmax(dim=-1)


FRAMING = CausalLabelWords()
