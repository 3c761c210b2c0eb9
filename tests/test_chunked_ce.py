"""Chunked linear cross-entropy (reclaim.optim._linear_ce, the CPU form of Cut Cross-Entropy)
and its loss override (reclaim.optim.chunked_ce): exact against F.cross_entropy, one block of
memory instead of the logits, the same training step, refused parameters, and the claim's
verdict rules on synthetic records."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from reclaim import framings, optim
from reclaim.memory import LiveTensorTracker
from reclaim.optim._base import StepContext
from reclaim.optim._linear_ce import (
    chunked_linear_cross_entropy,
    chunked_token_losses,
    plain_linear_cross_entropy,
    predicted_extra_bytes,
)


def data(n: int = 48, d: int = 16, v: int = 300, seed: int = 0, ignore_every: int = 3):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(n, d, generator=g)
    c = torch.randn(v, d, generator=g) * 0.5
    y = torch.randint(0, v, (n,), generator=g)
    if ignore_every:
        y[::ignore_every] = -100
    return e, c, y


def grads(fn, e, c, y):  # type: ignore[no-untyped-def]
    e, c = e.clone().requires_grad_(True), c.clone().requires_grad_(True)
    loss = fn(e, c, y)
    loss.backward()
    return loss.detach(), e.grad, c.grad


@pytest.mark.parametrize("chunk", [1, 7, 64, 300, 1000])
def test_loss_and_gradients_match_cross_entropy(chunk: int) -> None:
    e, c, y = data()
    ref = grads(plain_linear_cross_entropy, e, c, y)
    got = grads(lambda a, b, t: chunked_linear_cross_entropy(a, b, t, chunk), e, c, y)
    assert abs(float(got[0] - ref[0])) <= 1e-5
    for g, r in zip(got[1:], ref[1:], strict=True):
        assert float((g - r).abs().max()) <= 1e-6 * max(1.0, float(r.abs().max()))
    assert torch.all(got[1][::3] == 0)  # ignored rows get no gradient
    per_token = chunked_token_losses(e, c, y, chunk)
    ref_tok = F.cross_entropy(e @ c.t(), y, ignore_index=-100, reduction="none")
    torch.testing.assert_close(per_token, ref_tok, rtol=0, atol=1e-5)


def test_no_ignored_targets_and_frozen_classifier() -> None:
    e, c, y = data(ignore_every=0)
    ref = grads(plain_linear_cross_entropy, e, c, y)
    ee = e.clone().requires_grad_(True)
    loss = chunked_linear_cross_entropy(ee, c, y, 50)  # C frozen: no dC is computed
    loss.backward()
    assert abs(float(loss.detach() - ref[0])) <= 1e-5
    assert float((ee.grad - ref[1]).abs().max()) <= 1e-6


def extra_bytes(fn, e, c, y, backward: bool) -> int:  # type: ignore[no-untyped-def]
    e, c = e.clone().requires_grad_(True), c.clone().requires_grad_(True)
    t = LiveTensorTracker()
    with t:
        t.track(e, c, y)
        base = t.cur
        t.reset_peak()
        loss = fn(e, c, y)
        if backward:
            loss.backward()
    return t.peak - base


def test_memory_is_one_block_not_the_logits() -> None:
    n, d, v, chunk = 256, 8, 4096, 256
    e, c, y = data(n, d, v, ignore_every=0)
    pred = predicted_extra_bytes(n, v, d, chunk)
    small = 64 * n * 4  # O(N) vectors: running LSE, targets in the block, ...
    fwd = extra_bytes(lambda a, b, t: chunked_linear_cross_entropy(a, b, t, chunk), e, c, y, False)
    both = extra_bytes(lambda a, b, t: chunked_linear_cross_entropy(a, b, t, chunk), e, c, y, True)
    assert pred["chunked_forward"] <= fwd <= pred["chunked_forward"] + small
    assert pred["chunked_forward_backward"] <= both <= pred["chunked_forward_backward"] + small
    assert extra_bytes(plain_linear_cross_entropy, e, c, y, False) >= pred["plain_forward"]
    assert extra_bytes(plain_linear_cross_entropy, e, c, y, True) >= pred["plain_forward_backward"]
    # doubling the vocabulary doubles the plain loss's memory, not the chunked forward's (up to
    # the O(N) index vectors of the targets that fall in each block)
    e2, c2, y2 = data(n, d, 2 * v, ignore_every=0)
    fwd2 = extra_bytes(lambda a, b, t: chunked_linear_cross_entropy(a, b, t, chunk), e2, c2, y2, False)
    assert abs(fwd2 - fwd) <= small


def label_word_batch(vocab: int = 96, b: int = 3, t: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (b, t), generator=g)
    targets = torch.full((b, t), -100)
    targets[:, t - 3] = ids[:, t - 2]  # the label word's position predicts the next token
    mask = torch.ones(b, t, dtype=torch.long)
    mask[0, -1] = 0
    return {"gold_input_ids": ids, "gold_attention_mask": mask, "gold_targets": targets,
            "labels": torch.zeros(b, dtype=torch.long)}


def one_step(name: str, params: dict | None, model: torch.nn.Module, batch: dict[str, torch.Tensor]):  # type: ignore[no-untyped-def]
    from reclaim.adapters import get as get_adapter

    adapter = get_adapter("full_ft")
    aparams = adapter.make_params({})
    strategy = optim.get(name).fresh()
    sparams = strategy.make_params(params)
    framing = strategy.loss_framing(framings.get("causal_lm"), sparams)
    opt = strategy.build_optimizer(model, sparams, adapter, aparams, 1e-3, 0.0)

    def loss_fn(m, b, step):  # type: ignore[no-untyped-def]
        loss = framing.loss(m, b)
        return loss, loss

    model.train()
    loss = strategy.step(model, batch, opt, sparams, 0, StepContext(loss_fn, 1.0, 0))
    return loss, framing


def test_training_step_with_the_override_equals_the_plain_step() -> None:
    from reclaim.testing import tiny_llama_lm

    base = tiny_llama_lm()
    batch = label_word_batch()
    plain_model, chunked_model = copy.deepcopy(base), copy.deepcopy(base)
    plain_loss, plain_framing = one_step("adamw", None, plain_model, batch)
    chunked_loss, chunked_framing = one_step("chunked_ce", {"chunk": 10}, chunked_model, batch)
    assert plain_framing is framings.get("causal_lm")  # other strategies keep the framing's loss
    assert abs(float(plain_loss - chunked_loss)) <= 1e-5
    for (name, p), q in zip(plain_model.named_parameters(), chunked_model.parameters(), strict=True):
        # the gradients agree to fp32 rounding; AdamW's first update (about lr x sign(g))
        # magnifies the difference only where |g| is near its eps
        assert float((p.grad - q.grad).abs().max()) <= 1e-6 * max(1.0, float(p.grad.abs().max())), name
        assert float((p.detach() - q.detach()).abs().max()) <= 1e-5, name
    # per-example losses (the reweighting hook's input) agree with the framing's own
    with torch.no_grad():
        ref, n_ref = framings.get("causal_lm").example_losses(base, batch)
        got, n_got = chunked_framing.example_losses(base, batch)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    assert torch.equal(n_got, n_ref)


@pytest.mark.parametrize("chunk", [0, -4, 2.5, True])
def test_bad_chunk_refused(chunk: object) -> None:
    with pytest.raises((ValueError, TypeError), match="chunk"):
        optim.get("chunked_ce").make_params({"chunk": chunk})
    e, c, y = data()
    with pytest.raises(ValueError, match="chunk"):
        chunked_linear_cross_entropy(e, c, y, chunk)  # type: ignore[arg-type]


def test_framing_without_lm_head_refused() -> None:
    s = optim.get("chunked_ce")
    with pytest.raises(ValueError, match="no LM head"):
        s.loss_framing(framings.get("encoder_cls"), s.make_params({}))


def test_evaluator_params_refused() -> None:
    from reclaim import evaluate

    ev = evaluate.get("loss_memory")
    with pytest.raises(ValueError, match="multiple of seqlen"):
        ev.make_params({"n_tokens": 1000, "seqlen": 512})
    with pytest.raises(ValueError, match="chunk"):
        ev.make_params({"chunk": 0})


def _record(device: str, times_plain: list[float], times_chunked: list[float], delta_dc: float = 1.5e-6) -> dict:
    n, v, d, k = 2048, 49152, 576, 4096
    pred = predicted_extra_bytes(n, v, d, k)
    m = {"n_tokens": n, "vocab": v, "hidden": d, "chunk": k, "dtype": "float32", "device": device,
         "device_name": device, "loss_plain": 3.0, "loss_chunked": 3.0000005, "abs_delta_loss": 5e-7,
         "max_abs_delta_de": 1e-11, "max_abs_delta_dc": delta_dc, "max_abs_de": 1e-3, "max_abs_dc": 1e-2,
         "time_plain_s": times_plain, "time_chunked_s": times_chunked,
         "err_plain_loss": 1.5e-5, "err_plain_de": 2e-8, "err_plain_dc": 4e-5,
         "err_chunked_loss": 1e-8, "err_chunked_de": 5e-9, "err_chunked_dc": delta_dc}
    for key in ("forward", "forward_backward"):
        for loss in ("plain", "chunked"):
            m[f"predicted_{loss}_{key}_bytes"] = pred[f"{loss}_{key}"]
            m[f"{loss}_{key}_bytes"] = pred[f"{loss}_{key}"] + 5000
    return {"arm": "loss_op", "seed": 0, "result": {"spec": {"evaluator": "loss_memory",
                                                             "model": {"name": "smollm2-135m"}}, "metrics": m}}


def test_claim_verdicts_computed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import csv

    from reclaim.claims import get

    agg = get("cce_memory")
    claim = {"arms": {"loss_op": [{"evaluate": {"evaluator": "loss_memory"}}]}, "scales": {"smoke": {}}}
    agg.check_config(claim, "claims.cce_memory")
    out = agg.aggregate_runs("cce_memory", claim, "smoke", [_record("cpu", [5.0], [6.0])], tmp_path / "c.csv",
                             tmp_path / "c.json", tmp_path / "c.png")
    v = out["verdicts"]["smollm2-135m"]
    assert v["a_memory_forward"]["verdict"] == "holds" and v["a_memory_forward_backward"]["verdict"] == "holds"
    assert v["a_memory_forward"]["predicted_ratio"] == pytest.approx(4096 / (2 * 49152))
    assert v["b_equivalence"]["verdict"] == "holds"
    assert v["c_speed"]["verdict"] == "inconclusive" and "cpu" in v["c_speed"]["reason"]
    rows = list(csv.DictReader(open(tmp_path / "c.csv")))
    assert len(rows) == 8 and {r["scale"] for r in rows} == {"smoke", "paper shapes (analytic)"}
    # a GPU record with three repeats decides speed; a gradient error beyond tolerance fails (b)
    out = agg.aggregate_runs("cce_memory", claim, "smoke", [_record("cuda", [1.0, 1.0, 1.0], [0.9, 0.91, 0.92],
                                                                    delta_dc=1e-4)],
                             tmp_path / "g.csv", tmp_path / "g.json", tmp_path / "g.png")
    v = out["verdicts"]["smollm2-135m"]
    assert v["c_speed"]["verdict"] == "holds"
    assert v["b_equivalence"]["verdict"] == "does not hold"
    with pytest.raises(ValueError, match="memory_slack"):
        agg.check_config({**claim, "verdict": {"memory_slack": 2.0, "memory_fail": 1.5}}, "claims.cce_memory")
