"""Every task a claim's scale can list: the GLUE text tasks (reclaim.data.glue) and the image
tasks (reclaim.data.images), with where each task's prepared splits live and how they are read.

Prepared splits: ``data/glue/{task}/{split}.jsonl`` for text (rows ``example_id, idx,
text_a, text_b, label``), ``data/images/{task}/{split}.npz`` for images (``example_id, idx,
label`` and the pixels). Both carry content-hash example ids, so selections, subsampling and
the train loop treat them alike; only the framing looks inside a row.
"""

from __future__ import annotations

import os
from typing import Any

from reclaim.data import glue, images

TASKS: dict[str, Any] = {**glue.TASKS, **images.TASKS}


def get_task(name: str) -> Any:
    """The task's description (a GlueTask or an ImageTask: name, metrics, num_labels, ...)."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}") from None


def modality(name: str) -> str:
    return getattr(get_task(name), "modality", "text")


def data_family(name: str) -> str:
    """``glue`` or ``images``: the folder under data/ and the prefix of data ids."""
    return "images" if name in images.TASKS else "glue"


def split_path(name: str, split: str) -> str:
    get_task(name)
    ext = "npz" if data_family(name) == "images" else "jsonl"
    return f"data/{data_family(name)}/{name}/{split}.{ext}"


def read_rows(path: str | os.PathLike[str], required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Canonical rows of a prepared split of either family (told apart by the file type)."""
    from reclaim.io import read_jsonl

    if str(path).endswith(".npz"):
        return images.read_rows(path)
    return read_jsonl(path, required)
