"""TAROT (arXiv 2412.00420): whitening, the whitened feature distance, the OT potentials' sign,
fixed-size layering, OTM, the LESS-style baseline's collapse, the head gradients, the mixture
pool, the evaluator, the claim's aggregation and config refusals, and (slow) the claim
through Snakemake on the tiny fixtures."""

from __future__ import annotations

import copy
import csv
import json
import math

import numpy as np
import ot
import pytest
import yaml

from reclaim import plan as reclaim_plan
from reclaim import select
from reclaim.claims import tarot as tarot_claim
from reclaim.config import REPO_ROOT, ConfigError, load_yaml, merge, validate
from reclaim.data.pools import glue_mixture
from reclaim.evaluate.target_mixture import TargetMixtureParams, mixture_metrics
from reclaim.select import _tarot
from reclaim.select.subsets import SubsetParams
from reclaim.select.subsets import select as subset_select
from reclaim.select.tarot import TarotParams, tarot_scores

# --- whitening and WFD -----------------------------------------------------------------------


def test_whitening_gives_identity_covariance_in_float64() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    x = rng.normal(size=(500, 6)) @ a * np.array([100.0, 1, 1, 0.01, 1, 1])  # ill-conditioned
    z = _tarot.whiten(x, ridge=1e-12)
    assert z.dtype == np.float64
    assert np.allclose(z.mean(axis=0), 0.0, atol=1e-10)
    assert np.allclose(z.T @ z / len(z), np.eye(6), atol=1e-8)


def test_wfd_is_invariant_to_invertible_feature_maps_and_sign_flips() -> None:
    """Whitening removes any linear re-parametrisation of the features (a column's sign flip
    included), so the WFD does not depend on it; the unwhitened distance does."""
    rng = np.random.default_rng(1)
    gc, gt = rng.normal(size=(80, 5)), rng.normal(size=(30, 5))
    a = rng.normal(size=(5, 5)) @ np.diag([1.0, -1.0, 10.0, -0.1, 1.0])
    d = _tarot.feature_distance(gc, gt, whitened=True, ridge=1e-12)
    d_mapped = _tarot.feature_distance(gc @ a, gt @ a, whitened=True, ridge=1e-12)
    flips = np.array([1.0, -1.0, -1.0, 1.0, -1.0])
    d_flipped = _tarot.feature_distance(gc * flips, gt * flips, whitened=True, ridge=1e-12)
    assert np.allclose(d, d_mapped, atol=1e-7) and np.allclose(d, d_flipped, atol=1e-9)
    assert not np.allclose(_tarot.feature_distance(gc, gt, False), _tarot.feature_distance(gc @ a, gt @ a, False),
                           atol=1e-3)
    assert d.min() >= 0 and d.max() <= 2 + 1e-12


def test_wfd_is_the_euclidean_distance_of_whitened_unit_vectors() -> None:
    rng = np.random.default_rng(2)
    gc, gt = rng.normal(size=(10, 4)), rng.normal(size=(7, 4))
    z = _tarot.unit_rows(_tarot.whiten(np.vstack([gc, gt])))
    expect = np.linalg.norm(z[:10, None] - z[None, 10:], axis=2)
    assert np.allclose(_tarot.feature_distance(gc, gt, True), expect, atol=1e-12)


# --- the OT potentials' sign -----------------------------------------------------------------


def _two_mode_toy(seed: int = 0):
    """Target 60 % at A, 40 % at B; candidates: many near A, few near B, some far off."""
    rng = np.random.default_rng(seed)
    tgt = np.vstack([rng.normal([0, 0], 0.3, (60, 2)), rng.normal([5, 0], 0.3, (40, 2))])
    cand = np.vstack([rng.normal([0, 0], 0.3, (80, 2)), rng.normal([5, 0], 0.3, (10, 2)),
                      rng.normal([0, 8], 0.3, (10, 2))])
    cost = np.linalg.norm(cand[:, None] - tgt[None], axis=2)
    return cost / cost.max()


def test_low_potential_means_adding_mass_lowers_ot() -> None:
    """The notes' suspected bug: TAROT keeps the largest potentials. Moving 5 % of the mass onto
    the lowest-f candidates (near the under-served mode) lowers the OT cost; onto the highest-f
    ones raises it. So the partial layer takes the lowest f."""
    cost = _two_mode_toy()
    f, _ = _tarot.potentials(cost, 0.01)
    near_b, far = slice(80, 90), slice(90, 100)
    assert f[near_b].mean() < 0 < f[far].mean()
    lowest, highest = np.argsort(f)[:10], np.argsort(f)[-10:]
    assert set(lowest) <= set(range(80, 90)) and set(highest) <= set(range(90, 100))

    def cost_at(a: np.ndarray) -> float:
        return float(ot.sinkhorn2(a, np.full(100, 0.01), cost, 0.01, method="sinkhorn_log", numItermax=5000))

    a = np.full(100, 0.01)
    for idx, sign in ((lowest, -1), (highest, +1)):
        moved = a * 0.95
        moved[idx] += 0.05 / len(idx)
        assert sign * (cost_at(moved) - cost_at(a)) > 0.005


def test_potential_differences_match_the_ot_derivative() -> None:
    """f_i - f_j = d OT_eps / d(mass moved from j to i), by finite differences on the
    entropic objective (which includes the entropy term the potentials are the gradient of)."""
    rng = np.random.default_rng(3)
    cost = rng.random((6, 5))
    eps = 0.1
    a, b = np.full(6, 1 / 6), np.full(5, 1 / 5)

    def objective(a: np.ndarray) -> float:
        t = ot.sinkhorn(a, b, cost, eps, method="sinkhorn_log", numItermax=20000, stopThr=1e-14)
        t = np.where(t > 0, t, 1e-300)
        return float((t * cost).sum() + eps * (t * (np.log(t) - 1)).sum())

    f, _ = _tarot.potentials(cost, eps, iters=20000)
    h = 1e-6
    for i, j in ((0, 3), (2, 5), (4, 1)):
        moved = a.copy()
        moved[i] += h
        moved[j] -= h
        assert (objective(moved) - objective(a)) / h == pytest.approx(f[i] - f[j], abs=1e-4)


# --- fixed-size layering ---------------------------------------------------------------------


def test_layers_take_every_targets_rth_nearest_candidate_in_turn() -> None:
    """Targets at 0 and 10; candidates at 0.1, 0.2, 0.3 and 10.1, 10.2: layer 1 = the two
    nearest (one per mode), layer 2 = the next two, then the last."""
    cand = np.array([0.1, 0.2, 0.3, 10.1, 10.2])
    cost = np.abs(cand[:, None] - np.array([0.0, 10.0])[None]) / 10.2
    order = _tarot.fixed_size_order(cost, 0.01, order_count=5)
    assert set(order[:2]) == {0, 3} and set(order[2:4]) == {1, 4} and order[4] == 2
    # the top 2 cover both modes; mean similarity would take the two nearest to one mode's mean
    assert sorted(order[:2]) == [0, 3]


def test_partial_layer_keeps_the_candidate_of_the_under_served_mode_by_lowest_potential() -> None:
    """Targets: three at A (near 0), one at B (10); candidates: one near each. Layer 1 holds
    both; with room for one, the A candidate gives OT 2.5 (B served from A) against 7.5. On
    the full layer (1/2 each against 3/4, 1/4) A is under-served: its potential is the lower,
    so lowest-f keeps it, and the reference code's largest-f would keep the B candidate."""
    cand = np.array([0.05, 10.05])
    cost = np.abs(cand[:, None] - np.array([-0.1, 0.0, 0.1, 10.0])[None]) / 10.15
    order = _tarot.fixed_size_order(cost, 0.01, order_count=2)
    assert list(order) == [0, 1]
    assert _tarot.ot_distance(cost[[0]], 0.01) < _tarot.ot_distance(cost[[1]], 0.01)
    f, _ = _tarot.potentials(cost, 0.01)
    assert f[0] < f[1]


def test_fixed_size_scores_rank_the_whole_pool_and_top_k_is_the_selection() -> None:
    rng = np.random.default_rng(4)
    gc, gt = rng.normal(size=(60, 4)), rng.normal(size=(12, 4))
    scores, info = tarot_scores(gc, gt, TarotParams(order_fraction=0.5), seed=0)
    assert info == {} and sorted(scores) == list(range(1, 61))
    ids = [f"e{i:03d}" for i in range(60)]
    kept = subset_select(ids, scores.tolist(), SubsetParams("top", 0.1), 0)
    dist = _tarot.feature_distance(gc, gt, True)
    order = _tarot.fixed_size_order(dist, _tarot.epsilon(dist, 0.05), 30, 1000)
    assert kept == sorted(ids[i] for i in order[:6])


# --- OTM and the LESS-style baseline ---------------------------------------------------------


def _mode_gradients(seed: int = 0):
    """Gradient-like features: targets 85 % mode A, 15 % mode B (an orthogonal direction with
    a larger norm share of the pool); candidates 150 in A, 50 in B, 50 elsewhere."""
    rng = np.random.default_rng(seed)
    d = 8
    a_dir, b_dir, c_dir = np.eye(d)[0] * 3, np.eye(d)[1] * 3, np.eye(d)[2] * 3

    def around(center: np.ndarray, n: int) -> np.ndarray:
        return center + rng.normal(size=(n, d))

    gt = np.vstack([around(a_dir, 34), around(b_dir, 6)])
    gc = np.vstack([around(a_dir, 150), around(b_dir, 50), around(c_dir, 50)])
    return gc, gt


def test_less_greedy_collapses_onto_the_dominant_mode_and_tarot_keeps_the_mixture() -> None:
    """Target 85/15 % over modes A/B, budget 20: LESS takes A only. TAROT's layer 1 (37
    candidates, 6 of them B's) is roughly balanced, so the one-shot potential ranking
    (Algorithm 1) drops B's slight surplus first and with it the whole mode; backward
    elimination (elimination_step 0.1) keeps the target's 17/3 split."""
    gc, gt = _mode_gradients()
    k = 20
    less = np.argsort(-_tarot.less_scores(gc, gt), kind="stable")[:k]
    assert (less < 150).all()  # every pick from mode A: mode B (15 % of the target) is lost

    def picks(**kw: float) -> np.ndarray:
        scores, _ = tarot_scores(gc, gt, TarotParams(order_fraction=0.5, **kw), seed=0)
        return np.argsort(-scores)[:k]

    elim = picks(elimination_step=0.1)
    assert ((elim >= 150) & (elim < 200)).sum() == 3 and (elim < 200).all()
    assert ((picks() >= 150) & (picks() < 200)).sum() == 0  # the one-shot ranking's failure


def test_otm_covers_both_modes_and_reports_its_ratio() -> None:
    gc, gt = _mode_gradients(1)
    scores, info = tarot_scores(gc, gt, TarotParams(mode="otm", folds=5), seed=0)
    sel = np.flatnonzero(scores > 0)
    assert set(np.unique(scores)) <= {0.0, 1.0}
    assert info["ratio"] == pytest.approx(len(sel) / len(gc)) and 0 < info["ratio"] < 1
    assert len(info["k_per_fold"]) == 5 and all(k >= 1 for k in info["k_per_fold"])
    assert ((sel >= 150) & (sel < 200)).any() and (sel < 150).any()
    assert (sel < 200).mean() > 0.9
    again, _ = tarot_scores(gc, gt, TarotParams(mode="otm", folds=5), seed=0)
    assert np.array_equal(scores, again)  # seeded folds


def test_selected_subset_kind_takes_all_positive_scores_up_to_the_cap() -> None:
    ids = [f"e{i}" for i in range(10)]
    s = [1.0, 0, 0, 1.0, 0, 1.0, 0, 0, 0, 1.0]
    assert subset_select(ids, s, SubsetParams("selected", 1.0), 0) == ["e0", "e3", "e5", "e9"]
    assert subset_select(ids, s, SubsetParams("selected", 0.2), 0) == ["e0", "e3"]  # cap 2, ties by id
    with pytest.raises(ValueError, match="no example has a positive score"):
        subset_select(ids, [0.0] * 10, SubsetParams("selected", 1.0), 0)


# --- features --------------------------------------------------------------------------------


def test_head_gradients_equal_autograd_per_example_gradients() -> None:
    import torch

    rng = np.random.default_rng(5)
    n, d, k = 5, 4, 3
    h, y = rng.normal(size=(n, d)), rng.integers(0, k, size=n)
    w, b = rng.normal(size=(d, k)), rng.normal(size=k)
    g = _tarot.head_gradients(h, y, w, b)
    assert g.shape == (n, k * (d + 1))
    for i in range(n):
        wt = torch.tensor(w, requires_grad=True)
        bt = torch.tensor(b, requires_grad=True)
        loss = torch.nn.functional.cross_entropy(torch.tensor(h[i:i + 1]) @ wt + bt, torch.tensor(y[i:i + 1]))
        gw, gb = torch.autograd.grad(loss, (wt, bt))
        expect = torch.cat([gw.T, gb[:, None]], dim=1).reshape(-1).numpy()  # (k, d + 1) row-major
        assert np.allclose(g[i], expect, atol=1e-12)


def test_rows_without_labels_are_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match="'joint_label'"):
        _tarot.row_labels([{"example_id": "a", "label": 1}], "joint_label", "pool")


# --- the pool --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixture(glue_fixture):
    from reclaim.data.example_ids import assign_ids
    from reclaim.data.glue import read_split

    p = glue_mixture.GlueMixtureParams(candidates={"sst2/train": 40, "cola/train": 30, "mrpc/train": 20},
                                       mixture={"sst2/dev": 0.6, "cola/dev": 0.3, "mrpc/dev": 0.1},
                                       target_size=10, heldout_size=20)
    rows = {}
    for task, split in glue_mixture.BUILDER.glue_sources(p):
        r = read_split(task, split, str(glue_fixture), None)
        assign_ids(r, [task, split], ["text_a", "text_b", "label"])
        rows[f"{task}/{split}"] = r
    return p, rows, glue_mixture.BUILDER.build(p, rows, {})


def test_mixture_pool_composition_mixture_and_joint_labels(mixture) -> None:
    p, rows, built = mixture
    pool, target, heldout = built["pool"], built["target"], built["heldout"]
    assert [sum(r["task"] == t for r in pool) for t in ("sst2", "cola", "mrpc")] == [40, 30, 20]
    assert [sum(r["task"] == t for r in target) for t in ("sst2", "cola", "mrpc")] == [6, 3, 1]
    assert [sum(r["task"] == t for r in heldout) for t in ("sst2", "cola", "mrpc")] == [12, 6, 2]
    ids = [{r["example_id"] for r in x} for x in (pool, target, heldout)]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and not (ids[0] & ids[2])
    classes = glue_mixture.joint_classes(p)
    assert classes == [("cola", 0), ("cola", 1), ("mrpc", 0), ("mrpc", 1), ("sst2", 0), ("sst2", 1)]
    assert all(classes[r["joint_label"]] == (r["task"], r["label"]) for r in pool + target + heldout)
    assert glue_mixture.BUILDER.build(p, rows, {}) == built  # seeded, canonical order


@pytest.mark.parametrize("raw, msg", [
    ({"candidates": {}, "mixture": {"sst2/dev": 1.0}}, "candidates"),
    ({"candidates": {"sst2/train": 0}, "mixture": {"sst2/dev": 1.0}}, "candidates.sst2/train"),
    ({"candidates": {"sst2/train": 5}, "mixture": {"cola/dev": 1.0}}, "has no candidates"),
    ({"candidates": {"stsb/train": 5}, "mixture": {"stsb/dev": 1.0}}, "regression"),
    ({"candidates": {"sst2/train": 5}, "mixture": {"sst2/dev": -1}}, "mixture.sst2/dev"),
    ({"candidates": {"sst2/train": 5}, "mixture": {"sst2/dev": 1.0}, "target_size": 0}, "target_size"),
])
def test_bad_pool_params_are_refused(raw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        glue_mixture.GlueMixtureParams(**raw)


# --- the evaluator ---------------------------------------------------------------------------


def test_mixture_metrics_reward_covering_every_mode() -> None:
    rng = np.random.default_rng(6)
    centers = rng.normal(size=(4, 6)) * 4  # joint classes 0, 1 (task a), 2, 3 (task b)

    def draw(ys: list[int]) -> tuple[np.ndarray, np.ndarray]:
        y = np.array(ys)
        return centers[y] + rng.normal(size=(len(y), 6)), y

    xh, yh = draw([0, 1] * 30 + [2, 3] * 20)
    modes_h = ["a"] * 60 + ["b"] * 40
    xt, yt = draw([0, 1] * 6 + [2, 3] * 4)
    both_x, both_y = draw([0, 1, 2, 3] * 5)
    one_x, one_y = draw([0, 1] * 10)
    p = TargetMixtureParams()
    both = mixture_metrics(both_x, both_y, ["a", "a", "b", "b"] * 5, xt, yt, xh, yh, modes_h, p)
    one = mixture_metrics(one_x, one_y, ["a"] * 20, xt, yt, xh, yh, modes_h, p)
    assert both["accuracy"] > 0.9 and one["accuracy"] <= 0.6 + 1e-12 and one["accuracy/b"] == 0.0
    assert one["coverage_min"] == 0.0 and both["coverage_min"] == pytest.approx(0.5 / 0.6)
    assert both["share/b"] == 0.5 and one["target_share/b"] == 0.4
    assert both["ot_heldout"] < one["ot_heldout"]


# --- config --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cfg():
    return load_yaml(REPO_ROOT / "params.yaml")


@pytest.mark.parametrize("raw, msg", [
    ({"mode": "greedy"}, "mode must be one of fixed, otm"),
    ({"whiten": "yes"}, "whiten must be true or false"),
    ({"reg": 0}, "reg must be > 0"),
    ({"folds": 1}, "folds must be an integer >= 2"),
    ({"order_fraction": 1.5}, "order_fraction"),
    ({"elimination_step": 0}, "elimination_step"),
    ({"warmup_epochs": -1}, "warmup_epochs"),
    ({"label_key": ""}, "label_key"),
])
def test_bad_tarot_params_are_refused(raw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        select.get("tarot").make_params(raw)


def test_unknown_param_is_refused_before_any_job(cfg) -> None:
    bad = copy.deepcopy(cfg)
    bad["selectors"]["tarot"]["params"]["sinkhorn_eps"] = 0.1
    with pytest.raises(ConfigError, match="sinkhorn_eps"):
        validate(bad, "params.yaml")


@pytest.mark.parametrize("verdict, msg", [
    ({"greedy": "nope"}, "verdict.greedy"),
    ({"unknown_role": "x"}, "unknown key 'unknown_role'"),
    ({"z": -1}, "verdict.z"),
])
def test_claim_config_refusals(cfg, verdict: dict, msg: str) -> None:
    bad = copy.deepcopy(cfg)
    bad["claims"]["tarot"]["verdict"].update(verdict)
    with pytest.raises(ConfigError, match=msg):
        validate(bad, "params.yaml")


def test_plan_one_pool_per_claim_seeded_scores_and_model_in_the_evaluation_ids(cfg) -> None:
    c = validate(copy.deepcopy(cfg), "params.yaml")
    p = reclaim_plan.build(c)
    runs = p.runs["tarot"]
    seeds = c["claims"]["tarot"]["scales"]["smoke"]["seeds"]
    assert len(runs) == 5 * len(seeds)
    assert len({j.key for r in runs for j in r.jobs if j.rule == "build_pool"}) == 1
    scores = {j.key for r in runs for j in r.jobs if j.rule == "score"}
    assert len(scores) == 5 * len(seeds)  # every selector is seeded (warm-up head, folds)
    ev = [r.terminal for r in runs]
    assert all(j.rule == "evaluate" and j.spec["model"]["name"] == "minilm" and j.spec["task"] == "sst2"
               for j in ev)
    assert all(set(j.inputs) == {"subset", "pool", "target", "heldout"} for j in ev)
    otm = next(r for r in runs if r.arm == "tarot_otm")
    sub = next(j for j in otm.jobs if j.rule == "subset")
    assert sub.spec["subset"]["kind"] == "selected"


# --- the claim's aggregation ---------------------------------------------------------------


def _fake_runs(claim: dict, acc: dict[str, float]) -> list[dict]:
    runs = []
    for arm in claim["arms"]:
        for seed in (0, 1, 2):
            m = {"accuracy": acc[arm] + 0.01 * seed, "ot_heldout": 1.2, "coverage_min": 0.5, "ratio": 0.05,
                 "share/sst2": 0.6, "share/cola": 0.3, "target_share/sst2": 0.6, "target_share/cola": 0.4,
                 "n_selected": 125, "n_pool": 2500, "n_heldout": 600, "protocol": {"classifier": "lr"}}
            runs.append({"arm": arm, "seed": seed, "model": None, "task": None, "path": f"{arm}/{seed}",
                         "result": {"metrics": m, "device_name": "cpu"}})
    return runs


def test_aggregate_table_plot_and_computed_verdicts(cfg, tmp_path) -> None:
    claim = cfg["claims"]["tarot"]
    acc = {"random": 0.55, "less_greedy": 0.40, "tarot_unwhitened": 0.571, "tarot": 0.57, "tarot_otm": 0.20}
    out = tarot_claim.AGGREGATOR.aggregate_runs("tarot", claim, "smoke", _fake_runs(claim, acc),
                                                tmp_path / "t.csv", tmp_path / "t.json", tmp_path / "t.png")
    v = out["verdicts"]["selection"]
    assert v["b_ot_beats_greedy"]["verdict"] == "holds"
    assert v["b_ot_beats_greedy"]["estimate"] == pytest.approx(0.17)
    assert v["a_whitening_helps"]["verdict"] == "inconclusive"   # 0.001 within the noise
    assert v["d_otm_beats_greedy"]["verdict"] == "does not hold"
    se = v["c_beats_random"]["se"]
    assert se == pytest.approx(math.sqrt((0.57 * 0.43 + 0.55 * 0.45) / 600), rel=0.02)  # paired: no seed spread
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert {r["arm"] for r in rows} == set(claim["arms"])
    assert {"accuracy", "ot_heldout", "coverage_min", "ratio", "share/sst2"} <= {r["metric"] for r in rows}
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "t.json").read_text())["metrics"]["tarot/accuracy"] == pytest.approx(0.58)
    head = tarot_claim.AGGREGATOR.headline(out, claim)
    assert head["rows"][0]["reproduced"] == pytest.approx(17.0)


def test_one_seed_gives_inconclusive_not_a_guess() -> None:
    est, se = tarot_claim.paired_difference([{"seed": 0, "accuracy": 0.6, "n_heldout": 10}],
                                            [{"seed": 0, "accuracy": 0.5, "n_heldout": 10}], "accuracy")
    assert est == pytest.approx(0.1) and math.isnan(se)


# --- the claim through Snakemake (tiny model) ------------------------------------------------


@pytest.fixture(scope="module")
def tarot_work(tmp_path_factory, tiny_models, glue_fixture):
    from reclaim.testing import copy_workflow, tiny_claim_params, workflow_env

    work = copy_workflow(tmp_path_factory.mktemp("wf_tarot"))
    tiny = tiny_claim_params(tiny_models, tasks=["sst2"], seeds=[0, 1])
    (work / "test_params.yaml").write_text(yaml.safe_dump(tiny))
    return work, workflow_env(work, glue_fixture)


def test_the_claim_plans_with_tiny_fixtures(tarot_work) -> None:
    from reclaim.testing import planned_jobs, run_snakemake

    work, env = tarot_work
    merged = merge(load_yaml(work / "params.yaml"), load_yaml(work / "test_params.yaml"))
    validate(merged, "test")
    proc = run_snakemake(work, "-n", "results/tarot.csv", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned_jobs(proc.stdout)
    count = {r: sum(1 for x, _ in jobs if x == r) for r in {x for x, _ in jobs}}
    assert count["build_pool"] == 1 and count["claim_table"] == 1
    assert count["score"] == count["subset"] == count["evaluate"] == 10  # 5 arms x 2 seeds


@pytest.mark.slow
def test_the_claim_runs_end_to_end_and_a_second_run_does_nothing(all_claims_run) -> None:
    from reclaim.testing import run_snakemake

    # conftest's session run (rule all, every claim, TAROT on seeds 0 and 1) built the claim
    work, env, params = all_claims_run
    assert params["claims"]["tarot"]["scales"]["smoke"]["seeds"] == [0, 1]
    proc = run_snakemake(work, "results/tarot.csv", "--cores", "2", env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = list(csv.DictReader(open(work / "results/tarot.csv")))
    assert {r["arm"] for r in rows} == {"random", "less_greedy", "tarot_unwhitened", "tarot", "tarot_otm"}
    out = json.loads((work / "results/tarot.json").read_text())
    v = out["verdicts"]["selection"]
    assert set(v) == {"a_whitening_helps", "b_ot_beats_greedy", "c_beats_random", "d_otm_beats_greedy"}
    assert all(x["verdict"] in ("holds", "does not hold", "inconclusive") for x in v.values())
    assert 0 < out["metrics"]["tarot_otm/ratio"] <= 1
    assert out["metrics"]["tarot/ratio"] == pytest.approx(round(0.05 * 120) / 120)
    assert (work / "results/tarot_loss.png").read_bytes()[:4] == b"\x89PNG"
    again = run_snakemake(work, "-n", "results/tarot.csv", env=env)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
