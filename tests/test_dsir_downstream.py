"""The DSIR claim's downstream half on synthetic runs whose answer is known: pairing of
downstream arms with selection arms, the accuracy verdict and the KL/accuracy correlation."""

from __future__ import annotations

import copy
import csv
import json

import pytest

from reclaim.claims import get
from reclaim.claims.dsir_glue import selection_pairs
from reclaim.config import REPO_ROOT, ConfigError, load_yaml, validate

PARAMS = load_yaml(REPO_ROOT / "params.yaml")
CLAIM = PARAMS["claims"]["dsir_glue"]


def _runs(kl: dict[str, list[float]], acc: dict[str, list[float]]) -> list[dict]:
    runs = []
    for arm, vals in kl.items():
        for seed, v in enumerate(vals):
            runs.append({"arm": arm, "seed": seed, "model": None, "task": None, "result": {"metrics": {
                "kl_reduction": v, "precision": 0.5, "recall": 0.1, "n_selected": 100, "n_pool": 1000,
                "base_rate": 0.2}, "device_name": "cpu"}})
    for arm, vals in acc.items():
        for seed, v in enumerate(vals):
            spec = {"method": {"name": "full_ft"}, **({"init": {"pretrain": f"p{seed}"}} if arm != "no_pretrain" else {})}
            runs.append({"arm": arm, "seed": seed, "model": "m", "task": "sst2", "result": {
                "metrics": {"accuracy": v}, "n_eval": 10**6, "n_train": 100, "spec": spec, "device_name": "cpu"}})
    return runs


def test_pairs_follow_identical_select_steps() -> None:
    assert selection_pairs(CLAIM["arms"]) == {"random_ft": "random", "heuristic_ft": "heuristic", "dsir_ft": "dsir"}


def test_downstream_verdicts_from_known_numbers(tmp_path) -> None:
    kl = {"random": [0.01, 0.02, 0.015], "heuristic": [0.1, 0.11, 0.12], "dsir": [0.2, 0.21, 0.22],
          "dsir_topk": [0.3, 0.3, 0.3]}
    acc = {"random_ft": [70.0, 70.5], "heuristic_ft": [75.0, 75.5], "dsir_ft": [80.0, 80.4], "no_pretrain": [72.0, 72.0]}
    out = get("dsir_glue").aggregate_runs("dsir_glue", CLAIM, "smoke", _runs(kl, acc),
                                          tmp_path / "t.csv", tmp_path / "t.json", tmp_path / "t.png")
    v = out["verdicts"]["selection"]
    assert v["d_downstream_vs_random"]["verdict"] == "holds"
    assert v["d_downstream_vs_random"]["estimate"] == pytest.approx(80.2 - 70.25)
    e = v["e_kl_accuracy_correlation"]
    assert e["n_points"] == 6 and e["estimate"] > 0.95 and e["verdict"] == "holds"
    assert -1 <= e["lower"] <= e["estimate"] <= e["upper"] <= 1
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    ft = next(r for r in rows if r["arm"] == "dsir_ft")
    assert ft["task"] == "sst2" and ft["selection_arm"] == "dsir" and float(ft["paper_glue_avg"]) == 82.30
    assert json.loads((tmp_path / "t.json").read_text())["metrics"]["dsir_ft/sst2/accuracy"] == pytest.approx(80.2)

    # accuracy falling as KL reduction grows: the correlation does not hold
    flipped = {"random_ft": [80.0, 80.4], "heuristic_ft": [75.0, 75.5], "dsir_ft": [70.0, 70.5], "no_pretrain": [72.0, 72.0]}
    out = get("dsir_glue").aggregate_runs("dsir_glue", CLAIM, "smoke", _runs(kl, flipped),
                                          tmp_path / "t.csv", tmp_path / "t.json", tmp_path / "t.png")
    assert out["verdicts"]["selection"]["e_kl_accuracy_correlation"]["verdict"] == "does not hold"
    assert out["verdicts"]["selection"]["d_downstream_vs_random"]["verdict"] == "does not hold"


def test_a_downstream_arm_without_its_selection_arm_is_refused() -> None:
    cfg = copy.deepcopy(PARAMS)
    cfg["claims"]["dsir_glue"]["arms"]["dsir_ft"][0]["select"]["budget"] = 0.2  # no arm selects this
    with pytest.raises(ConfigError, match=r"claims\.dsir_glue\.arms\.dsir_ft: a downstream arm needs a selection arm"):
        validate(cfg, "params.yaml")


def test_bad_pretrain_params_are_refused_with_the_step_named() -> None:
    cfg = copy.deepcopy(PARAMS)
    cfg["claims"]["dsir_glue"]["arms"]["dsir_ft"][1]["pretrain"]["mask_prob"] = 2
    with pytest.raises(ConfigError, match=r"claims\.dsir_glue\.arms\.dsir_ft\[1\]\.pretrain: mask_prob must be in"):
        validate(cfg, "params.yaml")
