"""Low-rank compensation (svd_comp, eora) and gradient-located outliers (gwq): the math on
generated matrices, and the methods on a tiny random Llama (merged weights, PEFT adapter that
reproduces the merged model, refusals naming the layer)."""

from __future__ import annotations

import copy

import pytest
import torch

from reclaim.compress import get
from reclaim.compress._blocks import compressible_linears
from reclaim.compress._lowrank import SecondMoment, expected_error, write_peft_adapter
from reclaim.compress.eora import eora_factors
from reclaim.compress.svd_comp import svd_factors
from reclaim.testing import tiny_llama_lm as _tiny_llama
from reclaim.testing import token_windows as _calib


def _spd(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4 * n, n, generator=g, dtype=torch.float64) * torch.logspace(0, 2, n, dtype=torch.float64)
    return x.t() @ x / (4 * n)


def test_eora_equals_plain_svd_when_the_covariance_is_the_identity() -> None:
    dw = torch.randn(24, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for r in (1, 5, 24):
        b_s, a_s = svd_factors(dw, r)
        b_e, a_e = eora_factors(dw, torch.eye(40, dtype=torch.float64), r)
        assert torch.allclose(b_e @ a_e, b_s @ a_s, atol=1e-10)
    # full rank reproduces dW exactly under any covariance
    b, a = eora_factors(dw, _spd(40, 1), 24)
    assert torch.allclose(b @ a, dw, atol=1e-8)


def test_eora_never_has_larger_expected_error_than_svd_on_a_random_spd_covariance() -> None:
    dw = torch.randn(32, 48, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    c = _spd(48, 3)
    gaps = []
    for r in range(1, 33):
        e_svd = expected_error(dw, *svd_factors(dw, r), c)
        e_eora = expected_error(dw, *eora_factors(dw, c, r), c)
        assert e_eora <= e_svd * (1 + 1e-9) + 1e-12, r
        gaps.append(e_svd - e_eora)
    assert max(gaps[:-1]) > 0  # strictly better somewhere below full rank on an anisotropic C
    # and it is the optimum: no random rank-4 product does better
    g = torch.Generator().manual_seed(4)
    best = expected_error(dw, *eora_factors(dw, c, 4), c)
    for _ in range(20):
        b, a = svd_factors(dw + 0.1 * torch.randn(32, 48, generator=g, dtype=torch.float64), 4)
        assert expected_error(dw, b, a, c) >= best


@pytest.mark.parametrize("shape", [(30, 12), (12, 30)])
def test_top_svd_matches_the_full_svd(shape: tuple[int, int]) -> None:
    from reclaim.compress._lowrank import top_svd
    from reclaim.linalg import svd_signed

    a = torch.randn(*shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    u, s, vh = top_svd(a, 5)
    u0, s0, vh0 = svd_signed(a)
    assert torch.allclose(s, s0[:5], atol=1e-10)
    assert torch.allclose(u, u0[:, :5], atol=1e-8) and torch.allclose(vh, vh0[:5], atol=1e-8)


def test_second_moment_is_the_mean_outer_product() -> None:
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(5))
    acc = SecondMoment(6)
    acc.add(x[:20])
    acc.add(x[20:])
    assert torch.allclose(acc.c, x.double().t() @ x.double() / 50, atol=1e-12)


def _rtn_pair():  # type: ignore[no-untyped-def]
    original = _tiny_llama()
    model = copy.deepcopy(original)
    rtn = get("rtn")
    base = {"method": "rtn", "record": rtn.compress(model, None, rtn.make_params({"bits": 2, "group_size": 16}), 0)}
    return original, model, base


@pytest.mark.parametrize("method", ["svd_comp", "eora"])
def test_compensation_merges_wc_plus_ba_and_lowers_the_error(method: str) -> None:
    original, model, base = _rtn_pair()
    wc = {n: lin.weight.detach().clone() for n, lin in compressible_linears(model).items()}
    comp = get(method)
    rec = comp.compress(model, _calib(), comp.make_params({"rank": 8}), 0, original=original, base=base)
    factors = rec.pop("_outputs")["factors"]
    assert set(factors) == set(wc) and len(rec["layers"]) == 14
    for name, lin in compressible_linears(model).items():
        a, b = factors[name]
        assert a.shape == (8, lin.in_features) and b.shape == (lin.out_features, 8)
        assert torch.allclose(lin.weight, wc[name] + b @ a, atol=1e-5)
        r = rec["layers"][name]
        if method == "svd_comp":  # Eckart-Young: SVD minimises the weight error
            assert r["weight_error"] <= r["base_weight_error"] + 1e-12
        else:  # EoRA minimises the output error on the calibration inputs
            assert r["output_error"] <= r["base_output_error"] + 1e-12
        assert r["stored_bits"] > base["record"]["layers"][name]["stored_bits"]


def test_rank_larger_than_a_layer_is_refused_naming_it() -> None:
    original, model, base = _rtn_pair()
    comp = get("svd_comp")
    with pytest.raises(ValueError, match=r"rank 40 exceeds layer 'model.layers.0.self_attn.k_proj'"):
        comp.compress(model, None, comp.make_params({"rank": 40}), 0, original=original, base=base)
    assert comp.widths_ok(comp.make_params({"rank": 100}), {"hidden": 64, "mlp": 128}) == [
        "rank 100 exceeds the hidden width 64"]
    with pytest.raises(ValueError, match="rank must be an integer >= 1"):
        comp.make_params({"rank": 0})


def test_peft_adapter_on_the_compressed_base_reproduces_the_merged_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    original, model, base = _rtn_pair()
    model.save_pretrained(tmp_path / "base")
    comp = get("eora")
    rec = comp.compress(model, _calib(), comp.make_params({"rank": 4}), 0, original=original, base=base)
    out = rec.pop("_outputs")
    comp.write_outputs(tmp_path / "merged", out)
    assert (tmp_path / "merged/adapter/adapter_model.safetensors").is_file()
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
                                           tmp_path / "merged/adapter").eval()
    ids = _calib(2, 16, seed=9)[0]
    with torch.no_grad():
        want = model(input_ids=ids).logits
        got = peft_model(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tmp_path / "base")(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(plain, want, atol=1e-3)  # the adapter is not a no-op
    # the same layout written directly loads too (alpha = r: scaling 1)
    write_peft_adapter(tmp_path / "again", out["factors"], 4)
    cfg = (tmp_path / "again/adapter_config.json").read_text()
    assert '"lora_alpha": 4' in cfg and '"r": 4' in cfg


# --- GWQ: gradient-located 16-bit outliers -----------------------------------------------------


def test_gwq_mask_keeps_exactly_the_top_fraction_and_zero_fraction_is_rtn() -> None:
    from reclaim.compress._quant import fake_quant
    from reclaim.compress.gwq import outlier_bits, quantize_with_outliers, top_mask

    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(0))
    w[3, 7] = 40.0  # an outlier that stretches its group's grid
    p = get("gwq").make_params({"bits": 3, "group_size": 16, "outlier_fraction": 0.01})
    mask = top_mask(w.abs(), 0.01)
    assert int(mask.sum()) == round(0.01 * w.numel()) and bool(mask[3, 7])
    w_hat = quantize_with_outliers(w, mask, p, "x")
    assert torch.equal(w_hat[mask], w[mask])
    # without the outlier in its group the rest of that group is quantized on a finer grid
    rtn = fake_quant(w, p.quant)
    row = slice(0, 16)
    assert (w_hat[3, row] - w[3, row]).abs().sum() < (rtn[3, row] - w[3, row]).abs().sum()
    assert torch.equal(quantize_with_outliers(w, top_mask(w.abs(), 0.0), p, "x"), rtn)
    # accounting: 16-bit value + 6-bit column index per outlier + 32-bit row pointers
    assert outlier_bits((16, 64), 10) == pytest.approx((10 * 22 + 32 * 16) / 1024)
    with pytest.raises(ValueError, match="select: unknown 'curvature'"):
        get("gwq").make_params({"select": "curvature"})
    with pytest.raises(ValueError, match="rest: unknown 'awq'"):
        get("gwq").make_params({"rest": "awq"})


def test_gwq_hessian_saliency_is_the_obs_saliency() -> None:
    from reclaim.compress.gwq import hessian_saliency

    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 24, generator=g) @ torch.randn(24, 24, generator=g)
    h = 2 * x.T @ x / 200
    w = torch.randn(8, 24, generator=g)
    damped = h.double() + 0.01 * torch.diag(h).double().mean() * torch.eye(24, dtype=torch.float64)
    expect = w.double() ** 2 / torch.diag(torch.linalg.inv(damped))
    assert torch.allclose(hessian_saliency(w, h, 0.01).double(), expect, rtol=1e-5)


def test_gptq_keeping_the_outliers_keeps_them_and_lowers_the_output_error() -> None:
    """GWQ's GPTQ reading: kept weights have zero rounding error (their value is the weight the
    OBS updates left), no keep is plain GPTQ, and keeping the top 1 % lowers the output error."""
    from reclaim.compress._base import output_error
    from reclaim.compress._quant import QuantSpec, fake_quant
    from reclaim.compress.gptq import HessianAccumulator, gptq_quantize
    from reclaim.compress.gwq import hessian_saliency, top_mask

    g = torch.Generator().manual_seed(4)
    x = (torch.randn(512, 64, generator=g) @ (torch.randn(64, 64, generator=g) / 8 + 0.2 * torch.eye(64)))
    x = x * torch.logspace(-1, 1, 64)
    acc = HessianAccumulator(64)
    acc.add(x)
    w = torch.randn(48, 64, generator=g)
    spec = QuantSpec(bits=3, group_size=16)
    plain = gptq_quantize(w, acc.h, spec, block_size=16)
    assert torch.equal(gptq_quantize(w, acc.h, spec, block_size=16, keep=torch.zeros_like(w, dtype=torch.bool)),
                       plain)
    keep = top_mask(hessian_saliency(w, acc.h, 0.01), 0.01)
    kept = gptq_quantize(w, acc.h, spec, block_size=16, keep=keep)
    assert output_error(w, kept, acc.h) < output_error(w, plain, acc.h) < output_error(w, fake_quant(w, spec), acc.h)
    # the first column's kept weights see no earlier update: exactly the original weight
    first = keep[:, 0]
    assert torch.equal(kept[first, 0], w[first, 0])
    # every non-kept weight sits on its group's grid: at most 2^3 distinct values per (row, group)
    off = kept.masked_fill(keep, float("nan"))
    for r in range(48):
        for c0 in range(0, 64, 16):
            vals = off[r, c0:c0 + 16]
            assert vals[~vals.isnan()].unique().numel() <= 8


@pytest.mark.parametrize("select,rest", [("gradient", "rtn"), ("magnitude", "rtn"), ("activation", "rtn"),
                                         ("hessian", "rtn"), ("random", "rtn"), ("gradient", "gptq")])
def test_gwq_selects_by_its_saliency_on_a_tiny_llama(select: str, rest: str) -> None:
    from reclaim.compress.gwq import gradient_saliency

    model = _tiny_llama()
    ref = copy.deepcopy(model)
    calib = _calib()
    layers = compressible_linears(ref)
    grads = gradient_saliency(ref, layers, calib[:1]) if select == "gradient" else None
    gwq = get("gwq")
    params = gwq.make_params({"bits": 2, "group_size": 16, "outlier_fraction": 0.05, "select": select, "rest": rest})
    rec = gwq.compress(model, calib, params, seed=3)
    assert rec["select"] == select and rec["rest"] == rest and "16 bits" in rec["outlier_accounting"]
    for name, lin in compressible_linears(model).items():
        w = layers[name].weight.detach()
        r = rec["layers"][name]
        assert r["outliers"] == round(0.05 * w.numel())
        assert set(r) >= {"weight_error", "stored_bits"}
        if rest == "gptq":  # kept weights carry GPTQ's updates: not equal to the originals
            continue
        kept = lin.weight.detach() == w
        assert kept.sum() >= r["outliers"]  # the outliers, plus any weight already on its grid
        assert r["stored_bits"] > params.quant.stored_bits(tuple(w.shape))
        if select == "gradient":  # the kept 16-bit entries include the top-|grad| ones
            top = torch.topk(grads[name].flatten(), r["outliers"]).indices
            assert bool(kept.flatten()[top].all())
        if select == "magnitude":
            top = torch.topk(w.abs().flatten(), r["outliers"]).indices
            assert bool(kept.flatten()[top].all())
    assert all(not p.requires_grad or p.grad is None for p in model.parameters())
    if select == "random":  # seeded: the same seed keeps the same weights
        again = _tiny_llama()
        gwq.compress(again, calib, params, seed=3)
        assert all(torch.equal(a.weight, b.weight) for a, b in
                   zip(compressible_linears(again).values(), compressible_linears(model).values(), strict=True))


def test_output_errors_share_the_denominator_and_match_output_error() -> None:
    from reclaim.compress._base import output_error
    from reclaim.compress._lowrank import output_errors

    g = torch.Generator().manual_seed(3)
    w, wc, new = (torch.randn(12, 20, generator=g) for _ in range(3))
    h = _spd(20, 4)
    got = output_errors(w, wc, new, h)
    assert got == pytest.approx({"base_output_error": output_error(w, wc, h), "output_error": output_error(w, new, h)},
                                rel=1e-12)
