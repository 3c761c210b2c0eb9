"""Stage 1 units: stable example ids, the subset kinds, DSIR's weights, selection stats,
and how training consumes a selection."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from reclaim.data.example_ids import assign_ids
from reclaim.data.selection import apply as apply_selection
from reclaim.select import dsir, subsets
from reclaim.select._base import read_table
from reclaim.select.ngrams import NgramHasher, distribution, kl


def _rows(n: int = 40) -> list[dict]:
    rng = random.Random(0)
    return [{"text_a": f"sentence {i} {rng.choice(['good', 'bad'])}", "text_b": None, "label": i % 2}
            for i in range(n)]


def test_example_ids_are_content_hashes_that_survive_reordering() -> None:
    rows = assign_ids(_rows(), ["sst2", "train"], ["text_a", "text_b", "label"])
    shuffled = [dict(r) for r in rows]
    random.Random(1).shuffle(shuffled)
    for r in shuffled:
        del r["example_id"]
    again = assign_ids(shuffled, ["sst2", "train"], ["text_a", "text_b", "label"])
    assert {r["text_a"]: r["example_id"] for r in rows} == {r["text_a"]: r["example_id"] for r in again}
    # another split or task with the same text gets another id
    other = assign_ids([dict(rows[0], example_id=None)], ["sst2", "dev"], ["text_a", "text_b", "label"])
    assert other[0]["example_id"] != rows[0]["example_id"]


def test_exact_duplicates_get_distinct_salted_ids() -> None:
    dup = [{"text_a": "same", "text_b": None, "label": 1} for _ in range(3)]
    ids = [r["example_id"] for r in assign_ids(dup, ["t", "s"], ["text_a", "text_b", "label"])]
    assert len(set(ids)) == 3
    single = assign_ids([{"text_a": "same", "text_b": None, "label": 1}], ["t", "s"], ["text_a", "text_b", "label"])
    assert single[0]["example_id"] == ids[0]


IDS = [f"{i:04x}" for i in range(100)]
SCORES = [float((i * 37) % 100) for i in range(100)]


@pytest.mark.parametrize("kind", ["top", "bottom"])
def test_top_and_bottom(kind: str) -> None:
    kept = subsets.select(IDS, SCORES, subsets.SubsetParams(kind, 0.1), seed=0)
    order = sorted(range(100), key=lambda i: SCORES[i], reverse=kind == "top")
    assert kept == sorted(IDS[i] for i in order[:10])


def test_offset_window_skips_the_highest() -> None:
    kept = subsets.select(IDS, SCORES, subsets.SubsetParams("offset", 0.2, offset=0.1), seed=0)
    order = sorted(range(100), key=lambda i: -SCORES[i])
    assert kept == sorted(IDS[i] for i in order[10:30])


def test_stratified_keeps_proportions() -> None:
    strata = ["a" if i < 80 else "b" for i in range(100)]
    kept = subsets.select(IDS, SCORES, subsets.SubsetParams("stratified", 0.1, stratify_by="label"), 0, strata)
    assert sum(1 for e in kept if int(e, 16) < 80) == 8 and len(kept) == 10


def test_sample_is_seeded_and_follows_the_weights() -> None:
    p = subsets.SubsetParams("sample", 0.1)
    logw = [x / 100 for x in SCORES]  # weights within a factor e of each other: a real draw
    a, b = subsets.select(IDS, logw, p, seed=3), subsets.select(IDS, logw, p, seed=3)
    assert a == b and subsets.select(IDS, logw, p, seed=4) != a
    # independent of the order the pool is listed in
    perm = list(range(100))
    random.Random(0).shuffle(perm)
    assert subsets.select([IDS[i] for i in perm], [logw[i] for i in perm], p, seed=3) == a
    # a weight 1e6 times larger is (nearly) always drawn; -inf never
    s = [0.0] * 100
    s[7], s[8] = math.log(1e6), -math.inf
    counts = sum(IDS[7] in subsets.select(IDS, s, p, seed=k) for k in range(50))
    assert counts == 50
    assert all(IDS[8] not in subsets.select(IDS, s, p, seed=k) for k in range(20))


@pytest.mark.parametrize("budget", [0, 0.0, 1.5, -0.1])
def test_bad_budget_is_refused(budget: float) -> None:
    with pytest.raises(ValueError, match="budget"):
        subsets.SubsetParams("top", budget)


def test_dsir_log_weights_match_the_formula() -> None:
    pool = ["the cat sat", "a dog ran fast", "the cat ran"]
    target = ["the cat sat on the mat", "cat sat"]
    p = dsir.DsirParams(buckets=64)
    got = dsir.SELECTOR.log_weights(pool, target, p)
    h = NgramHasher(64, 2)
    gt = h.counts(target)
    gt /= gt.sum()
    gr = h.counts(pool)
    gr /= gr.sum()
    want = [sum(math.log(gt[b] + 1e-8) - math.log(gr[b] + 1e-8) for b in h.buckets_of(t)) for t in pool]
    assert np.allclose(got, want)
    assert got[0] > got[1]  # the target-like text outranks the off-target one


def test_kl_reduction_is_positive_for_a_target_like_selection(tmp_path) -> None:
    from reclaim.evaluate.selection_stats import SelectionStats

    pool = ([{"example_id": f"t{i}", "text": f"great movie fun acting {i}", "source": "sst2"} for i in range(20)]
            + [{"example_id": f"w{i}", "text": f"the river castle was built {i}", "source": "wiki"} for i in range(80)])
    heldout = [{"text": "fun movie great acting", "source": "sst2"}] * 5
    for name, rows in (("pool", pool), ("heldout", heldout)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    good = tmp_path / "good.tsv"
    good.write_text("example_id\tweight\n" + "".join(f"t{i}\t1.0\n" for i in range(10)))
    bad = tmp_path / "bad.tsv"
    bad.write_text("example_id\tweight\n" + "".join(f"w{i}\t1.0\n" for i in range(10)))
    ev = SelectionStats()
    p = ev.make_params({"buckets": 512})
    inp = {"pool": str(tmp_path / "pool.jsonl"), "heldout": str(tmp_path / "heldout.jsonl")}
    g = ev.evaluate({**inp, "subset": str(good)}, p)
    b = ev.evaluate({**inp, "subset": str(bad)}, p)
    assert g["kl_reduction"] > 0 > b["kl_reduction"]
    assert g["precision"] == 1.0 and b["precision"] == 0.0 and g["base_rate"] == 0.2


def test_kl_of_identical_distributions_is_zero() -> None:
    p = distribution(np.array([1.0, 2.0, 3.0]), 0.0)
    assert kl(p, p) == pytest.approx(0.0)


def test_training_consumes_hard_and_repeat_selections(tmp_path) -> None:
    rows = assign_ids(_rows(10), ["sst2", "train"], ["text_a", "text_b", "label"])
    sub = tmp_path / "subset.tsv"
    sub.write_text(f"example_id\tweight\n{rows[2]['example_id']}\t1.0\n{rows[5]['example_id']}\t1.0\n")
    assert [r["text_a"] for r in apply_selection(rows, sub, "hard")] == [rows[2]["text_a"], rows[5]["text_a"]]
    sub.write_text(f"example_id\tweight\n{rows[2]['example_id']}\t3.0\n{rows[5]['example_id']}\t0.2\n")
    assert [r["text_a"] for r in apply_selection(rows, sub, "repeat")] == [rows[2]["text_a"]] * 3
    with pytest.raises(ValueError, match="hard mode"):
        apply_selection(rows, sub, "hard")
    sub.write_text("example_id\tweight\nnot-an-id\t1.0\n")
    with pytest.raises(ValueError, match="not in the training data"):
        apply_selection(rows, sub, "hard")


def test_scores_table_errors_name_file_and_line(tmp_path) -> None:
    f = tmp_path / "scores.tsv"
    f.write_text("example_id\tscore\nabc\t1.0\ndef\tnope\n")
    with pytest.raises(ValueError, match=r"scores.tsv:3: score 'nope' is not a number"):
        read_table(f, "score")
