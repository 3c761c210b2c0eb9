"""The compression stage's math on small generated layers and a tiny random Llama: the shared
quantizer, GPTQ vs RTN, AWQ at scale 1, the group-size refusal, perplexity windows."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from reclaim.compress import get
from reclaim.compress._base import Calibration, QuantParams, output_error
from reclaim.compress._blocks import (
    block_inputs,
    compressible_linears,
    decoder_blocks,
    linear_stages,
)
from reclaim.compress._quant import QuantSpec, fake_quant, q4_1_blocks
from reclaim.compress.awq import awq_scales, clip_search
from reclaim.compress.gptq import HessianAccumulator, gptq_quantize
from reclaim.data import lm_text
from reclaim.testing import tiny_llama_lm as _tiny_llama
from reclaim.testing import token_windows as _calib

# --- the shared quantizer --------------------------------------------------------------------


@pytest.mark.parametrize("axis,groups", [("tensor", 1), ("channel", 8), ("input_channel", 32), ("group", 8 * 4)])
def test_fake_quant_uses_at_most_2_pow_bits_levels_per_group(axis: str, groups: int) -> None:
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(0))
    spec = QuantSpec(bits=3, group_size=8 if axis == "group" else None, axis=axis)
    q = fake_quant(w, spec)
    blocks = {"tensor": q.reshape(1, -1), "channel": q, "input_channel": q.t(), "group": q.reshape(-1, 8)}[axis]
    assert blocks.shape[0] == groups
    assert max(len(torch.unique(b)) for b in blocks) <= 8
    z = w.clone()
    z[:, 0] = 0.0  # zero is on the grid: exact zeros survive
    assert torch.all(fake_quant(z, spec)[:, 0] == 0)
    assert (q - w).abs().max() <= (w.max() - w.min()) / 7 + 1e-6


def test_symmetric_grid_is_centered_and_more_bits_is_closer() -> None:
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(1))
    errs = [float(((fake_quant(w, QuantSpec(bits=b, group_size=16)) - w) ** 2).sum()) for b in (2, 3, 4, 8)]
    assert errs == sorted(errs, reverse=True)
    sym = fake_quant(w, QuantSpec(bits=4, group_size=16, sym=True))
    g = sym.reshape(-1, 16)
    # symmetric: the grid step is 2*max|w|/15 and the codes are centred on zero
    step = 2 * w.reshape(-1, 16).abs().amax(dim=1, keepdim=True) / 15
    assert torch.allclose(torch.round(g / step) * step, g, atol=1e-6)


@pytest.mark.parametrize("bits", [0, 17, 2.5])
def test_bits_outside_1_to_16_are_refused(bits) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="bits must be an integer in \\[1, 16\\]"):
        QuantParams(bits=bits)


def test_group_that_does_not_divide_a_layer_names_it() -> None:
    model = _tiny_llama()
    rtn = get("rtn")
    with pytest.raises(ValueError, match=r"group_size 48 does not divide layer 'model\.layers\.0\.self_attn\.q_proj'"):
        rtn.compress(model, None, rtn.make_params({"bits": 3, "group_size": 48}), 0)
    problems = rtn.widths_ok(rtn.make_params({"bits": 3, "group_size": 128}), {"hidden": 576, "mlp": 1536})
    assert problems == ["group_size 128 does not divide the hidden width 576"]


def test_stored_bits_count_scales_and_zero_points() -> None:
    assert QuantSpec(bits=3, group_size=64).stored_bits((576, 576)) == pytest.approx(3 + 19 / 64)
    assert QuantSpec(bits=4, group_size=128, sym=True).stored_bits((10, 256)) == pytest.approx(4 + 16 / 128)
    assert QuantSpec(bits=8, axis="channel").stored_bits((4, 100)) == pytest.approx(8 + 24 / 100)


def test_q4_1_grid_reproduces_weights_that_sit_on_it() -> None:
    g = torch.Generator().manual_seed(2)
    lo, step = torch.randn(64, 1, generator=g), torch.rand(64, 1, generator=g) + 0.1
    codes = torch.randint(0, 16, (64, 32), generator=g).float()
    codes[:, 0], codes[:, 1] = 0, 15  # each block spans its grid
    w = (codes * step + lo).reshape(32, 64)
    assert torch.allclose(q4_1_blocks(w), w, atol=1e-5)
    assert not torch.allclose(fake_quant(w, QuantSpec(bits=3, group_size=32)), w, atol=1e-3)


# --- GPTQ ----------------------------------------------------------------------------------------


def _correlated_inputs(n: int = 512, d: int = 64, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / math.sqrt(d) + torch.eye(d) * 0.2
    scale = torch.logspace(-1, 1, d)  # outlier-ish channels
    return (torch.randn(n, d, generator=g) @ mix) * scale


@pytest.mark.parametrize("spec", [QuantSpec(bits=3, axis="channel"), QuantSpec(bits=3, group_size=16),
                                  QuantSpec(bits=4, group_size=32, sym=True)])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_output_error_is_no_larger_than_rtn_on_correlated_inputs(spec: QuantSpec, act_order: bool) -> None:
    w = torch.randn(48, 64, generator=torch.Generator().manual_seed(4))
    acc = HessianAccumulator(64)
    acc.add(_correlated_inputs())
    gq = gptq_quantize(w, acc.h, spec, damp=0.01, block_size=16, act_order=act_order)
    rtn = fake_quant(w, spec)
    assert output_error(w, gq, acc.h) < output_error(w, rtn, acc.h)


@pytest.mark.parametrize("spec", [QuantSpec(bits=3, axis="channel"), QuantSpec(bits=3, group_size=16)])
def test_gptq_with_identity_hessian_is_rtn(spec: QuantSpec) -> None:
    w = torch.randn(24, 64, generator=torch.Generator().manual_seed(5))
    gq = gptq_quantize(w, torch.eye(64), spec, damp=0.01, block_size=16)
    assert torch.equal(gq, fake_quant(w, spec))


def test_gptq_zeroes_dead_inputs() -> None:
    w = torch.randn(8, 16, generator=torch.Generator().manual_seed(6))
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(7))
    x[:, 3] = 0
    acc = HessianAccumulator(16)
    acc.add(x)
    assert torch.all(gptq_quantize(w, acc.h, QuantSpec(bits=4, axis="channel"))[:, 3] == 0)


def test_hessian_accumulator_is_the_mean_over_all_tokens() -> None:
    x = torch.randn(100, 8, generator=torch.Generator().manual_seed(8))
    acc = HessianAccumulator(8)
    for chunk in x.split(30):
        acc.add(chunk)
    assert torch.allclose(acc.h, 2 * x.t() @ x / 100, atol=1e-5)


# --- AWQ -----------------------------------------------------------------------------------------


def test_awq_scale_one_is_rtn() -> None:
    assert torch.equal(awq_scales(torch.rand(16) + 0.1, 0.0), torch.ones(16))
    model = _tiny_llama()
    rtn_model = copy.deepcopy(model)
    get("rtn").compress(rtn_model, None, QuantParams(bits=3, group_size=32), 0)
    awq = get("awq")
    rec = awq.compress(model, _calib(), awq.make_params({"bits": 3, "group_size": 32, "n_grid": 1, "clip": False}), 0)
    assert all(v["alpha"] in (0.0, None) for v in rec["layers"].values())
    for (n, a), b in zip(compressible_linears(model).items(), compressible_linears(rtn_model).values(), strict=True):
        assert torch.equal(a.weight, b.weight), n


def test_awq_search_beats_rtn_on_its_objective_and_skips_gqa_o_proj() -> None:
    model = _tiny_llama()
    calib = _calib()
    with torch.no_grad():
        ref = [model(input_ids=c).logits for c in calib]
    rtn_model = copy.deepcopy(model)
    get("rtn").compress(rtn_model, None, QuantParams(bits=3, group_size=32), 0)
    awq = get("awq")
    rec = awq.compress(model, calib, awq.make_params({"bits": 3, "group_size": 32, "n_grid": 10}), 0)
    o = rec["layers"]["model.layers.0.self_attn.o_proj"]
    assert o["scaled"] is False  # v_proj is 32 wide, o_proj 64: grouped-query attention
    assert rec["layers"]["model.layers.0.mlp.down_proj"]["mean_clip_ratio"] <= 1.0
    with torch.no_grad():
        err_awq = sum(float(((model(input_ids=c).logits - r) ** 2).mean()) for c, r in zip(calib, ref, strict=True))
        err_rtn = sum(float(((rtn_model(input_ids=c).logits - r) ** 2).mean()) for c, r in zip(calib, ref, strict=True))
    assert err_awq < err_rtn


def test_clip_search_never_worse_than_no_clip() -> None:
    g = torch.Generator().manual_seed(9)
    w = torch.randn(16, 64, generator=g)
    w[0, 5] = 8.0  # an outlier weight
    x = torch.randn(200, 64, generator=g)
    spec = QuantSpec(bits=3, group_size=32)
    mx = clip_search(w, x, spec, 20, 0.5)
    clipped = torch.clamp(w.reshape(16, 2, 32), -mx, mx).reshape(16, 64)
    err = ((fake_quant(clipped, spec) - w) @ x.t()).pow(2).sum()
    assert err <= ((fake_quant(w, spec) - w) @ x.t()).pow(2).sum() + 1e-4


# --- blocks, GPTQ on a model, perplexity windows -----------------------------------------------


def test_block_stages_follow_call_order_and_shared_inputs() -> None:
    model = _tiny_llama()
    hidden, kwargs = block_inputs(model, _calib(1))
    _, blocks = decoder_blocks(model)
    stages = linear_stages(blocks[0], hidden[0], kwargs[0][0])
    assert stages == [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"],
                      ["mlp.gate_proj", "mlp.up_proj"], ["mlp.down_proj"]]
    # a Llama's blocks all get the same arguments (the same tensors): replaying is unchanged
    assert all(kw[0][k] is kwargs[0][0][k] for kw in kwargs for k in kwargs[0][0])


def test_each_block_is_replayed_with_its_own_arguments_on_gemma3() -> None:
    """Gemma-3 alternates sliding-window and global attention layers with different rotary
    embeddings: replaying block by block (GPTQ, AWQ, EoRA, FLAP) must give each block its own
    mask and position embeddings, and so reproduce the model's own hidden states."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from reclaim.compress._blocks import run_block

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4,
                           layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                           rope_theta=10_000.0, max_position_embeddings=64)
    model = Gemma3ForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (1, 12), generator=torch.Generator().manual_seed(1))
    hidden, kwargs = block_inputs(model, [ids])
    _, blocks = decoder_blocks(model)
    assert kwargs[1][0]["position_embeddings"][0] is not kwargs[0][0]["position_embeddings"][0]
    assert kwargs[2][0]["position_embeddings"][0] is kwargs[0][0]["position_embeddings"][0]
    with torch.no_grad():
        expect = model.model(input_ids=ids, output_hidden_states=True).hidden_states
        h = hidden
        for i, block in enumerate(blocks):
            h = run_block(block, h, kwargs[i])
            if i < len(blocks) - 1:  # the last entry of hidden_states is after the final norm
                assert torch.allclose(h[0], expect[i + 1], atol=1e-5)
        # block 1 replayed with block 0's (sliding, local-rope) arguments is another function
        wrong = run_block(blocks[1], run_block(blocks[0], hidden, kwargs[0]), kwargs[0])
        assert not torch.allclose(wrong[0], expect[2], atol=1e-3)


def test_gptq_on_a_model_records_every_layer_and_beats_rtn_in_output_error() -> None:
    model = _tiny_llama()
    gptq = get("gptq")
    rec = gptq.compress(model, _calib(4), gptq.make_params({"bits": 3, "group_size": 32, "block_size": 16}), 0)
    assert set(rec["layers"]) == set(compressible_linears(_tiny_llama()))
    assert rec["calibration_tokens"] == 4 * 32
    # every layer lands on a 3-bit grid per 32-column group
    for lin in compressible_linears(model).values():
        assert max(len(torch.unique(g)) for g in lin.weight.reshape(-1, 32)) <= 8


def test_same_seed_same_compressed_weights() -> None:
    a, b = _tiny_llama(), _tiny_llama()
    for m in (a, b):
        get("awq").compress(m, _calib(2), get("awq").make_params({"bits": 3, "group_size": 32, "n_grid": 4}), 0)
    assert all(torch.equal(x.weight, y.weight) for x, y in
               zip(compressible_linears(a).values(), compressible_linears(b).values(), strict=True))


def test_perplexity_windows_drop_the_tail_and_calibration_is_seeded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ids = torch.arange(103)
    w = lm_text.windows(ids, 10)
    assert w.shape == (10, 10) and int(w[-1, -1]) == 99
    assert lm_text.windows(ids, 10, n_windows=3).shape == (3, 10)
    a = lm_text.calibration_windows(ids, 4, 10, seed=0)
    assert [x.tolist() for x in a] == [x.tolist() for x in lm_text.calibration_windows(ids, 4, 10, seed=0)]
    assert [x.tolist() for x in a] != [x.tolist() for x in lm_text.calibration_windows(ids, 4, 10, seed=1)]
    f = tmp_path / "test.txt"
    f.write_text(" \n = A = \n \n Text one .\n")
    assert lm_text.joined(f) == " \n\n\n = A = \n\n\n \n\n\n Text one .\n"
    with pytest.raises(ValueError, match="fewer than one window"):
        lm_text.windows(torch.arange(5), 10)


def test_calibration_on_the_test_split_is_refused() -> None:
    with pytest.raises(ValueError, match="evaluation split"):
        Calibration(split="test")


# --- PTQ / QAT (Krishnamoorthi) ---------------------------------------------------------------


def _tiny_bert_batches(n: int = 4, seed: int = 2) -> tuple[torch.nn.Module, list[dict[str, torch.Tensor]]]:
    from transformers import BertConfig, BertForSequenceClassification

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(BertConfig(
            vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64, num_labels=2)).eval()
    g = torch.Generator().manual_seed(seed)
    batches = [{"input_ids": torch.randint(0, 50, (8, 12), generator=g),
                "attention_mask": torch.ones(8, 12, dtype=torch.long),
                "labels": torch.randint(0, 2, (8,), generator=g)} for _ in range(n)]
    return model, batches


def test_activation_ste_passes_gradients_inside_the_range_only() -> None:
    from reclaim.compress._act import fake_quant_act

    x = torch.tensor([-2.0, -0.5, 0.0, 0.7, 3.0], requires_grad=True)
    y = fake_quant_act(x, -1.0, 1.0, 8)
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert float(y[0].detach()) == pytest.approx(-1.0, abs=1e-2) and float(y[-1].detach()) == pytest.approx(1.0, abs=1e-2)


def test_ptq_per_channel_beats_per_tensor_and_ships_activation_ranges(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from reclaim.compress import _act

    base, batches = _tiny_bert_batches()
    with torch.no_grad():
        base.bert.encoder.layer[0].intermediate.dense.weight[:3] *= 20  # channels with very different ranges
        ref = [base(**{k: v for k, v in b.items() if k != "labels"}).logits for b in batches]
    errs = {}
    name = "bert.encoder.layer.0.intermediate.dense"
    for axis in ("tensor", "channel"):
        m = copy.deepcopy(base)
        rec = get("ptq").compress(m, batches, get("ptq").make_params({"bits": 4, "axis": axis, "act_bits": None}), 0)
        assert "model_files" not in rec
        errs[axis] = rec["layers"][name]["weight_error"]
        with torch.no_grad():
            out = [m(**{k: v for k, v in b.items() if k != "labels"}).logits for b in batches]
        assert not all(torch.equal(a, r) for a, r in zip(out, ref, strict=True))
    assert errs["channel"] < errs["tensor"] / 10  # one range for rows 20x apart wastes the grid
    m = copy.deepcopy(base)
    rec = get("ptq").compress(m, batches, get("ptq").make_params({"bits": 8, "axis": "channel", "act_bits": 8}), 0)
    spec = rec["model_files"][_act.FILE]
    assert spec["bits"] == 8 and set(spec["ranges"]) == set(compressible_linears(m))
    assert all(r["min"] <= r["max"] for r in spec["ranges"].values())
    (tmp_path / _act.FILE).write_text(__import__("json").dumps(spec))
    seen = []
    assert _act.apply(m, tmp_path)["bits"] == 8
    lin = m.bert.encoder.layer[1].output.dense
    lin.register_forward_pre_hook(lambda _m, a: seen.append(a[0].clone()))  # runs after apply's quantizer
    with torch.no_grad():
        m(**{k: v for k, v in batches[0].items() if k != "labels"})
    r = spec["ranges"]["bert.encoder.layer.1.output.dense"]
    # the input reaching the layer is on the 8-bit grid of its calibrated range
    step = (max(r["max"], 0) - min(r["min"], 0)) / 255
    assert len(torch.unique(seen[-1])) <= 256 and float(seen[-1].min()) >= min(r["min"], 0) - step


def test_qat_trains_through_the_quantizers_and_ends_on_the_grid() -> None:
    model, batches = _tiny_bert_batches(6)
    for b in batches:  # a learnable rule: the label is whether the first token id is large
        b["labels"] = (b["input_ids"][:, 0] >= 25).long()
    before = copy.deepcopy(model)
    get("ptq").compress(before, batches, get("ptq").make_params({"bits": 4, "axis": "channel", "act_bits": None}), 0)
    qat = get("qat")
    rec = qat.compress(model, batches, qat.make_params({"bits": 4, "axis": "channel", "act_bits": 8,
                                                        "epochs": 4.0, "lr": 3.0e-3}), 0)
    assert rec["qat"]["steps"] == 24 and len(rec["qat"]["losses"]) == 24
    assert sum(rec["qat"]["losses"][-6:]) < sum(rec["qat"]["losses"][:6])
    moved = [not torch.equal(a.weight, b.weight) for a, b in
             zip(compressible_linears(model).values(), compressible_linears(before).values(), strict=True)]
    assert all(moved)  # gradients reached every quantized layer through the straight-through estimator
    for lin in compressible_linears(model).values():
        assert "parametrizations" not in dict(lin.named_children())
        assert max(len(torch.unique(row)) for row in lin.weight) <= 16
    with pytest.raises(ValueError, match="labelled batches"):
        qat.compress(model, [{k: v for k, v in batches[0].items() if k != "labels"}], qat.make_params({}), 0)


def test_perplexity_with_bos_scores_every_window_token_after_a_bos(tmp_path, tiny_models) -> None:  # type: ignore[no-untyped-def]
    """``bos: true`` (Gemma-3): each window gets the tokenizer's BOS as context and all seqlen
    tokens are scored; without it the first token of a window is context only."""
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from reclaim.evaluate import get as get_evaluator
    from reclaim.models import ResolvedModel, load_tokenizer
    from reclaim.select._base import ModelContext

    text = tmp_path / "test.txt"
    text.write_text("".join(f" word{i % 17} and more text {i} .\n" for i in range(60)))
    loc = ResolvedModel("tiny-llama", str(tiny_models["llama"]), "local_dir")
    ctx = ModelContext({}, loc, "")
    ev = get_evaluator("perplexity")
    plain = ev.evaluate({"text": str(text)}, ev.make_params({"seqlen": 16, "n_windows": 3}), ctx)
    bos = ev.evaluate({"text": str(text)}, ev.make_params({"seqlen": 16, "n_windows": 3, "bos": True}), ctx)
    assert plain["protocol"]["tokens_scored"] == 3 * 15 and bos["protocol"]["tokens_scored"] == 3 * 16
    assert plain["protocol"]["bos"].startswith("none") and bos["protocol"]["bos"].startswith("prepended")
    tok = load_tokenizer(loc)
    ids = lm_text.tokenize(tok, lm_text.joined(text))
    window = ids[16:32]
    lm = AutoModelForCausalLM.from_pretrained(loc.location, dtype=torch.float32).eval()
    x = torch.cat([torch.tensor([tok.bos_token_id]), window]).unsqueeze(0)
    with torch.no_grad():
        expect = F.cross_entropy(lm(input_ids=x).logits[0, :-1], window).item()
    assert bos["window_nll"][1] == pytest.approx(expect, rel=1e-5)
    with pytest.raises(ValueError, match="bos must be true or false"):
        ev.make_params({"bos": "yes"})
