"""Dev-split accuracy of a sequence classifier saved by an earlier step (a fine-tuned model,
``trained``, or its compressed version, ``compressed``), with the activation quantizers its
directory carries (reclaim.compress._act): the same evaluator scores the float model and every
quantized arm, on the whole dev split (or its first ``max_examples`` in canonical order).

Besides the task's metrics it keeps each example's correctness, so a claim gets paired
bootstrap errors of accuracy differences between arms (same examples, same order)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reclaim.select._base import ModelContext

MODEL_DIRS = {"compressed": "model", "trained": "adapter", "pretrained": "model"}


@dataclass(frozen=True)
class GlueAccuracyParams:
    max_examples: int | None = None
    max_length: int = 128
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.max_examples is not None and (not isinstance(self.max_examples, int) or self.max_examples < 1):
            raise ValueError(f"max_examples must be an integer >= 1 or null, got {self.max_examples!r}")
        for key in ("max_length", "batch_size"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {getattr(self, key)!r}")


def model_dir(inputs: dict[str, str]) -> Path:
    for key, sub in MODEL_DIRS.items():
        if key in inputs:
            return Path(inputs[key]).parent / sub
    raise ValueError("glue_accuracy scores a model an earlier step wrote (a train step with a saved model, "
                     "or a compress step); the arm has none")


class GlueAccuracy:
    Params = GlueAccuracyParams
    inputs: tuple[str, ...] = ("dev_split",)
    optional_inputs = tuple(MODEL_DIRS)
    needs_model = True

    def make_params(self, raw: dict[str, Any] | None) -> GlueAccuracyParams:
        from reclaim.registry import make_params

        return make_params(GlueAccuracyParams, raw)

    def evaluate(self, inputs: dict[str, str], params: GlueAccuracyParams, model: ModelContext) -> dict[str, Any]:
        import torch
        from transformers import AutoModelForSequenceClassification

        from reclaim import framings
        from reclaim.compress import _act
        from reclaim.data.tasks import get_task, read_rows
        from reclaim.metrics import compute
        from reclaim.models import ResolvedModel, load_pretrained, load_tokenizer

        if model.threads:
            torch.set_num_threads(model.threads)
        where = model_dir(inputs)
        net = load_pretrained(AutoModelForSequenceClassification, ResolvedModel("artifact", str(where), "local_dir"))
        net.eval()
        has_tok = any((where / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
        tok = load_tokenizer(ResolvedModel("artifact", str(where), "local_dir") if has_tok else model.location)
        act = _act.apply(net, where)
        task = get_task(model.task)
        framing = framings.get(model.identity["framing"])
        rows = read_rows(inputs["dev_split"], ("text_a", "text_b", "label"))[: params.max_examples]
        items = framing.encode(tok, task, rows, params.max_length)
        preds: list[float] = []
        with torch.inference_mode():
            for i in range(0, len(items), params.batch_size):
                preds.extend(framing.predict(net, framing.collate(tok, items[i:i + params.batch_size])).tolist())
        labels = [it["label"] for it in items]
        metrics = compute(task.metrics, preds, labels)
        correct = [int(p == y) for p, y in zip(preds, labels, strict=True)]
        return {**metrics, "accuracy": 100.0 * sum(correct) / len(correct), "correct": correct, "n_eval": len(items),
                "model": str(where), "activation_bits": act["bits"] if act else None}


EVALUATOR = GlueAccuracy()
