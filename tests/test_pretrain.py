"""Continued pretraining (reclaim.pretrain): seeded BERT masking, a job that lowers held-out
loss and writes a model directory the fine-tuning framing loads, and bad params named."""

from __future__ import annotations

import json

import pytest
import torch

from reclaim.io import write_jsonl
from reclaim.models import resolve
from reclaim.pretrain import _run, get
from reclaim.pretrain._base import PretrainParams
from reclaim.pretrain._base import resolve as resolve_params
from reclaim.train import TrackingConfig

WORDS = "the movie was good and the film was bad but the story is fine".split()


def _pool(path, n: int, seed: int = 0) -> str:
    import random

    rng = random.Random(seed)
    rows = [{"example_id": f"{i:04d}", "text": " ".join(rng.choice(WORDS) for _ in range(12)), "source": "s"}
            for i in range(n)]
    write_jsonl(path, rows)
    return str(path)


def _bert(tiny_models):  # type: ignore[no-untyped-def]
    return resolve("tiny-bert", {"framing": "encoder_cls", "local_dir": str(tiny_models["bert"])})


def test_mlm_masks_are_seeded_and_never_touch_special_or_pad_tokens(tiny_models) -> None:
    model = _bert(tiny_models)
    obj = get("mlm")
    _, tok = obj.load(model)
    ids = obj.encode(tok, ["the movie was good " * 20, "bad film"], 64)
    p = PretrainParams(mask_prob=0.3)
    a = obj.collate(tok, ids, p, torch.Generator().manual_seed(3))
    b = obj.collate(tok, ids, p, torch.Generator().manual_seed(3))
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    chosen = a["labels"] != -100
    specials = torch.tensor([[t in tok.all_special_ids for t in row] for row in
                             obj.collate(tok, ids, PretrainParams(mask_prob=1e-9), torch.Generator())["input_ids"].tolist()])
    assert not (chosen & specials).any()
    frac = chosen.sum().item() / (~specials).sum().item()
    assert 0.15 < frac < 0.45  # 30 % of ~85 real tokens
    masked = a["input_ids"][chosen] == tok.mask_token_id
    assert masked.float().mean() > 0.6  # ~80 % [MASK]


def test_pretrain_job_lowers_heldout_loss_and_saves_a_loadable_encoder(tiny_models, tmp_path) -> None:
    from transformers import AutoModelForSequenceClassification

    model = _bert(tiny_models)
    pool = _pool(tmp_path / "pool.jsonl", 64)
    held = _pool(tmp_path / "held.jsonl", 16, seed=1)
    spec = {"id": "abc", "seed": 0, "params": {"objective": "mlm", "epochs": 6, "batch_size": 8, "lr": 3e-3,
                                               "max_length": 32, "eval_examples": 16}}
    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}" / "pretrain.json"
        rec = _run.run(spec, json.dumps(model.__dict__), pool, None, held, str(out), threads=1,
                       tracking=TrackingConfig(), progress=False)
        outs.append(rec)
    rec = outs[0]
    assert rec["steps"] == 48 and rec["n_train"] == 64 and rec["n_heldout"] == 16
    assert rec["heldout_loss_after"] < rec["heldout_loss_before"] - 0.3
    assert rec["losses"] == outs[1]["losses"]  # same seed, same numbers
    net = AutoModelForSequenceClassification.from_pretrained(rec["model_dir"], num_labels=2)
    orig = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"], num_labels=2)
    emb = "bert.embeddings.word_embeddings.weight"
    assert not torch.equal(net.state_dict()[emb], orig.state_dict()[emb])  # the encoder moved
    assert torch.equal(net.state_dict()["bert.pooler.dense.weight"], orig.state_dict()["bert.pooler.dense.weight"])
    assert json.loads((tmp_path / "run0" / "pretrain.json").read_text())["id"] == "abc"
    assert not list((tmp_path / "run0").glob(".model.tmp-*"))


def test_pretrain_on_a_selection_reads_only_the_selected_rows(tiny_models, tmp_path) -> None:
    pool = _pool(tmp_path / "pool.jsonl", 40)
    (tmp_path / "subset.tsv").write_text("example_id\tweight\n" + "".join(f"{i:04d}\t1.0\n" for i in range(10)))
    spec = {"id": "s", "seed": 0, "params": {"objective": "mlm", "epochs": 1, "batch_size": 4, "max_length": 32,
                                             "eval_examples": 0}}
    rec = _run.run(spec, json.dumps(_bert(tiny_models).__dict__), pool, str(tmp_path / "subset.tsv"), None,
                   str(tmp_path / "o" / "pretrain.json"), threads=1, progress=False)
    assert rec["n_train"] == 10 and rec["steps"] == 3 and rec["heldout_loss_after"] is None


@pytest.mark.parametrize("raw,msg", [
    ({"objective": "nope"}, "unknown objective 'nope'"),
    ({"objective": "mlm", "mask_prob": 1.5}, "mask_prob must be in"),
    ({"objective": "mlm", "epochs": 0}, "epochs must be > 0"),
    ({"objective": "mlm", "steps": 3}, "steps"),
])
def test_bad_params_are_named(raw, msg) -> None:
    with pytest.raises((ValueError, TypeError), match=msg):
        resolve_params(raw)


def test_mlm_loss_on_chosen_positions_equals_the_full_forward(tiny_models) -> None:
    """The head applied to the chosen positions gives the loss BertForMaskedLM computes over
    every position."""
    import torch.nn.functional as F

    obj = get("mlm")
    model, tok = obj.load(_bert(tiny_models))
    model.eval()
    ids = obj.encode(tok, ["the movie was good and the film was bad " * 3, "fine story"], 40)
    batch = obj.collate(tok, ids, PretrainParams(mask_prob=0.4), torch.Generator().manual_seed(0))
    losses, counts = obj.example_losses(model, batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    full = F.cross_entropy(logits.transpose(1, 2), batch["labels"], ignore_index=-100, reduction="none")
    expected = full.sum(dim=1) / (batch["labels"] != -100).sum(dim=1).clamp(min=1)
    assert torch.allclose(losses, expected, atol=1e-5) and counts.tolist() == (batch["labels"] != -100).sum(1).tolist()


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_clm_job_lowers_heldout_perplexity_and_saves_a_loadable_model(kind, tiny_models, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    model = resolve(f"tiny-{kind}", {"framing": "causal_lm", "local_dir": str(tiny_models[kind])})
    spec = {"id": "c", "seed": 0, "params": {"objective": "clm", "epochs": 4, "batch_size": 8, "lr": 3e-3,
                                             "max_length": 32, "eval_examples": 16}}
    rec = _run.run(spec, json.dumps(model.__dict__), _pool(tmp_path / "pool.jsonl", 32),
                   None, _pool(tmp_path / "held.jsonl", 16, seed=1), str(tmp_path / "o" / "pretrain.json"),
                   threads=1, progress=False)
    assert rec["heldout_ppl_after"] < rec["heldout_ppl_before"]
    assert AutoModelForCausalLM.from_pretrained(rec["model_dir"]) is not None


def test_clm_example_losses_match_the_models_own_loss(tiny_models) -> None:
    obj = get("clm")
    model, tok = obj.load(resolve("tiny-gpt2", {"framing": "causal_lm", "local_dir": str(tiny_models["gpt2"])}))
    model.eval()
    ids = obj.encode(tok, ["the movie was good and the film was bad", "fine story"], 32)
    batch = obj.collate(tok, ids, PretrainParams(objective="clm"), torch.Generator())
    with torch.no_grad():
        ours = obj.loss(model, batch)
        theirs = model(**batch).loss  # HF's mean over every predicted (non -100) token
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_pretrain_with_loss_reweighting_records_the_strategy(tiny_models, tmp_path) -> None:
    model = resolve("tiny-gpt2", {"framing": "causal_lm", "local_dir": str(tiny_models["gpt2"])})
    spec = {"id": "r", "seed": 0, "params": {"objective": "clm", "max_steps": 4, "batch_size": 8, "max_length": 32,
                                             "eval_examples": 0},
            "reweighting": {"strategy": "linupper", "r": 1.0, "burn_in": 1}}
    rec = _run.run(spec, json.dumps(model.__dict__), _pool(tmp_path / "pool.jsonl", 32), None, None,
                   str(tmp_path / "o" / "pretrain.json"), threads=1, progress=False)
    assert rec["reweighting"]["strategy"] == "linupper" and rec["reweighting"]["reweighted_steps_in_process"] == 3


def test_wikitext_lm_pool_chunks_one_split_and_holds_out_the_other() -> None:
    from reclaim.data.pools import get as get_builder

    b = get_builder("wikitext_lm")
    p = b.Params(chunk_words=4, max_heldout_chunks=2)
    wiki = {"valid": "a b c d e f g h i", "test": "p q r s t u v w x y z w"}
    out = b.build(p, {}, wiki)
    assert [r["text"] for r in out["pool"]] == ["a b c d", "e f g h"]  # the tail "i" is dropped
    assert [r["text"] for r in out["heldout"]] == ["p q r s", "t u v w"]
    assert all(r["example_id"] for r in out["pool"] + out["heldout"])
    assert b.wikitext_splits(p) == ["valid", "test"] and b.glue_sources(p) == []
    with pytest.raises(ValueError, match="must differ"):
        b.Params(train_split="test", heldout_split="test")
