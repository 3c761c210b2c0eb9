from __future__ import annotations

import pytest

from reclaim.data.glue import MissingTaskData, missing_files, read_classic


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
