"""GLUE tasks (Wang et al., 2018, arXiv 1804.07461): readers for the classic
`GLUE_DIR/<TASK>/{train,dev}.tsv` layout and for the Hub copy (`nyu-mll/glue`).

Every task is converted to one canonical JSONL row per example,
``{"idx", "text_a", "text_b", "label"}``, so framings and later data-selection stages never
see the source format. ``label`` is a class index, except for STS-B (regression), where it
is the similarity score, a float in [0, 5]. Label words and prompt nouns are the LoRA-GA
paper's text-to-text setup (arXiv 2407.05000, appendix on T5 experiments); for the tasks
that paper does not run (RTE, STS-B, QQP, WNLI) the label words are T5's (arXiv 1910.10683).
MNLI's mismatched dev set is its own task, ``mnli_mm``, trained on the same MNLI train set.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class GlueTask:
    name: str
    dir_name: str
    files: dict[str, str]  # split -> file name in the classic layout
    hub_splits: dict[str, str]  # split -> split name on the Hub
    label_names: tuple[str, ...]  # index -> label string as written in the source
    label_words: tuple[str, ...]  # index -> word the text-to-text framings generate
    prompt_noun: str
    text_a_name: str
    text_b_name: str | None
    metrics: tuple[str, ...]
    hub_config: str | None = None  # Hub config name when it is not ``name`` (mnli_mm)
    is_regression: bool = False  # label is a float score (STS-B), no label names or words

    @property
    def num_labels(self) -> int:
        """Outputs of a classification head: one for a regression task."""
        return 1 if self.is_regression else len(self.label_words)

    def prompt(self, text_a: str, text_b: str | None) -> str:
        """The paper's input template: 'classify the <noun> of the text: <s>\\nresult: '."""
        text = text_a if text_b is None else f"{self.text_a_name}: {text_a} {self.text_b_name}: {text_b}"
        return f"classify the {self.prompt_noun} of the text: {text}\nresult: "


TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in [
        GlueTask("sst2", "SST-2", {"train": "train.tsv", "dev": "dev.tsv"},
                 {"train": "train", "dev": "validation"}, ("0", "1"),
                 ("negative", "positive"), "sentiment", "sentence", None, ("accuracy",)),
        GlueTask("cola", "CoLA", {"train": "train.tsv", "dev": "dev.tsv"},
                 {"train": "train", "dev": "validation"}, ("0", "1"),
                 ("unacceptable", "acceptable"), "grammar", "sentence", None,
                 ("accuracy", "mcc")),
        GlueTask("mrpc", "MRPC", {"train": "train.tsv", "dev": "dev.tsv"},
                 {"train": "train", "dev": "validation"}, ("0", "1"),
                 ("different", "equivalent"), "paraphrase", "sentence1", "sentence2",
                 ("accuracy", "f1")),
        GlueTask("qnli", "QNLI", {"train": "train.tsv", "dev": "dev.tsv"},
                 {"train": "train", "dev": "validation"}, ("entailment", "not_entailment"),
                 ("entailment", "not_entailment"), "entailment", "question", "sentence",
                 ("accuracy",)),
        GlueTask("mnli", "MNLI", {"train": "train.tsv", "dev": "dev_matched.tsv"},
                 {"train": "train", "dev": "validation_matched"},
                 ("entailment", "neutral", "contradiction"),
                 ("entailment", "neutral", "contradiction"), "entailment", "premise",
                 "hypothesis", ("accuracy",)),
        GlueTask("mnli_mm", "MNLI", {"train": "train.tsv", "dev": "dev_mismatched.tsv"},
                 {"train": "train", "dev": "validation_mismatched"},
                 ("entailment", "neutral", "contradiction"),
                 ("entailment", "neutral", "contradiction"), "entailment", "premise",
                 "hypothesis", ("accuracy",), hub_config="mnli"),
        GlueTask("rte", "RTE", {"train": "train.tsv", "dev": "dev.tsv"},
                 {"train": "train", "dev": "validation"}, ("entailment", "not_entailment"),
                 ("entailment", "not_entailment"), "entailment", "sentence1", "sentence2",
                 ("accuracy",)),
        GlueTask("stsb", "STS-B", {"train": "train.tsv", "dev": "dev.tsv"},
                 {"train": "train", "dev": "validation"}, (), (), "similarity", "sentence1",
                 "sentence2", ("pearson", "spearman"), is_regression=True),
        GlueTask("qqp", "QQP", {"train": "train.tsv", "dev": "dev.tsv"},
                 {"train": "train", "dev": "validation"}, ("0", "1"),
                 ("not_duplicate", "duplicate"), "paraphrase", "question1", "question2",
                 ("accuracy", "f1")),
        GlueTask("wnli", "WNLI", {"train": "train.tsv", "dev": "dev.tsv"},
                 {"train": "train", "dev": "validation"}, ("0", "1"),
                 ("not_entailment", "entailment"), "entailment", "sentence1", "sentence2",
                 ("accuracy",)),
    ]
}


def main_metric(task: str) -> str:
    """The metric a claim table reports for ``task``: accuracy for classification tasks (the
    LoRA-GA and data papers' tables), Pearson r for STS-B (GLUE's first STS-B metric)."""
    metrics = get_task(task).metrics
    return "accuracy" if "accuracy" in metrics else metrics[0]


class MissingTaskData(FileNotFoundError):
    """A task's files are absent from the configured GLUE directory."""


def get_task(name: str) -> GlueTask:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown GLUE task {name!r}; known: {', '.join(sorted(TASKS))}") from None


def task_file(glue_dir: str | os.PathLike[str], task: str, split: str) -> Path:
    t = get_task(task)
    return Path(glue_dir) / t.dir_name / t.files[split]


def missing_files(glue_dir: str | os.PathLike[str], task: str) -> list[Path]:
    t = get_task(task)
    return [p for p in (task_file(glue_dir, task, s) for s in t.files) if not p.is_file()]


def read_classic(glue_dir: str | os.PathLike[str], task: str, split: str) -> list[dict[str, Any]]:
    """Read one split of the classic GLUE layout; errors name the file and line."""
    path = task_file(glue_dir, task, split)
    if not path.is_file():
        raise MissingTaskData(f"{task}: {path} not found")
    reader = _READERS[task]
    min_cols = _MIN_COLUMNS[task]
    rows: list[dict[str, Any]] = []
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:  # e.g. a file cut in the middle of a character
        lineno = raw[:exc.start].count(b"\n") + 1
        raise ValueError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < min_cols:
            raise ValueError(f"{path}:{lineno}: malformed {task} row: expected {min_cols} "
                             f"tab-separated columns, got {len(fields)} (truncated or half-written file?)")
        try:
            row = reader(fields, lineno)
        except (IndexError, ValueError) as exc:
            raise ValueError(f"{path}:{lineno}: malformed {task} row ({exc})") from exc
        if row is not None:
            row["idx"] = len(rows)
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no examples")
    return rows


def _label(task: str, value: str) -> int:
    names = TASKS[task].label_names
    value = value.strip()
    if value not in names:
        raise ValueError(f"bad label {value!r} (expected one of {', '.join(names)})")
    return names.index(value)


def _sst2(f: list[str], lineno: int) -> dict[str, Any] | None:
    if lineno == 1 and f[0] == "sentence":
        return None
    return {"text_a": f[0], "text_b": None, "label": _label("sst2", f[1])}


def _cola(f: list[str], lineno: int) -> dict[str, Any] | None:
    if len(f) < 4:
        raise ValueError(f"expected 4 columns, got {len(f)}")
    return {"text_a": f[3], "text_b": None, "label": _label("cola", f[1])}


def _mrpc(f: list[str], lineno: int) -> dict[str, Any] | None:
    if lineno == 1 and f[0].startswith("Quality"):
        return None
    return {"text_a": f[3], "text_b": f[4], "label": _label("mrpc", f[0])}


def _qnli(f: list[str], lineno: int) -> dict[str, Any] | None:
    if lineno == 1 and f[0] == "index":
        return None
    return {"text_a": f[1], "text_b": f[2], "label": _label("qnli", f[3])}


def _mnli(f: list[str], lineno: int) -> dict[str, Any] | None:
    if lineno == 1 and f[0] == "index":
        return None
    return {"text_a": f[8], "text_b": f[9], "label": _label("mnli", f[-1])}


def _rte(f: list[str], lineno: int) -> dict[str, Any] | None:
    if lineno == 1 and f[0] == "index":
        return None
    return {"text_a": f[1], "text_b": f[2], "label": _label("rte", f[3])}


def _score(value: str) -> float:
    """An STS-B similarity score: a finite number in [0, 5]."""
    try:
        score = float(value)
    except ValueError:
        raise ValueError(f"bad score {value.strip()!r} (expected a number in [0, 5])") from None
    if not (math.isfinite(score) and 0.0 <= score <= 5.0):
        raise ValueError(f"bad score {value.strip()!r} (expected a number in [0, 5])")
    return score


def _stsb(f: list[str], lineno: int) -> dict[str, Any] | None:
    # index genre filename year old_index source1 source2 sentence1 sentence2 score
    if lineno == 1 and f[0] == "index":
        return None
    return {"text_a": f[7], "text_b": f[8], "label": _score(f[9])}


def _qqp(f: list[str], lineno: int) -> dict[str, Any] | None:
    # id qid1 qid2 question1 question2 is_duplicate
    if lineno == 1 and f[0] == "id":
        return None
    return {"text_a": f[3], "text_b": f[4], "label": _label("qqp", f[5])}


def _wnli(f: list[str], lineno: int) -> dict[str, Any] | None:
    if lineno == 1 and f[0] == "index":
        return None
    return {"text_a": f[1], "text_b": f[2], "label": _label("wnli", f[3])}


# mnli_mm reads MNLI's files (same columns, same label names) with its own dev file.
_READERS = {"sst2": _sst2, "cola": _cola, "mrpc": _mrpc, "qnli": _qnli, "mnli": _mnli,
            "mnli_mm": _mnli, "rte": _rte, "stsb": _stsb, "qqp": _qqp, "wnli": _wnli}
# Columns every row (header included) has in the classic files; fewer means a cut-off row
# (or, in some QQP copies, a row with missing fields: an error too, never skipped).
_MIN_COLUMNS = {"sst2": 2, "cola": 4, "mrpc": 5, "qnli": 4, "mnli": 12, "mnli_mm": 12,
                "rte": 4, "stsb": 10, "qqp": 6, "wnli": 4}


def read_hub(dataset: str, task: str, split: str) -> list[dict[str, Any]]:
    """Read from the Hugging Face Hub (or its local cache; honours HF_HUB_OFFLINE=1)."""
    import datasets  # heavy import, only on this path

    t = get_task(task)
    ds = datasets.load_dataset(dataset, t.hub_config or task, split=t.hub_splits[split])
    a, b = t.text_a_name, t.text_b_name
    label = _hub_score if t.is_regression else int
    return [
        {"idx": i, "text_a": ex[a], "text_b": ex[b] if b else None, "label": label(ex["label"])}
        for i, ex in enumerate(ds)
    ]


def _hub_score(value: float) -> float:
    """The Hub stores STS-B scores as float32 (3.8 -> 3.799999952...); its shortest float32
    repr gives back the decimal the classic file holds, so both sources give equal rows."""
    import numpy as np

    return float(str(np.float32(value)))


def read_split(task: str, split: str, glue_dir: str | None, hub_dataset: str) -> list[dict[str, Any]]:
    if glue_dir:
        return read_classic(glue_dir, task, split)
    return read_hub(hub_dataset, task, split)
