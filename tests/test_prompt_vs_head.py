"""ZO-Bench's task-alignment ablation: the causal_lm_head framing (one decoder, the label-word
prompt's text, a fresh classification head on the last real token) and the zo_bench_sst2
aggregator's prompt-vs-head verdict."""

from __future__ import annotations

import json

import pytest
import torch

from reclaim import framings
from reclaim.data.tasks import get_task
from reclaim.models import resolve

ROWS = [{"text_a": "a fine film , warm and funny", "text_b": None, "label": 1},
        {"text_a": "dull", "text_b": None, "label": 0},
        {"text_a": "the plot goes nowhere and the acting is worse", "text_b": None, "label": 0}]


def test_head_framing_reads_the_prompt_at_its_last_real_token(tiny_models) -> None:  # type: ignore[no-untyped-def]
    task = get_task("sst2")
    head = framings.get("causal_lm_head")
    model, tok = head.load(resolve("tiny-llama-head", {"framing": "causal_lm_head",
                                                       "local_dir": str(tiny_models["llama"])}), task)
    assert type(model).__name__ == "LlamaForSequenceClassification" and head.head_modules(model) == ["score"]
    items = head.encode(tok, task, ROWS, max_length=24)
    prompt = framings.get("causal_lm").encode(tok, task, ROWS, max_length=24 + 2)
    cue = tok("\nresult:", add_special_tokens=False)["input_ids"]
    for it, p in zip(items, prompt, strict=True):
        assert it["input_ids"][-len(cue):] == cue and len(it["input_ids"]) <= 24
        assert it["input_ids"] == p["prompt"]  # the same text the label-word framing scores
    batch = head.collate(tok, items)
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()  # padded on the right
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        feats = head.features(model, batch)
        # the head reads the last real token's hidden state, padding ignored
        assert torch.allclose(model.score(feats), logits, atol=1e-5)
        loss = head.loss(model, batch)
        assert torch.isclose(loss, torch.nn.functional.cross_entropy(logits, batch["labels"]), atol=1e-6)
        assert head.predict(model, batch).tolist() == logits.argmax(-1).tolist()
    losses, counts = head.example_losses(model, batch)
    assert losses.shape == (3,) and torch.equal(counts, torch.ones(3))


def _quality(model: str, method: str, seed: int, acc: float) -> dict:
    return {"arm": method, "model": model, "task": "sst2", "seed": seed,
            "result": {"spec": {"method": {"name": method}}, "metrics": {"accuracy": acc},
                       "trainable_params": 10, "total_params": 10, "steps": 5, "device_name": "cpu"}}


@pytest.mark.parametrize("head_acc,verdict", [(80.0, "holds"), (95.0, "does not hold")])
def test_zo_bench_prompt_vs_head_verdict_is_computed_per_task(tmp_path, head_acc, verdict) -> None:  # type: ignore[no-untyped-def]
    from reclaim.claims import get

    agg = get("zo_bench_sst2")
    claim = {"arms": {"fo_sgd": [{"train": {"method": "fo_sgd"}}], "zo_sgd": [{"train": {"method": "zo_sgd"}}],
                      "zo_sgd_memory": [{"probe": {"method": "zo_sgd"}}],
                      "zo_adam_memory": [{"probe": {"method": "zo_adam"}}]},
             "verdict": {"prompt_model": "lm", "head_model": "lm-head"}}
    agg.check_config(claim, "claims.zo")
    runs = [_quality(m, meth, s, acc + s * 0.1 + (head_acc - 80.0 if m == "lm-head" and meth == "zo_sgd" else 0))
            for s in (0, 1, 2) for m, base in (("lm", 85.0), ("lm-head", 80.0))
            for meth, acc in (("zo_sgd", base), ("fo_sgd", base + 5))]
    out = agg.aggregate_runs("zo", claim, "small", runs, tmp_path / "t.csv", tmp_path / "t.json", tmp_path / "t.png")
    d = out["verdicts"]["lm/sst2"]["d_prompt_at_least_head_under_zo"]
    assert d["verdict"] == verdict and d["estimate"] == pytest.approx(85.0 - head_acc)
    assert out["metrics"]["lm/sst2/fo_sgd/prompt_minus_head"] == pytest.approx(5.0)
    assert "prompt_vs_head" not in out["skipped"]
    assert json.loads((tmp_path / "t.json").read_text())["verdicts"]["lm/sst2"]["d_prompt_at_least_head_under_zo"]
    # without both models the ablation is listed as skipped, never guessed
    one = agg.aggregate_runs("zo", claim, "small", [r for r in runs if r["model"] == "lm"], tmp_path / "u.csv",
                             tmp_path / "u.json", tmp_path / "u.png")
    assert "prompt_vs_head" in one["skipped"]
    assert "d_prompt_at_least_head_under_zo" not in one["verdicts"]["lm/sst2"]
    with pytest.raises(ValueError, match="prompt_model and head_model name two models"):
        agg.check_config({**claim, "verdict": {"prompt_model": "lm"}}, "claims.zo")
