"""Decoder-only LM with a classification head: the same prompt text as ``causal_lm``, read by a
new linear head on the last real token's hidden state (transformers'
``*ForSequenceClassification`` for decoders), cross-entropy over the classes.

It exists for ZO-Bench's task-alignment ablation (Zhang et al., arXiv 2402.11592, abstract:
task alignment matters; MeZO, Malladi et al., arXiv 2305.17333, prompt-based fine-tuning, and
princeton-nlp/MeZO issue #6: zeroth-order fine-tuning needs prompts): one model, the same
text, posed once as label words
(``causal_lm``) and once to a fresh head (this framing), so the accuracy difference is the
framing's. The head starts from the job's seed; adapters keep it trainable."""

from __future__ import annotations

from reclaim.framings._base import require_classification
from reclaim.framings.encoder_cls import EncoderClassification


class CausalClassificationHead(EncoderClassification):
    name = "causal_lm_head"

    def load(self, model, task):  # type: ignore[no-untyped-def]
        require_classification(self, task)
        from transformers import AutoModelForSequenceClassification

        from reclaim.models import load_pretrained, load_tokenizer

        tok = load_tokenizer(model)
        net = load_pretrained(AutoModelForSequenceClassification, model, num_labels=task.num_labels,
                              ignore_mismatched_sizes=True)
        if net.config.pad_token_id is None:  # the head pools the last token that is not padding
            net.config.pad_token_id = tok.pad_token_id
        return net, tok

    def encode(self, tokenizer, task, rows, max_length):  # type: ignore[no-untyped-def]
        """The ``causal_lm`` prompt up to and including its "result:" cue, without a label
        word, truncated from the left of the cue so the cue (the pooled position) survives."""
        require_classification(self, task)
        suffix = tokenizer("\nresult:", add_special_tokens=False)["input_ids"]
        budget = max_length - len(suffix)
        if budget < 8:
            raise ValueError(f"max_length {max_length} leaves no room for the prompt")
        items = []
        for r in rows:
            head = task.prompt(r["text_a"], r["text_b"]).rsplit("\nresult:", 1)[0]
            items.append({"input_ids": tokenizer(head)["input_ids"][:budget] + suffix, "label": int(r["label"])})
        return items

    def features(self, model, batch):  # type: ignore[no-untyped-def]
        """The last real token's final hidden state (what the head reads)."""
        import torch

        hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        last = batch["attention_mask"].sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0]), last]


FRAMING = CausalClassificationHead()
