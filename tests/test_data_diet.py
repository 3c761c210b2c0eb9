"""Data Diet / Sorscher et al. pruning: the score math (EL2N, GraNd's closed form, prototype
distances), parameter and config refusals, the plan's identities for model-based selectors,
the claim's aggregation, and (slow) the claim through Snakemake on a tiny model."""

from __future__ import annotations

import copy
import csv
import json
import math

import numpy as np
import pytest
import yaml

from reclaim import plan as reclaim_plan
from reclaim import select
from reclaim.claims import data_diet
from reclaim.config import REPO_ROOT, ConfigError, load_yaml, merge, validate
from reclaim.select import _frozen
from reclaim.select.grand import grand_scores
from reclaim.select.prototypes import PrototypeParams, prototype_distances

# --- score math ------------------------------------------------------------------------------


def test_el2n_is_zero_for_a_perfect_classifier_and_sqrt2_for_a_confidently_wrong_one() -> None:
    y = np.array([0, 2, 1, 1])
    perfect = np.eye(3)[y][None]                    # (runs=1, n, k)
    wrong = np.eye(3)[(y + 1) % 3][None]
    assert np.allclose(_frozen.error_norm(perfect, y), 0.0)
    assert np.allclose(_frozen.error_norm(wrong, y), math.sqrt(2))
    uniform = np.full((1, 4, 3), 1 / 3)
    assert np.allclose(_frozen.error_norm(uniform, y), math.sqrt((2 / 3) ** 2 + 2 * (1 / 3) ** 2))


def test_grand_closed_form_equals_autograd_per_example_gradient_norm() -> None:
    import torch

    rng = np.random.default_rng(0)
    n, d, k = 6, 5, 3
    h, y = rng.normal(size=(n, d)), rng.integers(0, k, size=n)
    w, b = rng.normal(size=(d, k)), rng.normal(size=k)
    probs = _frozen.softmax(h @ w + b)[None]
    closed = grand_scores(h, probs, y)
    for i in range(n):
        wt = torch.tensor(w, requires_grad=True)
        bt = torch.tensor(b, requires_grad=True)
        logits = torch.tensor(h[i:i + 1]) @ wt + bt
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(y[i:i + 1]))
        gw, gb = torch.autograd.grad(loss, (wt, bt))
        norm = math.sqrt(float((gw ** 2).sum() + (gb ** 2).sum()))
        assert closed[i] == pytest.approx(norm, rel=1e-10)


def test_head_training_is_seeded_and_learns() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=200)
    h = rng.normal(size=(200, 8)) + 1.5 * y[:, None]
    p = _frozen.HeadParams(epochs=3, runs=2, lr=0.05)
    w0, b0 = _frozen.train_head(h, y, 2, p, run=0)
    w0b, b0b = _frozen.train_head(h, y, 2, p, run=0)
    w1, _ = _frozen.train_head(h, y, 2, p, run=1)
    assert np.array_equal(w0, w0b) and np.array_equal(b0, b0b) and not np.allclose(w0, w1)
    acc = (_frozen.softmax(h @ w0 + b0).argmax(1) == y).mean()
    assert acc > 0.9
    # epochs: 0 is the head at initialisation (GraNd at init), still seeded
    w_init, _ = _frozen.train_head(h, y, 2, _frozen.HeadParams(epochs=0), run=0)
    assert np.array_equal(w_init, _frozen.train_head(h, y, 2, _frozen.HeadParams(epochs=0), run=0)[0])


def test_prototype_scores_are_seeded_deterministic_and_cosine_distances() -> None:
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(3, 6))
    x = np.repeat(centers, 20, axis=0) + 0.05 * rng.normal(size=(60, 6))
    p = PrototypeParams(clusters=3, seed=5)
    a, b = prototype_distances(x, p), prototype_distances(x, p)
    assert np.array_equal(a, b)
    assert a.min() >= -1e-12 and a.max() <= 2.0
    assert a.max() < 0.05  # tight clusters: every point is near its prototype
    # an outlier pointing away from every centre is the hardest example
    y = np.vstack([x, -centers.sum(axis=0, keepdims=True)])
    assert int(np.argmax(prototype_distances(y, p))) == 60
    # each point its own cluster: distance 0
    assert np.allclose(prototype_distances(x[:5], PrototypeParams(clusters=5)), 0.0, atol=1e-9)
    with pytest.raises(ValueError, match="clusters .* must not exceed the pool size"):
        prototype_distances(x[:2], p)


# --- params and config -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["el2n", "grand", "prototypes"])
def test_unknown_selector_param_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unknown parameter 'epochz'"):
        select.get(name).make_params({"epochz": 2})


@pytest.mark.parametrize("raw, msg", [({"runs": 0}, "runs must be an integer >= 1"),
                                      ({"epochs": -1}, "epochs must be an integer >= 0"),
                                      ({"epochs": 1.5}, "epochs must be an integer"),
                                      ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
                                      ({"standardize": "yes"}, "standardize must be true or false")])
def test_bad_head_params_are_refused(raw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        select.get("el2n").make_params(raw)


@pytest.fixture(scope="module")
def cfg() -> dict:
    return validate(load_yaml(REPO_ROOT / "params.yaml"))


def test_config_refuses_unknown_param_naming_the_key(cfg) -> None:
    bad = copy.deepcopy(cfg)
    bad["selectors"]["el2n"]["params"]["bogus"] = 1
    with pytest.raises(ConfigError, match=r"selectors\.el2n\.params: unknown parameter 'bogus'"):
        validate(bad)


def test_config_refuses_a_model_based_selector_in_an_arm_that_does_not_train(cfg) -> None:
    bad = copy.deepcopy(cfg)
    bad["claims"]["data_diet"]["arms"]["el2n_hard_50"] = [
        {"select": {"selector": "el2n", "subset": "top", "budget": 0.5}}]
    with pytest.raises(ConfigError, match=r"el2n_hard_50\[0\]\.select\.selector: 'el2n' scores with a model and arm "
                                          r"'el2n_hard_50' does not train: give claims\.data_diet\.scales\.smoke\.score_with"):
        validate(bad)


def test_claim_config_refusals(cfg) -> None:
    claim = cfg["claims"]["data_diet"]
    agg = data_diet.AGGREGATOR
    with pytest.raises(ValueError, match="unknown key 'tolerance'"):
        agg.check_config({**claim, "verdict": {"tolerance": 1}}, "x")
    no_full = {**claim, "arms": {k: v for k, v in claim["arms"].items() if k != "full"}}
    with pytest.raises(ValueError, match="no full-data arm"):
        agg.check_config(no_full, "x")
    with pytest.raises(ValueError, match="no arm selects with 'el2n' \\(hard\\) at kept fraction 0.4"):
        agg.check_config({**claim, "verdict": {"fraction": 0.4}}, "x")


# --- plan: identities of model-based scoring jobs ----------------------------------------------


def _score_keys(p: reclaim_plan.Plan, name: str) -> list[str]:
    return [k for k in p.jobs.get("score", {}) if k.startswith(f"{name}/")]


def test_one_scoring_job_per_params_shared_by_hard_easy_fractions_and_seeds(cfg) -> None:
    c = merge(cfg, {"claims": {"data_diet": {"scales": {"smoke": {"seeds": [0, 1, 2]}}}}})
    p = reclaim_plan.build(c)
    # one scoring job per (model, task) context: the smoke scale's sst2 (minilm) here; its
    # fashion_mnist (cnn_small) context is tests/test_image_tasks.py's
    (key,) = [k for k in _score_keys(p, "el2n") if p.jobs["score"][k].spec["task"] == "sst2"]
    job = p.jobs["score"][key]
    assert job.spec["model"]["name"] == "minilm" and job.spec["task"] == "sst2" and job.spec["seed"] is None
    el2n_arms = [a for a in c["claims"]["data_diet"]["arms"] if a.startswith("el2n_")]
    subsets = {r.jobs[1].key for r in p.runs["data_diet"] if r.arm in el2n_arms and r.task == "sst2"}
    assert len(subsets) == len(el2n_arms)                      # one subset per kind x fraction
    assert len(_score_keys(p, "random")) >= 3                  # random is drawn per seed
    # the model is part of the score id: another model, another scoring job
    other = merge(c, {"models": {"minilm2": c["models"]["minilm"]},
                      "claims": {"data_diet": {"scales": {"smoke": {"models": ["minilm2"]}}}}})
    assert key not in _score_keys(reclaim_plan.build(other), "el2n")


def test_a_model_based_selector_without_a_model_is_refused(cfg) -> None:
    source = {"id": "glue/sst2/train@10", "pool": "x.jsonl", "target": None, "limit": 10}
    with pytest.raises(ValueError, match="'el2n' scores with a model"):
        reclaim_plan.select_jobs(cfg, {"selector": "el2n", "subset": "top", "budget": 0.5}, source, 0)


def test_score_ids_of_other_selectors_do_not_change(cfg) -> None:
    """Model-free selectors' ids ignore the new source keys (DSIR's jobs keep their ids)."""
    src = {"id": "glue/sst2/train@10", "pool": "x.jsonl", "target": None, "limit": 10}
    step = {"selector": "random", "subset": "top", "budget": 0.5}
    a, _ = reclaim_plan.select_jobs(cfg, step, src, 0)
    b, _ = reclaim_plan.select_jobs(cfg, step, {**src, "model": "minilm", "task": "sst2"}, 0)
    assert a.id == b.id and "model" not in b.spec


# --- selectors on a real (tiny) model ------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ctx(tiny_models, glue_fixture, tmp_path_factory):
    from reclaim.data.example_ids import assign_ids
    from reclaim.data.glue import read_split
    from reclaim.models import ResolvedModel
    from reclaim.select._base import ModelContext, canonical

    rows = read_split("sst2", "train", str(glue_fixture), None)
    assign_ids(rows, ["sst2", "train"], ["text_a", "text_b", "label"])
    ctx = ModelContext({"name": "tiny-bert", "framing": "encoder_cls"},
                       ResolvedModel("tiny-bert", str(tiny_models["bert"]), "local_dir"), "sst2", 1)
    return ctx, canonical(rows, "fixture")


def test_model_based_selectors_score_every_example_deterministically(tiny_ctx) -> None:
    ctx, pool = tiny_ctx
    for name, raw in (("el2n", {"epochs": 1, "runs": 2}), ("grand", {"epochs": 0, "runs": 2}),
                      ("prototypes", {"clusters": 3})):
        sel = select.get(name)
        params = sel.make_params(raw)
        a = sel.score(pool, None, params, 0, model=ctx)
        b = sel.score(pool, None, params, 7, model=ctx)  # not seeded by the job seed
        assert len(a) == len(pool) and a == b and all(math.isfinite(x) for x in a)
        if name == "el2n":
            assert 0 <= min(a) and max(a) <= math.sqrt(2) + 1e-12


# --- the claim's aggregation ---------------------------------------------------------------------


def _fake_runs(claim: dict, acc_of) -> list[dict]:
    runs = []
    for arm in claim["arms"]:
        for seed in (0, 1):
            runs.append({"arm": arm, "seed": seed, "model": "m", "task": "sst2", "path": f"{arm}/{seed}",
                         "result": {"metrics": {"accuracy": acc_of(arm) + seed * 0.2}, "n_eval": 872,
                                    "n_train": 100, "device_name": "cpu"}})
    return runs


def test_aggregate_table_plot_and_computed_verdicts(cfg, tmp_path) -> None:
    claim = cfg["claims"]["data_diet"]

    def acc(arm: str) -> float:  # easy wins when few are kept, hard when many are
        if arm == "full":
            return 85.0
        frac = int(arm.rsplit("_", 1)[1])
        sign = {30: -1, 70: 1}.get(frac, 0)
        return 80.0 + sign * (30 if "_hard_" in arm else -30 if "_easy_" in arm else 0)

    out = data_diet.AGGREGATOR.aggregate_runs("data_diet", claim, "smoke", _fake_runs(claim, acc),
                                              tmp_path / "t.csv", tmp_path / "t.json", tmp_path / "t.png")
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert len(rows) == len(claim["arms"])
    r = next(r for r in rows if r["arm"] == "el2n_easy_30")
    assert (r["scorer"], r["mode"], r["kept_fraction"], r["n_seeds"], r["model"], r["task"]) == \
        ("el2n", "easy", "0.3", "2", "m", "sst2")
    assert next(r for r in rows if r["arm"] == "random_50")["mode"] == "random"
    v = out["verdicts"]["m/sst2"]
    assert v["a_pruned_matches_full"]["verdict"] == "does not hold"    # 80 vs 85 - 0.5
    assert v["b_beats_random"]["verdict"] == "inconclusive"            # 80 vs 80
    assert v["c_prototypes_easy_wins_at_0.3"]["verdict"] == "holds"
    assert v["c_prototypes_hard_wins_at_0.7"]["verdict"] == "holds"
    assert json.loads((tmp_path / "t.json").read_text())["verdicts"] == json.loads(json.dumps(out["verdicts"]))
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    head = data_diet.AGGREGATOR.headline(out, claim)
    assert head["rows"][0]["reproduced"] == pytest.approx(-5.0)


# --- the claim through Snakemake (tiny model) ----------------------------------------------------

SLOW_ARMS = ("full", "random_50", "el2n_hard_30", "el2n_easy_30", "el2n_hard_50", "el2n_hard_70", "el2n_easy_70")


@pytest.fixture(scope="module")
def diet_run(tmp_path_factory, tiny_models, glue_fixture):
    from reclaim.testing import copy_workflow, run_snakemake, tiny_claim_params, workflow_env

    work = copy_workflow(tmp_path_factory.mktemp("wf_diet"))
    params = yaml.safe_load((work / "params.yaml").read_text())  # a throwaway copy: fewer arms
    claim = params["claims"]["data_diet"]
    claim["arms"] = {a: claim["arms"][a] for a in SLOW_ARMS}
    claim["verdict"]["crossover"] = ["el2n"]
    params["selectors"]["el2n"]["params"].update(runs=2)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # one training seed: sharing the scoring job across seeds is checked on the plan above
    tiny = tiny_claim_params(tiny_models, tasks=["sst2"], seeds=[0], max_train=24, max_eval=16)
    (work / "test_params.yaml").write_text(yaml.safe_dump(tiny))
    env = workflow_env(work, glue_fixture)
    proc = run_snakemake(work, "results/data_diet.csv", "--cores", "2", env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, env


@pytest.mark.slow
def test_claim_outputs_and_one_scoring_job_for_every_subset(diet_run) -> None:
    work, _ = diet_run
    rows = list(csv.DictReader(open(work / "results/data_diet.csv")))
    assert {r["arm"] for r in rows} == set(SLOW_ARMS)
    assert all(r["scale"] == "smoke" and r["model"] == "tiny-bert" and r["task"] == "sst2"
               and r["n_seeds"] == "1" and r["status"] == "ok" for r in rows)
    assert {r["n_train"] for r in rows if r["arm"] == "el2n_hard_50"} == {"12"}
    out = json.loads((work / "results/data_diet.json").read_text())
    v = out["verdicts"]["tiny-bert/sst2"]
    assert {"a_pruned_matches_full", "b_beats_random", "c_el2n_easy_wins_at_0.3", "c_el2n_hard_wins_at_0.7"} == set(v)
    assert all(x["verdict"] in ("holds", "does not hold", "inconclusive") and x["rule"] for x in v.values())
    assert (work / "results/data_diet_loss.png").read_bytes()[:4] == b"\x89PNG"
    # keep-hard and keep-easy at three fractions: ONE EL2N scoring job
    assert len(list((work / "results/select/scores/el2n").glob("*/scores.tsv"))) == 1
    assert len(list((work / "results/select/subsets/el2n").glob("*/subset.tsv"))) == 5
    meta = json.loads(next((work / "results/select/scores/el2n").glob("*/scores.json")).read_text())
    assert meta["orientation"].startswith("high = hard") and meta["model"]["name"] == "tiny-bert"
    assert meta["n"] == 24


@pytest.mark.slow
def test_second_run_does_nothing(diet_run) -> None:
    from reclaim.testing import run_snakemake

    work, env = diet_run
    proc = run_snakemake(work, "-n", "results/data_diet.csv", env=env)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_el2n_params_rerun_only_el2n_scoring_its_subsets_trains_and_the_table(diet_run) -> None:
    from reclaim.testing import planned_jobs, run_snakemake

    work, env = diet_run
    p = work / "params.yaml"
    original = p.read_text()
    params = yaml.safe_load(original)
    params["selectors"]["el2n"]["params"]["epochs"] = 1
    p.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        proc = run_snakemake(work, "-n", "results/data_diet.csv", env=env)
    finally:
        p.write_text(original)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned_jobs(proc.stdout)
    assert [w["selector"] for r, w in jobs if r == "score"] == ["el2n"]
    assert [w["selector"] for r, w in jobs if r == "subset"] == ["el2n"] * 5
    assert len([1 for r, _ in jobs if r == "train"]) == 5   # the five EL2N arms
    assert {r for r, _ in jobs} == {"score", "subset", "train", "claim_table"}
