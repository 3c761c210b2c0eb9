"""The pruning methods' math on small generated layers and a tiny random Llama: N:M masks,
Wanda vs per-row magnitude, SparseGPT's output error vs magnitude/Wanda on correlated
inputs, achieved sparsity, FLAP's bias compensation, and refused params."""

from __future__ import annotations

import copy

import pytest
import torch

from reclaim.compress import get
from reclaim.compress._base import output_error
from reclaim.compress._blocks import compressible_linears
from reclaim.compress._prune import PruneParams, layer_mask, nm_mask, row_mask
from reclaim.compress.gptq import HessianAccumulator
from reclaim.compress.sparsegpt import sparsegpt_prune
from reclaim.compress.wanda import wanda_score
from reclaim.testing import mean_module_output
from reclaim.testing import tiny_llama_lm as _tiny_llama
from reclaim.testing import token_windows as _calib


def _correlated_inputs(n: int = 512, d: int = 64, seed: int = 0) -> torch.Tensor:
    """Tokens with strongly correlated features and a few large-norm channels."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) * torch.linspace(0.05, 1.0, d)  # decaying spectrum
    x = torch.randn(n, d, generator=g) @ mix
    x[:, :4] *= 8.0
    return x


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_nm_mask_prunes_exactly_n_of_every_m(n: int, m: int) -> None:
    score = torch.rand(6, 32, generator=torch.Generator().manual_seed(0))
    mask = nm_mask(score, n, m)
    assert torch.all(mask.reshape(6, -1, m).sum(dim=-1) == n)
    kept = score.masked_fill(mask, float("inf")).reshape(6, -1, m)
    pruned = score.masked_fill(~mask, float("-inf")).reshape(6, -1, m)
    assert torch.all(pruned.amax(dim=-1) <= kept.amin(dim=-1))  # the lowest n of each group


def test_2_4_pruned_model_has_two_nonzeros_per_four() -> None:
    for method in ("magnitude", "wanda", "sparsegpt"):
        model = _tiny_llama()
        comp = get(method)
        rec = comp.compress(model, _calib(), comp.make_params({"pattern": "2:4"}), 0)
        for name, lin in compressible_linears(model).items():
            nz = (lin.weight != 0).reshape(lin.out_features, -1, 4).sum(dim=-1)
            assert torch.all(nz <= 2), (method, name)
            assert torch.all(nz == 2), (method, name)  # random weights: no kept weight is exactly 0
            assert rec["layers"][name]["sparsity"] == 0.5


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.75])
def test_achieved_sparsity_equals_target(method: str, sparsity: float) -> None:
    model = _tiny_llama()
    comp = get(method)
    rec = comp.compress(model, _calib(), comp.make_params({"sparsity": sparsity}), 0)
    for name, lin in compressible_linears(model).items():
        assert rec["layers"][name]["sparsity"] == pytest.approx(sparsity, abs=1e-9)
        assert float((lin.weight == 0).float().mean()) == pytest.approx(sparsity, abs=1e-9)
        if method == "wanda":  # Wanda's comparison group is the output row
            assert torch.all((lin.weight == 0).sum(dim=1) == int(lin.in_features * sparsity))


def test_wanda_with_equal_input_norms_is_per_row_magnitude() -> None:
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(2))
    equal = torch.full((64,), 7.0)
    for params in (PruneParams(0.5), PruneParams(0.5, "2:4")):
        a = row_mask(wanda_score(w, equal), 0.5) if params.nm is None else nm_mask(wanda_score(w, equal), 2, 4)
        b = row_mask(w.abs(), 0.5) if params.nm is None else nm_mask(w.abs(), 2, 4)
        assert torch.equal(a, b)
    # and a large input norm protects its column
    norms = torch.ones(64)
    norms[3] = 1e6
    assert not row_mask(wanda_score(w, norms), 0.5)[:, 3].any()


def test_magnitude_uses_one_threshold_per_layer() -> None:
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(3))
    w[0] *= 100  # a row of large weights keeps all of them
    mask = layer_mask(w.abs(), 0.5)
    assert int(mask.sum()) == 128 and not mask[0].any()


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_sparsegpt_output_error_is_no_larger_than_magnitude_or_wanda(pattern: str) -> None:
    x = _correlated_inputs()
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(4))
    acc = HessianAccumulator(64)
    acc.add(x)
    params = PruneParams(0.5, pattern)
    w_sgpt, mask = sparsegpt_prune(w, acc.h, 0.5, params.nm, damp=0.01, block_size=128)
    assert torch.all(w_sgpt[mask] == 0) and float(mask.float().mean()) == 0.5
    sq = (x.double() ** 2).sum(dim=0)
    w_wanda = w.masked_fill(mask_for_wanda := (row_mask(wanda_score(w, sq), 0.5) if params.nm is None
                                               else nm_mask(wanda_score(w, sq), 2, 4)), 0.0)
    w_mag = w.masked_fill(layer_mask(w.abs(), 0.5) if params.nm is None else nm_mask(w.abs(), 2, 4), 0.0)
    assert mask_for_wanda.float().mean() == 0.5
    e_s, e_w, e_m = (output_error(w, v, acc.h) for v in (w_sgpt, w_wanda, w_mag))
    assert e_s <= e_w and e_s <= e_m
    if params.nm is None:  # activation-aware beats one magnitude threshold on outlier features
        assert e_w <= e_m


def test_sparsegpt_at_zero_sparsity_leaves_weights_unchanged() -> None:
    w = torch.randn(8, 16, generator=torch.Generator().manual_seed(5))
    acc = HessianAccumulator(16)
    acc.add(torch.randn(64, 16, generator=torch.Generator().manual_seed(6)))
    w_hat, mask = sparsegpt_prune(w, acc.h, 0.0)
    assert not mask.any() and torch.allclose(w_hat, w, atol=1e-5)


def test_pruned_model_runs_and_later_blocks_see_pruned_outputs() -> None:
    model = _tiny_llama()
    ref = copy.deepcopy(model)
    comp = get("wanda")
    rec = comp.compress(model, _calib(), comp.make_params({"sparsity": 0.5}), 0)
    assert len(rec["layers"]) == 14 and rec["calibration_tokens"] == 96
    assert all(0 < v["weight_error"] < 1 for v in rec["layers"].values())
    ids = _calib(1)[0]
    assert not torch.allclose(model(ids).logits, ref(ids).logits)


@pytest.mark.parametrize("raw,message", [
    ({"sparsity": 1.0}, r"sparsity must be a number in \[0, 1\), got 1.0"),
    ({"sparsity": -0.1}, r"sparsity must be a number in \[0, 1\), got -0.1"),
    ({"pattern": "4:2"}, r"pattern must be 'unstructured' or 'N:M' with integers 0 < N < M"),
    ({"pattern": "0:4"}, "pattern must be"),
    ({"pattern": "2-4"}, "pattern must be"),
    ({"pattern": "1:4"}, r"sparsity 0.5 does not match pattern '1:4'"),
])
def test_bad_params_are_refused(raw, message) -> None:  # type: ignore[no-untyped-def]
    for method in ("magnitude", "wanda", "sparsegpt"):
        with pytest.raises(ValueError, match=message):
            get(method).make_params(raw)


def test_nm_pattern_that_does_not_fit_a_layer_names_it() -> None:
    model = _tiny_llama()
    comp = get("magnitude")
    with pytest.raises(ValueError, match=r"pattern 3:48 does not fit layer 'model\.layers\.0\.self_attn\.q_proj'"):
        comp.compress(model, None, comp.make_params({"pattern": "3:48", "sparsity": 3 / 48}), 0)
    assert comp.widths_ok(comp.make_params({"pattern": "2:4"}), {"hidden": 576, "mlp": 1536}) == []
    assert "mlp width is 30" in comp.widths_ok(comp.make_params({"pattern": "2:4"}), {"mlp": 30})[0]


# --- structured: FLAP, Wanda-sp, magnitude-sp ------------------------------------------------


def test_bias_compensation_is_the_mean_output_of_the_removed_channels() -> None:
    from reclaim.compress._structured import bias_compensation

    g = torch.Generator().manual_seed(7)
    x = torch.randn(200, 16, generator=g) + torch.linspace(-2, 2, 16)  # channels with non-zero means
    w = torch.randn(8, 16, generator=g)
    pruned = torch.zeros(16, dtype=torch.bool)
    pruned[[1, 5, 6, 11]] = True
    expected = (x[:, pruned] @ w[:, pruned].t()).mean(dim=0)
    assert torch.allclose(bias_compensation(w, x.mean(dim=0), pruned), expected, atol=1e-5)


def _mlp_mean_output(model, ids) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return mean_module_output(model, model.model.layers[0].mlp, ids)


def test_flap_keeps_the_first_mlps_mean_output_and_prunes_the_target_share() -> None:
    calib = _calib(4)
    model = _tiny_llama()
    before = _mlp_mean_output(model, calib)
    comp = get("flap")
    rec = comp.compress(model, calib, comp.make_params({"sparsity": 0.25}), 0)
    assert model.config.mlp_bias and model.model.layers[0].mlp.down_proj.bias is not None
    # block 0's MLP sees the same inputs before and after (FLAP prunes after calibrating on the
    # unpruned model; attention is untouched), so compensation keeps its mean output
    after = _mlp_mean_output(model, calib)
    assert torch.allclose(after, before, atol=1e-4)
    counts = rec["channels_pruned_per_block"]
    assert sum(counts) == int(2 * 128 * 0.25)  # global (AL): the total, not per layer
    mean_sparsity = sum(v["sparsity"] for v in rec["layers"].values()) / len(rec["layers"])
    assert mean_sparsity == pytest.approx(0.25)
    assert "MLP channels only" in rec["scope"] and "4 query heads share 2 KV heads" in rec["scope"]
    # without compensation the mean output moves
    model2 = _tiny_llama()
    comp.compress(model2, calib, comp.make_params({"sparsity": 0.25, "bias_compensation": False}), 0)
    assert not torch.allclose(_mlp_mean_output(model2, calib), before, atol=1e-4)


@pytest.mark.parametrize("method", ["wanda_sp", "magnitude_sp", "flap"])
def test_structured_pruning_zeroes_whole_channels(method: str) -> None:
    model = _tiny_llama()
    comp = get(method)
    raw = {"sparsity": 0.5, **({"structure": "UL"} if method == "flap" else {})}
    rec = comp.compress(model, _calib(), comp.make_params(raw), 0)
    for i, layer in enumerate(model.model.layers):
        mlp = layer.mlp
        dead = (mlp.down_proj.weight == 0).all(dim=0)
        assert int(dead.sum()) == 64  # uniform: half of every layer's 128 channels
        assert torch.all(mlp.gate_proj.weight[dead] == 0) and torch.all(mlp.up_proj.weight[dead] == 0)
        assert rec["layers"][f"model.layers.{i}.mlp.up_proj"]["sparsity"] == 0.5
        assert not (layer.self_attn.q_proj.weight == 0).all(dim=1).any()  # attention untouched
    assert len(rec["layers"]) == 6


def test_bias_compensated_model_saves_and_reloads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    from reclaim.models import save_model_dir

    class _Tok:
        def save_pretrained(self, _d) -> None:  # type: ignore[no-untyped-def]
            pass

    model = _tiny_llama()
    comp = get("flap")
    comp.compress(model, _calib(), comp.make_params({"sparsity": 0.3}), 0)
    ids = _calib(1)[0]
    for gguf_like in (False, True):  # save_pretrained, and the GGUF-loaded branch (safetensors itself)
        out = tmp_path / f"m{int(gguf_like)}"
        out.mkdir()
        model.hf_quantizer = object() if gguf_like else None
        save_model_dir(model, _Tok(), out)
        back = AutoModelForCausalLM.from_pretrained(out).eval()
        assert back.config.mlp_bias
        assert torch.allclose(back(ids).logits, model(ids).logits, atol=1e-5)
    model.hf_quantizer = None


@pytest.mark.parametrize("method,raw,message", [
    ("flap", {"sparsity": 1.0}, r"sparsity must be a number in \[0, 1\)"),
    ("wanda_sp", {"sparsity": -0.1}, r"sparsity must be a number in \[0, 1\)"),
    ("flap", {"metric": "IFV"}, "metric: unknown 'IFV'"),
    ("magnitude_sp", {"pattern": "2:4"}, "unknown parameter 'pattern'"),
])
def test_bad_structured_params_are_refused(method, raw, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        get(method).make_params(raw)


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_sparsegpt_chunked_solve_equals_the_column_loop(nm) -> None:  # type: ignore[no-untyped-def]
    from reclaim.compress.sparsegpt import sparsegpt_prune_loop

    x = _correlated_inputs(d=96)
    w = torch.randn(24, 96, generator=torch.Generator().manual_seed(8))
    acc = HessianAccumulator(96)
    acc.add(x)
    a, ma = sparsegpt_prune(w, acc.h, 0.5, nm, block_size=64)
    b, mb = sparsegpt_prune_loop(w, acc.h, 0.5, nm, block_size=64)
    assert torch.equal(ma, mb) and torch.allclose(a, b, atol=1e-4)
