"""Loss-based sample reweighting (Sow et al., arXiv 2502.06733): the math, the framings'
per-example losses, the hook in the training loop, job identity and validation, the toy
simulation and the claim's verdicts."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from reclaim import reweight
from reclaim.config import REPO_ROOT, ConfigError, load_yaml, validate
from reclaim.reweight._base import normalise, weighted_loss

STRATEGIES = ("uniform", "linupper", "quadratic", "extremes")
PARAMS = load_yaml(REPO_ROOT / "params.yaml")


def _w(strategy: str, losses: list[float], r: float = 1.0) -> torch.Tensor:
    return reweight.get(strategy).weights(torch.tensor(losses, dtype=torch.float64), r)


# -- the math -------------------------------------------------------------------------------


def test_normalise_is_the_papers_map_onto_minus_delta_delta() -> None:
    losses = torch.tensor([0.5, 1.0, 2.0, 4.5], dtype=torch.float64)
    h = normalise(losses)
    lo, hi = 0.5, 4.5
    paper = 2 * losses / (hi - lo) - (hi + lo) / (hi - lo)  # Sec. 3, delta = 1
    assert torch.allclose(h, paper, rtol=0, atol=1e-15)
    assert h.min() == -1 and h.max() == 1


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_weights_are_a_distribution_that_tends_to_uniform_as_r_grows(strategy: str) -> None:
    losses = [0.1, 0.4, 0.9, 2.5, 7.0, 0.2]
    gaps = []
    for r in (0.3, 1.0, 10.0, 1e3, 1e7):
        w = _w(strategy, losses, r)
        assert math.isclose(float(w.sum()), 1.0, rel_tol=1e-12) and bool((w > 0).all())
        gaps.append(float((w - 1 / len(losses)).abs().max()))
    assert all(b <= a + 1e-15 for a, b in zip(gaps, gaps[1:], strict=False))  # monotone in r
    assert gaps[-1] < 1e-7


def test_uniform_weights_reproduce_the_unweighted_loss() -> None:
    g = torch.Generator().manual_seed(0)
    losses = torch.rand(37, generator=g, dtype=torch.float64) * 5
    w = _w("uniform", losses.tolist())
    assert bool((w == 1 / 37).all())
    assert torch.allclose(weighted_loss(losses, w), losses.mean(), rtol=1e-15, atol=0)
    # with loss terms per example (tokens): the mean over all terms, as the framings' loss()
    counts = torch.randint(1, 6, (37,), generator=g)
    token_mean = (losses * counts).sum() / counts.sum()
    assert torch.allclose(weighted_loss(losses, w, counts), token_mean, rtol=1e-15, atol=0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_batch_of_equal_losses_gets_uniform_weights(strategy: str) -> None:
    for losses in ([1.3] * 8, [0.0] * 4, [2.0]):
        w = _w(strategy, losses)
        assert bool(torch.isfinite(w).all()) and bool((w == 1 / len(losses)).all())
    assert bool((normalise(torch.full((5,), 3.0)) == 0).all())  # no 0/0
    # a range below the reference code's floor (1e-6) is not blown up to [-1, 1]: |h| <= 2e-3
    w = _w(strategy, [1.0, 1.0 + 1e-9, 1.0 - 1e-9])
    assert bool(torch.isfinite(w).all()) and float((w - 1 / 3).abs().max()) < 1e-3


def test_each_strategy_orders_the_weights_by_its_shape() -> None:
    losses = [0.0, 1.0, 2.0, 3.0, 4.0]  # h = -1, -0.5, 0, 0.5, 1
    lin = _w("linupper", losses)  # f = 0, .5, 1, 1, 1: low losses down, flat above the mid-range
    assert lin[0] < lin[1] < lin[2] and torch.allclose(lin[2:], lin[2].expand(3))
    quad = _w("quadratic", losses)  # f = 0, .75, 1, .75, 0: the mid-range up
    assert quad[0] < quad[1] < quad[2] and torch.isclose(quad[1], quad[3]) and torch.isclose(quad[0], quad[4])
    ext = _w("extremes", losses)  # f = 1, .5, 0, .5, 1: both tails up
    assert ext[2] < ext[1] < ext[0] and torch.isclose(ext[1], ext[3]) and torch.isclose(ext[0], ext[4])
    assert bool((_w("uniform", losses) == 0.2).all())
    # r = 1: the largest weight ratio is e^(f_max - f_min) = e
    assert math.isclose(float(lin.max() / lin.min()), math.e, rel_tol=1e-12)


def test_weights_carry_no_gradient() -> None:
    losses = torch.tensor([0.3, 1.2, 2.2], requires_grad=True)
    w = reweight.get("linupper").weights(losses, 1.0)
    assert not w.requires_grad
    weighted_loss(losses, w).backward()
    assert torch.allclose(losses.grad, w * 1.0)  # d/dl_i sum_j w_j l_j = w_i


def test_resolve_fills_defaults_and_refuses_bad_values() -> None:
    assert reweight.resolve({"strategy": "linupper"}) == {"strategy": "linupper", "r": 1.0, "burn_in": 0}
    for bad, msg in (({"strategy": "linuper"}, "unknown strategy 'linuper'"), ({"strategy": "quadratic", "r": 0}, "r must"),
                     ({"strategy": "extremes", "burn_in": -1}, "burn_in"), ({"strategy": "uniform", "rr": 1}, "'rr'"),
                     ({"r": 1.0}, "needs a 'strategy'")):
        with pytest.raises(ValueError, match=msg):
            reweight.resolve(bad)


# -- framings: per-example losses agree with the mean loss -------------------------------------


@pytest.mark.parametrize("kind,framing", [("bert", "encoder_cls"), ("gpt2", "causal_lm"), ("t5", "seq2seq")])
def test_example_losses_average_to_the_framings_loss(kind, framing, tiny_models, glue_fixture) -> None:
    from reclaim import framings
    from reclaim.data.glue import get_task, read_classic
    from reclaim.models import resolve

    fr = framings.get(framing)
    task = get_task("sst2")
    model, tok = fr.load(resolve("m", {"framing": framing, "local_dir": str(tiny_models[kind])}), task)
    items = fr.encode(tok, task, read_classic(glue_fixture, "sst2", "train")[:6], 48)
    batch = fr.collate(tok, items)
    with torch.no_grad():
        mean_loss = fr.loss(model, batch)
        losses, counts = fr.example_losses(model, batch)
    assert losses.shape == (6,) and counts.shape == (6,) and bool((counts >= 1).all())
    assert torch.allclose((losses * counts).sum() / counts.sum(), mean_loss, rtol=1e-5, atol=1e-6)
    uniform = reweight.get("uniform").weights(losses, 1.0)
    assert torch.allclose(weighted_loss(losses, uniform, counts), mean_loss, rtol=1e-5, atol=1e-6)


# -- the hook in the training loop, job identity ----------------------------------------------


def _tiny_cfg(tiny_models) -> dict:
    cfg = copy.deepcopy(PARAMS)
    cfg["models"] = {"tiny-bert": {"framing": "encoder_cls", "local_dir": str(tiny_models["bert"])}}
    scale = cfg["claims"]["lora_ga_glue"]["scales"]["smoke"]
    scale.update(models=["tiny-bert"], max_train_examples=40, max_eval_examples=12)
    scale["train"] = {"batch_size": 8, "lr": 1e-3, "max_length": 48}
    return cfg


@pytest.fixture(scope="module")
def sst2_jsonl(glue_fixture, tmp_path_factory):
    from reclaim.data.glue import read_classic
    from reclaim.io import write_jsonl

    out = tmp_path_factory.mktemp("jsonl")
    for split in ("train", "dev"):
        write_jsonl(out / f"{split}.jsonl", read_classic(glue_fixture, "sst2", split))
    return out


def _train(cfg, data, tmp_path, reweighting=None):  # type: ignore[no-untyped-def]
    from reclaim.jobs import make_spec
    from reclaim.models import resolve
    from reclaim.train import run_job

    spec = make_spec(cfg, "lora_ga_glue", "tiny-bert", "sst2", "full_ft", 0, reweighting=reweighting)
    out = tmp_path / spec["job_id"] / "result.json"
    run_job(spec, data / "train.jsonl", data / "dev.jsonl", out,
            resolve("tiny-bert", cfg["models"]["tiny-bert"]), progress=False, threads=1)
    return spec, json.loads(out.read_text())


def test_the_hook_changes_training_only_after_burn_in(tiny_models, sst2_jsonl, tmp_path) -> None:
    cfg = _tiny_cfg(tiny_models)
    plain_spec, plain = _train(cfg, sst2_jsonl, tmp_path)
    uni_spec, uni = _train(cfg, sst2_jsonl, tmp_path, {"strategy": "uniform"})
    lin_spec, lin = _train(cfg, sst2_jsonl, tmp_path, {"strategy": "linupper", "r": 0.5, "burn_in": 2})
    assert "reweighting" not in plain_spec and plain["reweighting"] is None
    assert len({plain_spec["cfg"], uni_spec["cfg"], lin_spec["cfg"]}) == 3  # it enters the id only when present
    assert uni["losses"] == plain["losses"] and uni["metrics"] == plain["metrics"]  # bit for bit
    assert lin["losses"][:2] == plain["losses"][:2] and lin["losses"][2] != plain["losses"][2]
    rec = lin["reweighting"]
    assert rec["strategy"] == "linupper" and rec["r"] == 0.5 and rec["burn_in"] == 2
    assert rec["reweighted_steps_in_process"] == lin["steps"] - 2 and rec["mean_max_weight_x_batch"] > 1


def test_train_code_declares_the_strategy_module_of_reweighted_jobs_only(tiny_models) -> None:
    from reclaim.jobs import make_spec, train_code

    cfg = _tiny_cfg(tiny_models)
    plain = train_code(make_spec(cfg, "lora_ga_glue", "tiny-bert", "sst2", "full_ft", 0))
    lin = train_code(make_spec(cfg, "lora_ga_glue", "tiny-bert", "sst2", "full_ft", 0,
                               reweighting={"strategy": "linupper"}))
    assert not any(p.endswith(("reweight/linupper.py", "reweight/_base.py")) for p in plain)
    assert any(p.endswith("reweight/linupper.py") for p in lin) and any(p.endswith("reweight/_base.py") for p in lin)


def _bad(mutate) -> str:  # type: ignore[no-untyped-def]
    cfg = copy.deepcopy(PARAMS)
    mutate(cfg["claims"]["loss_reweighting"])
    with pytest.raises(ConfigError) as exc:
        validate(cfg)
    return str(exc.value)


def test_bad_reweighting_is_refused_before_any_job_naming_the_key() -> None:
    step = lambda c: c["arms"]["sst2_linupper"][0]["train"]["reweighting"]  # noqa: E731
    msg = _bad(lambda c: step(c).update(strategy="linuper"))
    assert "claims.loss_reweighting.arms.sst2_linupper[0].train.reweighting: unknown strategy 'linuper'" in msg
    msg = _bad(lambda c: step(c).update(rr=2))
    assert "claims.loss_reweighting.arms.sst2_linupper[0].train.reweighting.rr: unknown key 'rr'" in msg
    msg = _bad(lambda c: step(c).update(r=-1))
    assert "sst2_linupper[0].train.reweighting.r" in msg
    msg = _bad(lambda c: c["arms"]["toy_linupper"][0]["evaluate"]["params"].update(strategy="nope"))
    assert "toy_linupper[0].evaluate.params: unknown strategy 'nope'" in msg
    msg = _bad(lambda c: c["arms"]["toy_linupper"][0]["evaluate"]["params"].update(noise_high=3.0))
    assert "toy_linupper[-1].evaluate.params.noise_high: differs from the baseline" in msg
    msg = _bad(lambda c: c["scales"]["smoke"]["seeds_by_arm"].update(toy_nope=[0]))
    assert "scales.smoke.seeds_by_arm.toy_nope: not an arm" in msg


def test_plan_seeds_the_toy_and_keeps_other_evaluation_ids() -> None:
    from reclaim import plan

    cfg = validate(copy.deepcopy(PARAMS))
    p = plan.build(cfg, scale="smoke")
    runs = p.runs["loss_reweighting"]
    toy = [r for r in runs if r.arm == "toy_linupper"]
    assert sorted(r.seed for r in toy) == [0, 1, 2, 3, 4] and len({r.terminal.id for r in toy}) == 5
    assert sorted(r.seed for r in runs if r.arm == "sst2_linupper") == [0, 1, 2]
    assert all("seed" not in j.spec for j in p.jobs["evaluate"].values() if j.spec["evaluator"] != "reweighting_toy")
    uni = {r.seed: r.terminal.spec for r in runs if r.arm == "sst2_uniform"}
    assert all("reweighting" not in s for s in uni.values())


# -- the toy simulation and the claim ---------------------------------------------------------


def test_toy_is_seeded_and_shares_data_across_strategies() -> None:
    from reclaim import evaluate

    ev = evaluate.get("reweighting_toy")
    run = lambda s, seed: ev.evaluate({}, ev.make_params({"strategy": s, "steps": 60}), seed=seed)  # noqa: E731
    a, b, c = run("linupper", 3), run("linupper", 3), run("uniform", 3)
    assert a["test_loss_curve"] == b["test_loss_curve"] and len(a["test_loss_curve"]) == 61
    assert a["test_loss_curve"][0] == c["test_loss_curve"][0]  # same w*, same test set
    assert a["test_loss_curve"][1:] != c["test_loss_curve"][1:]  # the weights differ from the first step
    assert run("linupper", 4)["test_loss_curve"][0] != a["test_loss_curve"][0]
    assert a["test_loss_curve"][-1] < a["test_loss_curve"][0]
    with pytest.raises(ValueError, match="redundant_rank"):
        ev.make_params({"redundant_rank": 50})


def test_claim_verdicts_from_runs(tmp_path) -> None:
    from reclaim import claims

    claim = PARAMS["claims"]["loss_reweighting"]
    agg = claims.get("loss_reweighting")
    runs = []
    for seed in range(4):
        for arm, scale in (("toy_uniform", 1.0), ("toy_linupper", 0.5), ("toy_quadratic", 1.5), ("toy_extremes", 2.0)):
            curve = [scale * (1 + 0.01 * seed) / (1 + t) for t in range(401)]
            runs.append({"arm": arm, "seed": seed, "model": None, "task": None,
                         "result": {"metrics": {"test_loss_curve": curve}, "device_name": "cpu"}})
    for seed in range(2):
        for arm, acc in (("sst2_uniform", 80.0), ("sst2_linupper", 80.5), ("sst2_quadratic", 79.0), ("sst2_extremes", 78.0)):
            runs.append({"arm": arm, "seed": seed, "model": "minilm", "task": "sst2",
                         "result": {"metrics": {"accuracy": acc + seed}, "n_eval": 872, "n_train": 512,
                                    "device_name": "cpu"}})
    for seed in range(3):  # LM arms: pretrain records (held-out perplexity)
        for arm, ppl in (("lm_uniform", 30.0), ("lm_linupper", 29.0), ("lm_quadratic", 31.0)):
            runs.append({"arm": arm, "seed": seed, "model": None, "task": None, "result": {
                "heldout_ppl_after": ppl + 0.1 * seed, "heldout_ppl_before": 60.0, "n_train": 100, "n_heldout": 32,
                "steps": 12, "spec": {"model": {"name": "smollm2-135m"}}, "device_name": "cpu"}})
    out = agg.aggregate_runs("loss_reweighting", claim, "smoke", runs, tmp_path / "t.csv", tmp_path / "t.json",
                             tmp_path / "t.png")
    v = out["verdicts"]
    d = v["lm"]["d_lm_perplexity_vs_uniform"]
    assert d["verdict"] == "holds" and math.isclose(d["estimate"], -1.0)  # the same -1 on every seed
    assert v["toy"]["a_toy_linupper_vs_uniform"]["verdict"] == "holds"
    assert v["toy"]["b_toy_quadratic_vs_uniform"]["verdict"] == "does not hold"
    assert v["minilm"]["c_accuracy_vs_uniform"]["verdict"] == "inconclusive"  # 0.5 points, binomial se ~2
    assert math.isclose(v["minilm"]["c_accuracy_vs_uniform"]["estimate"], 0.5)
    text = (tmp_path / "t.csv").read_text()
    assert "test_loss@100" in text and "heldout_perplexity" in text and "not built" not in text
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    h = agg.headline(out, claim)
    assert {r["model"] for r in h["rows"]} == {"toy", "minilm", "lm"}
