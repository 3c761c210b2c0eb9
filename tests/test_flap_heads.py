"""FLAP's attention pruning (AL-AM, ``modules: attention+mlp``) on tiny Llamas, one with
multi-head and one with grouped-query attention: a fake-pruned KV group computes what the
physically smaller model computes, o_proj's bias compensation keeps its mean output, the
weighted cut removes ``sparsity`` of the attention + MLP weights, GQA heads are scored and
removed as whole KV groups, and the model reloads with transformers."""

from __future__ import annotations

import copy

import pytest
import torch

from reclaim.compress import get
from reclaim.compress._structured import ATTENTION, MLP, AttentionShape
from reclaim.compress.flap import FLAPParams
from reclaim.testing import mean_module_output, token_windows

HIDDEN, INTER, HEADS, D_H, VOCAB = 32, 64, 4, 8, 96
LINEARS = (*ATTENTION, *MLP)


def _llama(kv_heads: int, seed: int = 0, **extra):  # type: ignore[no-untyped-def]
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=2,
                          num_attention_heads=HEADS, num_key_value_heads=kv_heads, head_dim=D_H,
                          max_position_embeddings=128, tie_word_embeddings=True, attn_implementation="eager",
                          **extra)
        model = LlamaForCausalLM(cfg).eval()
    return model.float()


MODELS = {"mha": 4, "gqa": 2}


def _flap(model, raw, calib=None):  # type: ignore[no-untyped-def]
    comp = get("flap")
    return comp.compress(model, calib or token_windows(4, 32, vocab=VOCAB), comp.make_params(raw), 0)


def _pruned_groups(layer, shape: AttentionShape) -> torch.Tensor:  # type: ignore[no-untyped-def]
    dead = (layer.self_attn.o_proj.weight == 0).all(dim=0)
    return dead.reshape(shape.kv_heads, shape.group_width).all(dim=1)


def _shape(kv: int) -> AttentionShape:
    return AttentionShape(HEADS, kv, D_H, HIDDEN)


def _physical(model, kv: int):  # type: ignore[no-untyped-def]
    """The smaller Llama with the zeroed KV groups and MLP channels sliced out (same count in
    every layer), carrying the kept weights and biases."""
    from transformers import LlamaForCausalLM

    shape = _shape(kv)
    groups = [_pruned_groups(layer, shape) for layer in model.model.layers]
    chans = [(layer.mlp.down_proj.weight == 0).all(dim=0) for layer in model.model.layers]
    g, c = {int(x.sum()) for x in groups}, {int(x.sum()) for x in chans}
    assert len(g) == 1 and len(c) == 1, "a uniform (UL) pruning is needed to build one smaller config"
    g_n, c_n = g.pop(), c.pop()
    cfg = copy.deepcopy(model.config)
    cfg.num_key_value_heads = kv - g_n
    cfg.num_attention_heads = HEADS - g_n * shape.n_rep
    cfg.intermediate_size = INTER - c_n
    small = LlamaForCausalLM(cfg).eval().float()
    small.model.embed_tokens.weight.copy_(model.model.embed_tokens.weight)
    small.model.norm.weight.copy_(model.model.norm.weight)
    for big, sm, grp, ch in zip(model.model.layers, small.model.layers, groups, chans, strict=True):
        keep_q, keep_kv = ~shape.channels(grp), ~shape.kv_rows(grp)
        a, b = big.self_attn, sm.self_attn
        for name, rows in (("q_proj", keep_q), ("k_proj", keep_kv), ("v_proj", keep_kv)):
            getattr(b, name).weight.copy_(getattr(a, name).weight[rows])
            if getattr(a, name).bias is not None:
                getattr(b, name).bias.copy_(getattr(a, name).bias[rows])
        b.o_proj.weight.copy_(a.o_proj.weight[:, keep_q])
        if a.o_proj.bias is not None:
            b.o_proj.bias.copy_(a.o_proj.bias)
        for name in ("gate_proj", "up_proj"):
            getattr(sm.mlp, name).weight.copy_(getattr(big.mlp, name).weight[~ch])
            if getattr(big.mlp, name).bias is not None:
                getattr(sm.mlp, name).bias.copy_(getattr(big.mlp, name).bias[~ch])
        sm.mlp.down_proj.weight.copy_(big.mlp.down_proj.weight[:, ~ch])
        if big.mlp.down_proj.bias is not None:
            sm.mlp.down_proj.bias.copy_(big.mlp.down_proj.bias)
        sm.input_layernorm.weight.copy_(big.input_layernorm.weight)
        sm.post_attention_layernorm.weight.copy_(big.post_attention_layernorm.weight)
    return small, g_n


@pytest.mark.parametrize("kind", list(MODELS))
@torch.no_grad()
def test_zeroed_kv_groups_compute_what_the_smaller_model_computes(kind: str) -> None:
    kv = MODELS[kind]
    model = _llama(kv)
    _flap(model, {"sparsity": 0.5, "structure": "UL", "modules": "attention+mlp"})
    small, g_n = _physical(model, kv)
    assert g_n == kv // 2 and small.config.num_attention_heads == HEADS // 2
    ids = token_windows(2, 24, seed=5, vocab=VOCAB)
    for x in ids:
        big_h = model(x, output_hidden_states=True).hidden_states
        small_h = small(x, output_hidden_states=True).hidden_states
        for hb, hs in zip(big_h, small_h, strict=True):
            assert torch.allclose(hb, hs, atol=1e-5)


def _o_proj_mean(model, ids) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return mean_module_output(model, model.model.layers[0].self_attn.o_proj, ids)


@pytest.mark.parametrize("kind", list(MODELS))
@torch.no_grad()
def test_o_proj_bias_compensation_keeps_the_mean_output(kind: str) -> None:
    kv = MODELS[kind]
    calib = token_windows(4, 32, vocab=VOCAB)
    raw = {"sparsity": 0.5, "structure": "UL", "modules": "attention+mlp"}
    model = _llama(kv)
    before = _o_proj_mean(model, calib)
    _flap(model, raw, calib)
    assert model.config.attention_bias and model.model.layers[0].self_attn.q_proj.bias is not None
    assert bool(_pruned_groups(model.model.layers[0], _shape(kv)).any())
    # block 0's attention sees the same inputs before and after, and the kept heads are untouched,
    # so with the compensation bias its mean output over the calibration tokens is unchanged
    after = _o_proj_mean(model, calib)
    assert torch.allclose(after, before, rtol=0, atol=1e-6)
    plain = _llama(kv)
    _flap(plain, {**raw, "bias_compensation": False}, calib)
    moved = _o_proj_mean(plain, calib)
    assert (moved - before).abs().max() > 1e-3


def _zeroed_share(model) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    zero = total = 0
    for layer in model.model.layers:
        for name in LINEARS:
            w = layer.get_submodule(name).weight
            zero += int((w == 0).sum())
            total += w.numel()
    return zero, total


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("sparsity", [0.2, 0.3, 0.5])
@torch.no_grad()
def test_al_am_removes_the_weighted_share_and_whole_kv_groups(kind: str, sparsity: float) -> None:
    kv = MODELS[kind]
    shape = _shape(kv)
    model = _llama(kv)
    orig = copy.deepcopy(model)
    rec = _flap(model, {"sparsity": sparsity, "modules": "attention+mlp"})
    zero, total = _zeroed_share(model)
    unit = max(shape.group_weights, 3 * HIDDEN)
    assert total == 2 * (kv * shape.group_weights + INTER * 3 * HIDDEN)
    assert zero <= sparsity * total and sparsity * total - zero < unit
    # the records' parameter-weighted sparsity is the same share (the compress summary's mean_sparsity)
    weighted = sum(r["sparsity"] * model.get_submodule(n).weight.numel() for n, r in rec["layers"].items())
    assert weighted == pytest.approx(zero)
    groups = []
    for i, (layer, old) in enumerate(zip(model.model.layers, orig.model.layers, strict=True)):
        g = _pruned_groups(layer, shape)
        groups.append(int(g.sum()))
        q_rows, kv_rows = shape.channels(g), shape.kv_rows(g)
        a, b = layer.self_attn, old.self_attn
        # exactly the pruned groups' q rows (all n_rep query heads), k and v rows and o columns are
        # zero; every other attention weight is unchanged
        for lin, ref, rows in ((a.q_proj, b.q_proj, q_rows), (a.k_proj, b.k_proj, kv_rows),
                               (a.v_proj, b.v_proj, kv_rows)):
            assert torch.all(lin.weight[rows] == 0) and torch.equal(lin.weight[~rows], ref.weight[~rows])
            assert torch.all(lin.bias[rows] == 0)
        assert torch.all(a.o_proj.weight[:, q_rows] == 0)
        assert torch.equal(a.o_proj.weight[:, ~q_rows], b.o_proj.weight[:, ~q_rows])
        assert rec["layers"][f"model.layers.{i}.self_attn.k_proj"]["kv_groups_pruned"] == groups[-1]
    assert rec["kv_groups_pruned_per_block"] == groups
    assert rec["heads_pruned_per_block"] == [g * shape.n_rep for g in groups]
    assert sum(rec["channels_pruned_per_block"]) > 0
    if sparsity >= 0.3:  # both modules compete (at 20% the GQA model's cut lands before its first group)
        assert sum(groups) > 0
    if kind == "gqa":
        assert "attention KV groups (2 query heads + 1 KV head each" in rec["scope"]
    else:
        assert "attention heads (" in rec["scope"] and "KV groups" not in rec["scope"]
    assert "not pruned" not in rec["scope"] and "(AL) and modules (AM)" in rec["scope"]


def test_a_head_weighs_512_3_channels_in_mha_llama_7b() -> None:
    shape = AttentionShape(heads=32, kv_heads=32, head_dim=128, hidden=4096)
    assert shape.group_weights / (3 * 4096) == pytest.approx(512 / 3)
    assert AttentionShape(heads=9, kv_heads=3, head_dim=64, hidden=576).group_weights == 8 * 64 * 576


@torch.no_grad()
def test_gqa_scores_query_heads_with_their_kv_head() -> None:
    """Query heads 0, 1 read KV head 0 and heads 2, 3 read KV head 1. KV head 0's values are
    near zero, so heads 0 and 1 carry almost no fluctuation into o_proj; head 3's o columns
    are small. Scored as KV groups, group 0 ({0, 1}) is the one to go; with the heads assigned
    to groups round-robin ({0, 2} / {1, 3}), group 1 would."""
    model = _llama(2)
    for layer in model.model.layers:
        attn = layer.self_attn
        attn.v_proj.weight[:D_H] *= 1e-3
        attn.o_proj.weight[:, 3 * D_H:] *= 0.1
    rec = _flap(model, {"sparsity": 0.5, "structure": "UL", "modules": "attention+mlp"})
    for layer in model.model.layers:
        assert _pruned_groups(layer, _shape(2)).tolist() == [True, False]
        q = layer.self_attn.q_proj.weight
        assert torch.all(q[:2 * D_H] == 0) and not (q[2 * D_H:] == 0).all(dim=1).any()
    assert rec["heads_pruned_per_block"] == [2, 2]


@pytest.mark.parametrize("kind", list(MODELS))
@torch.no_grad()
def test_attention_pruned_model_saves_and_reloads(kind: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    from reclaim.models import save_model_dir

    class _Tok:
        def save_pretrained(self, _d) -> None:  # type: ignore[no-untyped-def]
            pass

    model = _llama(MODELS[kind])
    rec = _flap(model, {"sparsity": 0.3, "modules": "attention+mlp"})
    assert sum(rec["kv_groups_pruned_per_block"]) > 0
    ids = token_windows(1, 32, seed=9, vocab=VOCAB)[0]
    save_model_dir(model, _Tok(), tmp_path)
    back = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert back.config.attention_bias and back.config.mlp_bias
    assert torch.count_nonzero(back.model.layers[0].self_attn.o_proj.bias) > 0
    assert torch.allclose(back(ids).logits, model(ids).logits, atol=1e-5)


def test_unknown_modules_are_refused() -> None:
    with pytest.raises(ValueError, match=r"modules: unknown 'bogus'"):
        get("flap").make_params({"modules": "bogus"})


def test_mlp_only_params_keep_their_job_identity() -> None:
    """The job id hashes ``params.__dict__`` (reclaim.plan.compress_job): ``modules: mlp``
    leaves it as it was before attention pruning existed."""
    from reclaim.plan import _plain

    old = {"sparsity": 0.2, "metric": "WIFV", "structure": "AL", "bias_compensation": True}
    p = get("flap").make_params({"sparsity": 0.2})
    assert _plain(p.__dict__) == old and p.modules == "mlp" and not p.attention
    assert p == FLAPParams(sparsity=0.2, modules="mlp")
    am = get("flap").make_params({"sparsity": 0.2, "modules": "attention+mlp"})
    assert _plain(am.__dict__) == {**old, "modules": "attention+mlp"} and am.attention


@torch.no_grad()
def test_mlp_only_flap_leaves_attention_untouched_and_says_so() -> None:
    model = _llama(2)
    orig = copy.deepcopy(model)
    rec = _flap(model, {"sparsity": 0.3})
    for layer, old in zip(model.model.layers, orig.model.layers, strict=True):
        for name in ATTENTION:
            assert torch.equal(layer.get_submodule(name).weight, old.get_submodule(name).weight)
    assert not getattr(model.config, "attention_bias", False)
    assert rec["kv_groups_pruned_per_block"] == [0, 0] and rec["heads_pruned_per_block"] == [0, 0]
    assert "MLP channels only" in rec["scope"] and "attention heads not pruned" in rec["scope"]
    assert sum(rec["channels_pruned_per_block"]) == int(2 * INTER * 0.3)


def test_claim_plots_al_am_arms_as_their_own_line(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from reclaim.claims import flap_wikitext
    from reclaim.claims._lm_compression import PerplexityClaim

    seen: list[list[str]] = []
    monkeypatch.setattr(PerplexityClaim, "_plot", lambda _self, _p, _c, _s, rows: seen.append(
        [r["method"] for r in rows]))
    rows = [{"method": "none (reference)", "scope": ""},
            {"method": "flap", "scope": "MLP channels only (1 of 4: ...); attention heads not pruned"},
            {"method": "flap", "scope": "MLP channels (1 of 4: ...) and attention heads (1 of 8: ...)"},
            {"method": "wanda_sp", "scope": "MLP channels only (1 of 4: ...); attention heads not pruned"}]
    flap_wikitext.AGGREGATOR._plot("unused.png", "flap_wikitext", "paper", rows)
    assert seen == [["none (reference)", "flap", "flap (AL-AM)", "wanda_sp"]]
