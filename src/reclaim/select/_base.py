"""The selector interface the ``score`` rule drives, and the scores file contract.

A selector maps a pool (canonical rows with ``example_id``) and, for targeted methods, a
target sample to one float per pool example. Scores are written in canonical order (sorted
by ``example_id``) with the orientation they carry, so the subset rule and every later
consumer know what "high" means without knowing the method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reclaim.io import write_json, write_text
from reclaim.registry import make_params


@dataclass(frozen=True)
class NoParams:
    pass


@dataclass(frozen=True)
class ModelContext:
    """What a ``needs_model`` selector scores with: the model of the (model, task) context its
    arm trains in, resolved like the train rule's, and the task whose labels it reads."""

    identity: dict[str, Any]          # reclaim.jobs.model_identity (name, framing, hub id, ...)
    location: Any                     # reclaim.models.ResolvedModel
    task: str
    threads: int | None = None


class Selector:
    """Base class: subclasses set the class attributes and implement :meth:`score`."""

    Params: type = NoParams
    orientation: str = "high = keep"  # what a high score means, stored with the scores
    needs_target: bool = False        # scored against a target sample (DSIR, TAROT, ...)
    needs_labels: bool = False        # reads the ``label`` column (EL2N, Shapley, ...)
    seeded: bool = True               # False: scores do not depend on the seed (one job for all seeds)
    needs_model: bool = False         # scored with the arm's model (EL2N, GraNd, prototypes): gets
                                      # ``model=ModelContext`` (the arm must train, which names the model)

    def make_params(self, raw: dict[str, Any] | None) -> Any:
        """Validate raw params (from params.yaml) into the Params dataclass."""
        return make_params(self.Params, raw)

    def score(self, pool: list[dict[str, Any]], target: list[dict[str, Any]] | None, params: Any,
              seed: int) -> list[float]:
        """One float per pool row (canonical order). ``needs_model`` selectors also take the
        keyword ``model: ModelContext``."""
        raise NotImplementedError


def row_text(row: dict[str, Any]) -> str:
    """The text a text selector sees: ``text`` for pool chunks, else the GLUE pair joined."""
    if "text" in row:
        return str(row["text"])
    a, b = row.get("text_a") or "", row.get("text_b") or ""
    return f"{a} {b}".strip()


def canonical(rows: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Rows sorted by example_id; a row without one, or a duplicate id, is an error."""
    ids = [r.get("example_id") for r in rows]
    for i, eid in enumerate(ids):
        if not eid:
            raise ValueError(f"{where}: row {i + 1} has no example_id (prepare the data with this version)")
    if len(set(ids)) != len(ids):
        dup = next(e for e in ids if ids.count(e) > 1)
        raise ValueError(f"{where}: duplicate example_id {dup}")
    return sorted(rows, key=lambda r: r["example_id"])


def write_scores(path: str | Path, ids: Sequence[str], scores: Sequence[float], meta: dict[str, Any]) -> None:
    """``scores.tsv`` (example_id, score; canonical order; repr floats round-trip exactly)
    and ``scores.json`` beside it (selector, params, orientation, counts, timings)."""
    lines = ["example_id\tscore"] + [f"{e}\t{float(s)!r}" for e, s in zip(ids, scores, strict=True)]
    write_json(Path(path).with_suffix(".json"), meta)
    write_text(path, "\n".join(lines) + "\n")


def read_table(path: str | Path, value: str) -> dict[str, float]:
    """Read a two-column TSV (``example_id``, ``value``); errors name file and line."""
    out: dict[str, float] = {}
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        if header != ["example_id", value]:
            raise ValueError(f"{path}:1: expected header 'example_id<TAB>{value}', got {header}")
        for lineno, line in enumerate(fh, 2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected 2 tab-separated columns, got {len(parts)}")
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: {value} {parts[1]!r} is not a number") from None
    return out
