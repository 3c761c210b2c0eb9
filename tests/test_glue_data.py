from __future__ import annotations

import re
import sys
import types

import pytest

from reclaim.data.glue import (
    TASKS,
    MissingTaskData,
    get_task,
    missing_files,
    read_classic,
    read_hub,
    task_file,
)
from reclaim.metrics import compute
from reclaim.testing import write_glue_fixture


def test_reads_each_classic_layout(glue_fixture) -> None:
    for task in ("sst2", "cola", "mrpc"):
        rows = read_classic(glue_fixture, task, "train")
        assert rows and {r["label"] for r in rows} == {0, 1}
        assert all(isinstance(r["text_a"], str) and r["text_a"] for r in rows)
    mrpc = read_classic(glue_fixture, "mrpc", "dev")
    assert all(r["text_b"] for r in mrpc) and not mrpc[0]["text_a"].startswith("\ufeff")


def test_missing_task_is_reported_not_crashed(glue_fixture) -> None:
    assert missing_files(glue_fixture, "qnli")
    assert not missing_files(glue_fixture, "sst2")
    with pytest.raises(MissingTaskData, match="qnli"):
        read_classic(glue_fixture, "qnli", "dev")


def test_malformed_row_names_file_and_line(tmp_path) -> None:
    d = tmp_path / "SST-2"
    d.mkdir()
    (d / "train.tsv").write_text("sentence\tlabel\ngood film\t1\nhalf a line without label\n")
    with pytest.raises(ValueError, match=r"train.tsv:3: malformed sst2 row"):
        read_classic(tmp_path, "sst2", "train")
    (d / "train.tsv").write_text("sentence\tlabel\ngood film\t7\n")
    with pytest.raises(ValueError, match=r"train.tsv:2"):
        read_classic(tmp_path, "sst2", "train")


# --- the remaining GLUE tasks (RTE, STS-B, QQP, WNLI, MNLI mismatched) ---------------------

NEW_TASKS = ("rte", "stsb", "qqp", "wnli", "mnli_mm")
# task -> (directory, columns per row)
NEW_LAYOUT = {"rte": ("RTE", 4), "stsb": ("STS-B", 10), "qqp": ("QQP", 6), "wnli": ("WNLI", 4),
              "mnli_mm": ("MNLI", 12)}


@pytest.mark.parametrize("task", NEW_TASKS)
def test_reads_each_new_task(tmp_path, task) -> None:
    write_glue_fixture(tmp_path, tasks=(task,), n_train=20, n_dev=10)
    assert not missing_files(tmp_path, task)
    t = get_task(task)
    for split, n in (("train", 20), ("dev", 10)):
        rows = read_classic(tmp_path, task, split)
        assert len(rows) == n and [r["idx"] for r in rows] == list(range(n))
        assert all(r["text_a"] and r["text_b"] for r in rows)
        if t.is_regression:
            assert all(type(r["label"]) is float for r in rows)
        else:
            assert {r["label"] for r in rows} == set(range(t.num_labels))


def test_stsb_is_regression_with_float_scores_and_correlation_metrics(tmp_path) -> None:
    write_glue_fixture(tmp_path, tasks=("stsb",), n_train=8, n_dev=40)
    t = get_task("stsb")
    assert t.is_regression and t.num_labels == 1 and t.metrics == ("pearson", "spearman")
    assert not any(get_task(n).is_regression for n in TASKS if n != "stsb")
    path = tmp_path / "STS-B" / "dev.tsv"
    rows = read_classic(tmp_path, "stsb", "dev")
    first = path.read_text(encoding="utf-8").splitlines()[1].split("\t")
    assert rows[0] == {"idx": 0, "text_a": first[7], "text_b": first[8], "label": float(first[9])}
    labels = [r["label"] for r in rows]
    assert compute(t.metrics, labels, labels) == {"pearson": 100.0, "spearman": 100.0}
    noisy = compute(t.metrics, [y + (0.5 if i % 2 else -0.5) for i, y in enumerate(labels)], labels)
    assert set(noisy) == {"pearson", "spearman"} and all(0 < v < 100 for v in noisy.values())


def _cut(path, lineno: int, keep: int) -> str:
    """Keep only the first ``keep`` columns of line ``lineno``; returns the new line."""
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[lineno - 1] = "\t".join(lines[lineno - 1].split("\t")[:keep])
    path.write_text("\n".join(lines), encoding="utf-8")
    return lines[lineno - 1]


@pytest.mark.parametrize("task", NEW_TASKS)
def test_malformed_row_in_each_new_task_names_file_and_line(tmp_path, task) -> None:
    write_glue_fixture(tmp_path, tasks=(task,), n_train=20, n_dev=10)
    dir_name, cols = NEW_LAYOUT[task]
    path = tmp_path / dir_name / "train.tsv"
    _cut(path, 7, cols - 2)
    with pytest.raises(ValueError, match=re.escape(
            f"{path}:7: malformed {task} row: expected {cols} tab-separated columns, got {cols - 2}")):
        read_classic(tmp_path, task, "train")
    # a bad label (or, for STS-B, a score outside [0, 5]) in the dev file
    dev = task_file(tmp_path, task, "dev")
    lines = dev.read_text(encoding="utf-8").split("\n")
    lines[4] = lines[4].rsplit("\t", 1)[0] + "\t7.5"
    dev.write_text("\n".join(lines), encoding="utf-8")
    what = "bad score '7.5'" if task == "stsb" else "bad label '7.5'"
    with pytest.raises(ValueError, match=re.escape(f"{dev}:5: malformed {task} row ({what}")):
        read_classic(tmp_path, task, "dev")


def test_qqp_row_with_missing_fields_is_an_error_not_skipped(tmp_path) -> None:
    """Some QQP copies have rows whose question spills onto the next line: those lines have
    too few fields. Skipping them would silently change the data; the reader stops instead."""
    write_glue_fixture(tmp_path, tasks=("qqp",), n_train=20, n_dev=10)
    path = tmp_path / "QQP" / "train.tsv"
    lines = path.read_text(encoding="utf-8").split("\n")
    qid, q1, q2 = "123456\t11\t12", "What does the man see?", "What does a man see?"
    lines[9:9] = [f"{qid}\t{q1}\t{q2[:9]}", f"{q2[9:]}\t1"]  # a row split across lines 10-11
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(
            f"{path}:10: malformed qqp row: expected 6 tab-separated columns, got 5")):
        read_classic(tmp_path, "qqp", "train")
    lines[9:11] = [f"{qid}\t{q1}\t\t"]  # question2 and label empty: a bad label, not a skip
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}:10: malformed qqp row (bad label ''")):
        read_classic(tmp_path, "qqp", "train")


def test_mnli_mismatched_reads_dev_mismatched(tmp_path) -> None:
    write_glue_fixture(tmp_path, tasks=("mnli",), n_train=12, n_dev=9)
    # MNLI matched alone on disk: mnli_mm lacks only its dev file
    assert missing_files(tmp_path, "mnli_mm") == [tmp_path / "MNLI" / "dev_mismatched.tsv"]
    with pytest.raises(MissingTaskData, match="mnli_mm.*dev_mismatched.tsv"):
        read_classic(tmp_path, "mnli_mm", "dev")
    write_glue_fixture(tmp_path, tasks=("mnli_mm",), n_train=12, n_dev=9)
    assert task_file(tmp_path, "mnli_mm", "dev").name == "dev_mismatched.tsv"
    assert task_file(tmp_path, "mnli_mm", "train") == task_file(tmp_path, "mnli", "train")
    assert read_classic(tmp_path, "mnli_mm", "train") == read_classic(tmp_path, "mnli", "train")
    mm = read_classic(tmp_path, "mnli_mm", "dev")
    lines = (tmp_path / "MNLI" / "dev_mismatched.tsv").read_text(encoding="utf-8").splitlines()
    assert [(r["text_a"], r["text_b"]) for r in mm] == [tuple(x.split("\t")[8:10]) for x in lines[1:]]
    assert mm != read_classic(tmp_path, "mnli", "dev")


@pytest.mark.parametrize("task", NEW_TASKS)
def test_absent_new_task_is_reported_not_crashed(glue_fixture, task) -> None:
    absent = missing_files(glue_fixture, task)
    assert absent and all(not p.exists() for p in absent)
    with pytest.raises(MissingTaskData, match=rf"^{task}: .* not found$"):
        read_classic(glue_fixture, task, "train")


def test_hub_reader_config_split_and_columns(monkeypatch) -> None:
    """No network: a stand-in ``datasets`` records what would be loaded."""
    import numpy as np

    calls = []
    examples = {
        "stsb": [{"sentence1": "a", "sentence2": "b", "label": float(np.float32(3.8)), "idx": 0}],
        "qqp": [{"question1": "q1?", "question2": "q2?", "label": 1, "idx": 0}],
        "mnli": [{"premise": "p", "hypothesis": "h", "label": 2, "idx": 0}],
    }

    def load_dataset(name, config, split):  # type: ignore[no-untyped-def]
        calls.append((name, config, split))
        return examples[config]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    stsb = read_hub("nyu-mll/glue", "stsb", "dev")
    assert stsb == [{"idx": 0, "text_a": "a", "text_b": "b", "label": 3.8}]  # not 3.7999999523
    assert read_hub("nyu-mll/glue", "qqp", "train")[0]["text_a"] == "q1?"
    assert read_hub("nyu-mll/glue", "mnli_mm", "dev")[0]["label"] == 2
    assert calls == [("nyu-mll/glue", "stsb", "validation"), ("nyu-mll/glue", "qqp", "train"),
                     ("nyu-mll/glue", "mnli", "validation_mismatched")]
