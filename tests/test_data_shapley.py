"""Data Shapley / KNN-Shapley / LOO: the valuation math against brute-force Shapley values,
the paper's truncation and convergence rules, the flipped-label pool, the evaluator's
detection and removal curves, config refusals, the claim's aggregation, and the claim
planned (and, slow, run) through Snakemake on a tiny model."""

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
from reclaim.claims import data_shapley
from reclaim.config import REPO_ROOT, ConfigError, load_yaml, merge, validate
from reclaim.data.pools import flipped_labels
from reclaim.evaluate import valuation_stats as vs
from reclaim.select import _valuation as V

# --- KNN-Shapley -------------------------------------------------------------------------------


@pytest.mark.parametrize("k,metric", [(1, "euclidean"), (3, "euclidean"), (5, "cosine"), (10, "euclidean")])
def test_knn_shapley_equals_brute_force_shapley_of_the_knn_utility(k: int, metric: str) -> None:
    rng = np.random.default_rng(k)
    n, t = 7, 4
    x, y = rng.normal(size=(n, 3)), rng.integers(0, 3, n)
    x_t, y_t = rng.normal(size=(t, 3)), rng.integers(0, 3, t)
    x[5] = x[2]                                       # a tie in distance
    d = V.distances(x, x_t, metric)
    fast = V.knn_shapley(d, y, y_t, k)
    brute = np.mean([V.exact_shapley(lambda s, j=j: V.knn_utility(d[j], y, int(y_t[j]), k, s), n)
                     for j in range(t)], axis=0)
    assert np.allclose(fast, brute, atol=1e-12, rtol=0)
    # efficiency: values sum to v(D) - v(empty)
    full = np.mean([V.knn_utility(d[j], y, int(y_t[j]), k, range(n)) for j in range(t)])
    assert fast.sum() == pytest.approx(full, abs=1e-12)


def test_knn_shapley_ranks_a_mislabelled_neighbour_lowest() -> None:
    x = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [0.15]])
    y = np.array([0, 0, 0, 1, 1, 1])                  # the last point sits among the zeros: flipped
    x_t, y_t = np.array([[0.05], [0.12], [5.05]]), np.array([0, 0, 1])
    v = V.knn_shapley(V.distances(x, x_t, "euclidean"), y, y_t, 3)
    assert v.argmin() == 5


# --- TMC-Shapley, LOO, the utility ---------------------------------------------------------------


def _tiny_utility(seed: int = 0, n: int = 6) -> V.Utility:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] > 0).astype(np.int64)
    y[0] = 1 - y[0]                                    # one flipped label
    y[1], y[2] = 0, 1                                  # both classes present
    x_t = rng.normal(size=(80, 3))
    return V.Utility(x, y, x_t, (x_t[:, 0] > 0).astype(np.int64), V.LearnerParams())


class _Memo:
    """The utility cached by subset (TMC and the brute force then share 2^n fits)."""

    def __init__(self, u: V.Utility) -> None:
        self.u, self.cache = u, {}

    def __call__(self, idx) -> float:
        key = frozenset(int(i) for i in idx)
        if key not in self.cache:
            self.cache[key] = self.u(sorted(key))
        return self.cache[key]


def test_tmc_without_truncation_is_within_monte_carlo_error_of_exact_shapley() -> None:
    u = _tiny_utility()
    m = _Memo(u)
    n = len(u.y)
    exact = V.exact_shapley(lambda s: m(s), n)
    v_full = m(range(n))
    vals, info = V.tmc_shapley(m, n, u.empty, v_full, np.random.default_rng(3), tolerance=-1.0,
                               max_iterations=3000, convergence_err=1e-12)
    assert info["iterations"] == 3000 and info["mean_prefix_fraction"] == 1.0
    assert np.all(np.abs(vals - exact) <= 4 * info["se"] + 1e-12), (vals, exact, info["se"])
    assert np.abs(vals - exact).max() > 0              # it is an estimate, not the enumeration
    assert vals.sum() == pytest.approx(v_full - u.empty, abs=1e-12)


def test_tmc_with_the_papers_truncation_keeps_efficiency_within_tolerance_and_is_seeded() -> None:
    u = _tiny_utility(1)
    m = _Memo(u)
    n = len(u.y)
    v_full = m(range(n))
    a, info = V.tmc_shapley(m, n, u.empty, v_full, np.random.default_rng(7), 0.01, 200, 1e-12)
    b, _ = V.tmc_shapley(m, n, u.empty, v_full, np.random.default_rng(7), 0.01, 200, 1e-12)
    c, _ = V.tmc_shapley(m, n, u.empty, v_full, np.random.default_rng(8), 0.01, 200, 1e-12)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # every permutation's marginals sum to v(S_stop) - v(empty), |v(S_stop) - v(D)| <= tol * v(D)
    assert abs(a.sum() - (v_full - u.empty)) <= 0.01 * v_full + 1e-12


def test_truncation_stops_after_more_than_patience_prefixes_within_tolerance() -> None:
    calls = []

    def u(idx) -> float:
        calls.append(len(idx))
        return min(len(idx), 3) / 3                     # reaches v(D) = 1 at the 3rd point

    perm = np.arange(20)[::-1]
    marg, scored = V.truncated_marginals(u, perm, 0.0, 1.0, tolerance=0.01, patience=5)
    assert calls == list(range(1, 9)) and scored == 8  # prefixes 3..8 are within: the 6th stops it
    assert np.allclose(marg[perm[:3]], 1 / 3) and np.all(marg[perm[3:]] == 0)
    # a streak that breaks restarts the count
    vals = iter([1, 1, 1, 1, 1, 0.5, 1, 1, 1, 1, 1, 1, 1, 1])
    _, scored = V.truncated_marginals(lambda idx: next(vals), np.arange(14), 0.0, 1.0, 0.01, 5)
    assert scored == 12


def test_convergence_rule_is_the_mean_relative_change_of_running_means() -> None:
    running = np.array([[1.0, 2.0], [1.1, 2.0], [1.0, 2.0]])
    assert V.convergence_error(running) == pytest.approx(0.05)     # mean over points of 0.1 and 0
    const = lambda idx: len(idx) / 4  # noqa: E731 - additive: every permutation gives the same marginals
    vals, info = V.tmc_shapley(const, 4, 0.0, 1.0, np.random.default_rng(0), -1.0, 50, 0.1, window=5)
    assert info["converged"] and info["iterations"] == 5
    assert vals.sum() == pytest.approx(1.0)


def test_utility_scores_prefixes_missing_a_class_as_the_empty_set() -> None:
    u = _tiny_utility()
    assert u.empty == pytest.approx(np.bincount(u.y_test).max() / len(u.y_test))
    only_zeros = np.flatnonzero(u.y == 0)
    fits = u.calls
    assert u(only_zeros) == u.empty and u([]) == u.empty and u.calls == fits   # no refit
    assert u(range(len(u.y))) != u.empty and u.calls == fits + 1


def test_leave_one_out_on_a_constructed_case() -> None:
    # the only class-1 point: without it the learner is not fit (empty-set score)
    x = np.array([[-2.0], [-1.5], [-1.0], [2.0]])
    y = np.array([0, 0, 0, 1])
    x_t, y_t = np.array([[-1.8], [-1.2], [1.5], [2.5]]), np.array([0, 0, 1, 1])
    u = V.Utility(x, y, x_t, y_t, V.LearnerParams())
    loo, v_full = V.leave_one_out(u, 4)
    assert v_full == 1.0 and loo[3] == pytest.approx(1.0 - 0.5)
    assert np.all(loo[:3] == 0)                         # any two zeros still separate the classes
    # a set function: LOO is v(D) - v(D without i)
    loo2, _ = V.leave_one_out(lambda s: float(0 in list(s)) + 0.1 * len(s), 3)
    assert np.allclose(loo2, [1.1, 0.1, 0.1])


def test_full_score_is_the_mean_over_bootstrap_test_resamples() -> None:
    u = _tiny_utility()
    mean_a, sd_a = V.full_score(u, np.random.default_rng(0), 100)
    mean_b, _ = V.full_score(u, np.random.default_rng(0), 100)
    acc = u(range(len(u.y)))
    assert mean_a == mean_b and abs(mean_a - acc) < 3 * sd_a / math.sqrt(100) + 1e-9 and sd_a > 0


# --- the flipped-label pool ---------------------------------------------------------------------


def _rows(split: str, n: int) -> list[dict]:
    return [{"example_id": f"{split}{i:04x}", "idx": i, "text_a": f"t{i}", "text_b": None, "label": i % 2}
            for i in range(n)]


def test_pool_flips_exactly_the_fraction_seeded_and_splits_dev() -> None:
    p = flipped_labels.FlippedLabelsParams(pool_size=50, flip_fraction=0.1, target_size=30, seed=0)
    train, dev = _rows("a", 200), _rows("b", 80)
    a = flipped_labels.build(p, train, dev)
    pool = a["pool"]
    assert len(pool) == 50 and sum(r["flipped"] for r in pool) == 5
    assert all((r["label"] != r["clean_label"]) == r["flipped"] for r in pool)
    assert all(r["clean_label"] == int(r["example_id"][1:], 16) % 2 for r in pool)   # clean = source label
    assert len(a["target"]) == 30 and len(a["heldout"]) == 50
    assert not {r["example_id"] for r in a["target"]} & {r["example_id"] for r in a["heldout"]}
    # seeded, independent of the input row order; another seed draws another pool
    b = flipped_labels.build(p, train[::-1], dev[::-1])
    assert a == b
    c = flipped_labels.build(flipped_labels.FlippedLabelsParams(pool_size=50, target_size=30, seed=1), train, dev)
    assert [r["example_id"] for r in c["pool"]] != [r["example_id"] for r in pool]
    three = [{**r, "label": r["idx"] % 3} for r in train]  # k = 3: a different class, never the same
    d = flipped_labels.build(flipped_labels.FlippedLabelsParams(task="mnli", pool_size=60, target_size=30),
                             three, dev)
    assert all(0 <= r["label"] < 3 for r in d["pool"]) and sum(r["flipped"] for r in d["pool"]) == 6
    assert len({r["label"] for r in d["pool"] if r["flipped"]}) > 1


@pytest.mark.parametrize("raw,msg", [
    ({"flip_fraction": 1.5}, "flip_fraction must be in"), ({"pool_size": 1}, "pool_size must be"),
    ({"task": "stsb"}, "regression"), ({"task": "nope"}, "unknown task"), ({"heldout_size": 0}, "heldout_size")])
def test_pool_params_are_refused(raw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        flipped_labels.FlippedLabelsParams(**raw)


def test_pool_too_large_for_the_split_is_refused() -> None:
    with pytest.raises(ValueError, match="pool_size 50 exceeds"):
        flipped_labels.build(flipped_labels.FlippedLabelsParams(pool_size=50, target_size=5), _rows("a", 20),
                             _rows("b", 20))


# --- the evaluator ------------------------------------------------------------------------------


def test_recall_curve_on_constructed_rankings() -> None:
    flipped = np.array([True, True, False, False, False, False, False, False, False, False])
    perfect = np.arange(10.0)                           # the flipped points have the lowest values
    r = vs.recall_curve(perfect, flipped)
    assert np.allclose(r, [0, 0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    assert vs.curve_area(r) == pytest.approx(1 - 0.2 / 2)
    assert vs.auroc(perfect, flipped) == 1.0 and vs.auroc(-perfect, flipped) == 0.0
    worst = vs.recall_curve(-perfect, flipped)
    assert worst[8] == 0 and worst[10] == 1
    ties = vs.recall_curve(np.zeros(10), flipped)       # all tied: expected recall of a random order
    assert np.allclose(ties, np.arange(11) / 10) and vs.curve_area(ties) == pytest.approx(0.5)
    assert vs.auroc(np.zeros(10), flipped) == 0.5
    # a tie group of 4 holding one flip, after one flipped point
    part = vs.recall_curve(np.array([0, 1, 1, 1, 1, 2, 3, 4, 5, 6.0]), np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0], bool))
    assert np.allclose(part[:6], [0, 0.5, 0.625, 0.75, 0.875, 1.0])


def test_evaluator_detection_and_removal_curves(tmp_path, monkeypatch) -> None:
    from reclaim.io import write_jsonl
    from reclaim.select._base import write_scores

    rng = np.random.default_rng(0)
    n, nh = 60, 80
    clean = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 4)) + 2.0 * clean[:, None]
    flipped = np.zeros(n, bool)
    flipped[:6] = True
    y = np.where(flipped, 1 - clean, clean)
    ch = rng.integers(0, 2, nh)
    xh = rng.normal(size=(nh, 4)) + 2.0 * ch[:, None]
    ids = [f"{i:04x}" for i in range(n)]
    write_jsonl(tmp_path / "pool.jsonl", [{"example_id": e, "label": int(y[i]), "clean_label": int(clean[i]),
                                           "flipped": bool(flipped[i])} for i, e in enumerate(ids)])
    write_jsonl(tmp_path / "heldout.jsonl", [{"example_id": f"h{i}", "label": int(ch[i])} for i in range(nh)])
    values = np.where(flipped, -1.0, 0.0) + 0.01 * np.arange(n)
    write_scores(tmp_path / "scores.tsv", ids, values.tolist(), {})
    monkeypatch.setattr(V, "features", lambda ctx, pool, other, p, desc: (x, xh))
    inputs = {k: str(tmp_path / f"{k}.{'tsv' if k == 'scores' else 'jsonl'}") for k in ("scores", "pool", "heldout")}
    m = vs.EVALUATOR.evaluate(inputs, vs.ValuationStatsParams(bootstrap=50), model=object())
    assert m["detection_at_10"] == 1.0 and m["auroc"] == 1.0 and m["n_flipped"] == 6
    assert m["detection_area"] == pytest.approx(1 - 0.1 / 2)
    assert 0 < m["detection_area_se"] < 0.05
    assert len(m["removal_high_curve"]) == 11 and m["removal_high_curve"][0] == m["removal_low_curve"][0]
    # removing the flipped (lowest) points first does not hurt; removing the clean ones first does
    assert m["removal_low_curve"][2] >= m["removal_high_curve"][0] - 0.05
    assert m["values"] == values.tolist() and m["n_pool"] == n
    bad = dict(inputs, scores=str(tmp_path / "other.tsv"))
    write_scores(bad["scores"], ids[:-1], values[:-1].tolist(), {})
    with pytest.raises(ValueError, match="example ids are not those of"):
        vs.EVALUATOR.evaluate(bad, vs.ValuationStatsParams(), model=object())


@pytest.mark.parametrize("raw,msg", [({"removal_fractions": [0.2, 0.1]}, "increasing"),
                                     ({"removal_fractions": [1.0]}, "fractions in"), ({"C": 0}, "C must be > 0")])
def test_evaluator_params_are_refused(raw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        vs.EVALUATOR.make_params(raw)


# --- config, plan ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cfg() -> dict:
    return validate(load_yaml(REPO_ROOT / "params.yaml"))


@pytest.mark.parametrize("name,raw,msg", [
    ("knn_shapley", {"k": 0}, "k must be"), ("knn_shapley", {"distance": "manhattan"}, "distance must be"),
    ("tmc_shapley", {"tolerance": 2}, "tolerance must be"), ("tmc_shapley", {"max_iterations": 0}, "max_iterations"),
    ("tmc_shapley", {"convergence_err": 0}, "convergence_err"), ("loo", {"C": -1}, "C must be"),
    ("loo", {"bogus": 1}, "unknown parameter 'bogus'")])
def test_selector_params_are_refused(name: str, raw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        select.get(name).make_params(raw)


def test_config_errors_name_the_key(cfg) -> None:
    bad = copy.deepcopy(cfg)
    bad["pools"]["shapley_sst2_300"]["params"]["flip_fraction"] = 2
    with pytest.raises(ConfigError, match=r"pools\.shapley_sst2_300\.params: flip_fraction"):
        validate(bad)
    bad = copy.deepcopy(cfg)
    bad["selectors"]["tmc_shapley"]["params"]["window"] = 0
    with pytest.raises(ConfigError, match=r"selectors\.tmc_shapley\.params: window"):
        validate(bad)
    bad = copy.deepcopy(cfg)
    del bad["claims"]["data_shapley"]["scales"]["small"]["score_with"]
    with pytest.raises(ConfigError, match=r"data_shapley.*score_with"):
        validate(bad)
    # a model-free selector, but the evaluator embeds with a model: still needs score_with
    bad = copy.deepcopy(cfg)
    bad["claims"]["data_shapley"]["arms"] = {"random": bad["claims"]["data_shapley"]["arms"]["random"]}
    bad["claims"]["data_shapley"]["verdict"] = {}
    del bad["claims"]["data_shapley"]["scales"]["paper"]["score_with"]
    with pytest.raises(ConfigError, match=r"arms\.random\[1\]\.evaluate\.evaluator: 'valuation_stats' embeds "
                                          r"with a model.*scales\.paper\.score_with"):
        validate(bad)
    agg, claim = data_shapley.AGGREGATOR, cfg["claims"]["data_shapley"]
    with pytest.raises(ValueError, match=r"verdict\.loo: arm 'nope'"):
        agg.check_config({**claim, "verdict": {"loo": "nope"}}, "x")
    with pytest.raises(ValueError, match="unknown key 'bogus'"):
        agg.check_config({**claim, "verdict": {"bogus": 1}}, "x")
    with pytest.raises(ValueError, match="agreement_min"):
        agg.check_config({**claim, "verdict": {"agreement_min": 3}}, "x")
    arms = {**claim["arms"], "loo": claim["arms"]["loo"][:1]}
    with pytest.raises(ValueError, match="arms.loo: must be a select step then an evaluate step"):
        agg.check_config({**claim, "arms": arms}, "x")


def test_plan_shares_deterministic_jobs_across_seeds_and_keeps_other_ids(cfg) -> None:
    p = reclaim_plan.build(cfg)
    runs = p.runs["data_shapley"]
    by_arm: dict[str, set] = {}
    for r in runs:
        by_arm.setdefault(r.arm, set()).add((r.jobs[1].key, r.terminal.key))
    assert len(by_arm["knn_shapley"]) == 1 and len(by_arm["loo"]) == 1       # one job for all seeds
    assert len(by_arm["tmc_shapley"]) == 3 and len(by_arm["random"]) == 5
    ev = next(r.terminal for r in runs if r.arm == "tmc_shapley")
    assert ev.spec["model"]["name"] == "minilm" and ev.spec["task"] == "sst2"
    assert set(ev.inputs) == {"scores", "pool", "heldout"} and ev.inputs["scores"].endswith("scores.tsv")
    # evaluators that do not embed keep ids without a model (DSIR's selection_stats)
    dsir = next(r.terminal for r in p.runs["dsir_glue"] if r.terminal.rule == "evaluate")
    assert "model" not in dsir.spec
    # the model is part of the evaluation's id
    other = merge(cfg, {"models": {"minilm2": cfg["models"]["minilm"]},
                        "claims": {"data_shapley": {"scales": {"smoke": {"score_with": {"model": "minilm2"}}}}}})
    ev2 = next(r.terminal for r in reclaim_plan.build(other).runs["data_shapley"] if r.arm == "tmc_shapley")
    assert ev2.id != ev.id


def test_a_model_evaluator_without_a_model_is_refused() -> None:
    up = {"files": {"scores": "s.tsv", "pool": "p.jsonl", "heldout": "h.jsonl"}, "ids": {"pool": "x"}}
    with pytest.raises(ValueError, match="'valuation_stats' embeds with a model"):
        reclaim_plan.evaluate_job({"evaluator": "valuation_stats"}, up, 0, None)


# --- aggregation ---------------------------------------------------------------------------------


def _metrics(rng: np.random.Generator, shift: float, rem: float, n: int = 60) -> dict:
    """An arm's evaluator output whose values rank the flipped points ``shift`` lower."""
    flipped = np.arange(n) < 6
    vals = rng.normal(size=n) - shift * flipped
    r = vs.recall_curve(vals, flipped)
    det = vs.curve_area(r)
    return {"detection_area": det, "detection_area_se": 0.02, "detection_at_10": float(r[6]),
            "detection_at_20": float(r[12]), "auroc": vs.auroc(vals, flipped),
            "removal_high_area": rem + 0.002 * rng.normal(),
            "removal_low_area": 0.8, "removal_area_se": 0.01, "recall_fractions": [0, 0.5, 1],
            "recall_curve": [0, float(r[n // 2]), 1], "removal_fractions": [0, 0.5], "removal_high_curve": [0.8, rem],
            "removal_low_curve": [0.8, 0.8], "n_pool": n, "n_flipped": 6, "n_heldout": 40, "values": vals.tolist(),
            "flipped": flipped.tolist(), "protocol": {"learner": "lr", "C": 1.0}}


def test_aggregate_table_plot_and_computed_verdicts(cfg, tmp_path) -> None:
    rng = np.random.default_rng(0)
    claim = cfg["claims"]["data_shapley"]
    knn = _metrics(rng, 4.0, 0.60)
    loo = _metrics(rng, 0.0, 0.78)
    runs = [{"arm": "knn_shapley", "seed": s, "result": {"metrics": knn}} for s in (0, 1, 2)]
    runs += [{"arm": "loo", "seed": s, "result": {"metrics": loo}} for s in (0, 1, 2)]
    runs += [{"arm": "tmc_shapley", "seed": s, "result": {"metrics": {**_metrics(rng, 4.0, 0.62),
                                                                          "values": knn["values"]}}} for s in (0, 1, 2)]
    runs += [{"arm": "random", "seed": s, "result": {"metrics": _metrics(rng, 0.0, 0.78)}} for s in range(5)]
    out = data_shapley.AGGREGATOR.aggregate_runs("data_shapley", claim, "smoke", runs, tmp_path / "t.csv",
                                                 tmp_path / "t.json", tmp_path / "t.png")
    v = out["verdicts"]["valuation"]
    assert v["a_tmc_detects_vs_loo"]["verdict"] == "holds" and v["a_knn_detects_vs_random"]["verdict"] == "holds"
    assert v["b_tmc_removal_vs_random"]["verdict"] == "holds"
    assert v["c_tmc_knn_agreement"]["estimate"] == pytest.approx(1.0) and v["c_tmc_knn_agreement"]["verdict"] == "holds"
    assert all(x["verdict"] in ("holds", "does not hold", "inconclusive") and x["rule"] for x in v.values())
    # a method no better than random: not "holds"
    bad = [dict(r, result={"metrics": loo}) if r["arm"] == "knn_shapley" else r for r in runs]
    out2 = data_shapley.AGGREGATOR.aggregate_runs("data_shapley", claim, "smoke", bad, tmp_path / "u.csv",
                                                  tmp_path / "u.json", tmp_path / "u.png")
    assert out2["verdicts"]["valuation"]["a_knn_detects_vs_random"]["verdict"] != "holds"
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert {r["arm"] for r in rows} >= {"tmc_shapley", "knn_shapley", "loo", "random"}
    assert any(r["metric"] == "spearman" for r in rows)
    assert json.loads((tmp_path / "t.json").read_text())["metrics"]["knn_minus_tmc/detection_area"] == pytest.approx(
        out["metrics"]["knn_shapley/detection_area"] - out["metrics"]["tmc_shapley/detection_area"])
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    head = data_shapley.AGGREGATOR.headline(out, claim)
    assert head["rows"][0]["reproduced"] == pytest.approx(out["metrics"]["tmc_shapley/detection_area"]
                                                          - out["metrics"]["random/detection_area"])


# --- the claim through Snakemake (tiny model) ----------------------------------------------------


@pytest.fixture(scope="module")
def shapley_work(tmp_path_factory, tiny_models, glue_fixture):
    from reclaim.testing import copy_workflow, tiny_claim_params, workflow_env

    work = copy_workflow(tmp_path_factory.mktemp("wf_shapley"))
    tiny = tiny_claim_params(tiny_models, tasks=["sst2"], seeds=[0])
    (work / "test_params.yaml").write_text(yaml.safe_dump(tiny))
    return work, workflow_env(work, glue_fixture)


def test_workflow_plans_the_claim_with_one_knn_and_loo_job(shapley_work) -> None:
    from reclaim.testing import planned_jobs, run_snakemake

    work, env = shapley_work
    proc = run_snakemake(work, "-n", "results/data_shapley.csv", env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = planned_jobs(proc.stdout)
    rules = [r for r, _ in jobs]
    scores = sorted(w["selector"] for r, w in jobs if r == "score")
    assert scores == ["knn_shapley", "loo", "random", "random", "tmc_shapley", "tmc_shapley"]
    assert rules.count("evaluate") == 6 and rules.count("build_pool") == 1 and "subset" not in rules
    assert rules.count("claim_table") == 1


@pytest.mark.slow
def test_claim_runs_end_to_end_and_a_second_run_does_nothing(all_claims_run) -> None:
    from reclaim.testing import run_snakemake

    work, env, _ = all_claims_run  # conftest's session run (rule all, every claim) built it
    proc = run_snakemake(work, "results/data_shapley.csv", "--cores", "2", env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads((work / "results/data_shapley.json").read_text())
    v = out["verdicts"]["valuation"]
    assert {"a_tmc_detects_vs_loo", "b_knn_removal_vs_random", "c_tmc_knn_agreement"} <= set(v)
    assert all(x["verdict"] in ("holds", "does not hold", "inconclusive") for x in v.values())
    assert (work / "results/data_shapley_loss.png").read_bytes()[:4] == b"\x89PNG"
    pool = [json.loads(line) for line in next((work / "data/pools/shapley_sst2_300").glob("*/pool.jsonl")).open()]
    assert len(pool) == 24 and sum(r["flipped"] for r in pool) == 6
    again = run_snakemake(work, "-n", "results/data_shapley.csv", env=env)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_paired_detection_difference_bootstraps_the_same_points() -> None:
    n = 40
    flipped = [i < 4 for i in range(n)]
    perfect = {"detection_area": 0.95, "values": list(range(n)), "flipped": flipped}
    tied = {"detection_area": 0.5, "values": [0.0] * n, "flipped": flipped}
    est, se = data_shapley.paired_detection_diff([perfect], [perfect], 100)
    assert est == 0 and se == 0
    est, se = data_shapley.paired_detection_diff([perfect], [tied], 200)
    assert est == pytest.approx(0.45) and 0 < se < 0.1
    assert data_shapley.paired_detection_diff([perfect], [tied], 200) == (est, se)   # fixed generator
