"""A labeled multi-task GLUE pool with a multimodal target, for targeted selection by
distribution matching (TAROT, Feng et al., arXiv 2412.00420, Sec. 1 and 4: a multimodal
target on which influence-based greedy selection collapses onto the dominant mode).

Candidates: the training rows of several GLUE tasks, each source capped (``candidates:
{"<task>/<split>": count}``; the counts set the pool's composition, which can be skewed
against the target's). Target and held-out target: disjoint draws from the tasks' dev
splits in the ``mixture`` proportions (e.g. 60/30/10 %), so the target has one mode per task
whose weights differ. Every row keeps its canonical GLUE fields (``example_id``, ``text_a``,
``text_b``, ``label``) and adds ``task`` (the mode it belongs to), ``source`` and
``joint_label``: the index of (task, label) in a class list over all candidate tasks, so one
classifier covers the mixture and a head gradient can be taken on every row.

Draws are from a generator seeded by ``seed``, over rows in canonical (``example_id``) order,
so the pool does not depend on file order. Example ids are the prepared GLUE rows' own
content hashes (reclaim.data.example_ids): train and dev rows never share one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _ref(ref: str) -> tuple[str, str]:
    if ref.count("/") != 1:
        raise ValueError(f"a GLUE source is '<task>/<split>', got {ref!r}")
    task, split = ref.split("/")
    return task, split


@dataclass(frozen=True)
class GlueMixtureParams:
    candidates: dict[str, int] = field(default_factory=dict)  # "<task>/<split>": rows drawn (capped)
    mixture: dict[str, float] = field(default_factory=dict)   # "<task>/<split>": target weight
    target_size: int = 300
    heldout_size: int = 600
    seed: int = 0

    def __post_init__(self) -> None:
        from reclaim.data.glue import get_task

        if not self.candidates:
            raise ValueError("candidates: name at least one '<task>/<split>': count")
        if not self.mixture:
            raise ValueError("mixture: name at least one '<task>/<split>': weight")
        for key, refs in (("candidates", self.candidates), ("mixture", self.mixture)):
            for ref, v in refs.items():
                task, _ = _ref(ref)
                try:
                    t = get_task(task)
                except (KeyError, ValueError) as e:
                    raise ValueError(f"{key}: unknown GLUE task in {ref!r} ({e})") from None
                if t.is_regression:
                    raise ValueError(f"{key}: {ref!r} is a regression task; the pool needs class labels")
                if key == "candidates" and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                    raise ValueError(f"candidates.{ref} must be an integer >= 1, got {v!r}")
                if key == "mixture" and (not isinstance(v, (int, float)) or v <= 0):
                    raise ValueError(f"mixture.{ref} must be a weight > 0, got {v!r}")
        cand_tasks = {_ref(r)[0] for r in self.candidates}
        for ref in self.mixture:
            if _ref(ref)[0] not in cand_tasks:
                raise ValueError(f"mixture: task of {ref!r} has no candidates (the classifier could not learn it)")
        if len({_ref(r)[0] for r in self.mixture}) != len(self.mixture):
            raise ValueError("mixture: one source per task (a task is a mode)")
        for name in ("target_size", "heldout_size", "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "seed" else 1):
                raise ValueError(f"{name} must be an integer >= {0 if name == 'seed' else 1}, got {v!r}")


def joint_classes(p: GlueMixtureParams) -> list[tuple[str, int]]:
    """(task, label) pairs, tasks in sorted order, labels 0..num_labels-1: the joint classes."""
    from reclaim.data.glue import get_task

    tasks = sorted({_ref(r)[0] for r in p.candidates})
    return [(t, y) for t in tasks for y in range(get_task(t).num_labels)]


def _counts(weights: dict[str, float], total: int) -> dict[str, int]:
    """Integer counts in proportion to ``weights`` summing to ``total`` (largest remainders)."""
    s = sum(weights.values())
    quota = {k: total * w / s for k, w in weights.items()}
    out = {k: int(q) for k, q in quota.items()}
    for k in sorted(quota, key=lambda k: (-(quota[k] - out[k]), k))[: total - sum(out.values())]:
        out[k] += 1
    return out


def build(p: GlueMixtureParams, glue_rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    classes = {c: i for i, c in enumerate(joint_classes(p))}

    def row(r: dict[str, Any], ref: str) -> dict[str, Any]:
        task = _ref(ref)[0]
        return {"example_id": r["example_id"], "text_a": r["text_a"], "text_b": r.get("text_b"),
                "label": int(r["label"]), "task": task, "source": ref,
                "joint_label": classes[(task, int(r["label"]))]}

    pool: list[dict[str, Any]] = []
    for i, (ref, cap) in enumerate(sorted(p.candidates.items())):
        rows = sorted(glue_rows[ref], key=lambda r: r["example_id"])
        take = np.random.default_rng([p.seed, 0xC4D, i]).permutation(len(rows))[:cap]
        pool += [row(rows[j], ref) for j in sorted(take)]
    target: list[dict[str, Any]] = []
    heldout: list[dict[str, Any]] = []
    n_t, n_h = _counts(p.mixture, p.target_size), _counts(p.mixture, p.heldout_size)
    for i, ref in enumerate(sorted(p.mixture)):
        rows = sorted(glue_rows[ref], key=lambda r: r["example_id"])
        if len(rows) < n_t[ref] + n_h[ref]:
            raise ValueError(f"mixture: {ref} has {len(rows)} rows, fewer than its target + held-out "
                             f"share {n_t[ref] + n_h[ref]}")
        draw = np.random.default_rng([p.seed, 0x7A6, i]).permutation(len(rows))
        target += [row(rows[j], ref) for j in sorted(draw[: n_t[ref]])]
        heldout += [row(rows[j], ref) for j in sorted(draw[n_t[ref]: n_t[ref] + n_h[ref]])]
    overlap = {r["example_id"] for r in pool} & {r["example_id"] for r in target + heldout}
    if overlap:
        raise ValueError(f"{len(overlap)} target rows are also candidates: use train splits for candidates "
                         "and dev splits for the mixture")
    return {"pool": sorted(pool, key=lambda r: r["example_id"]),
            "target": sorted(target, key=lambda r: r["example_id"]),
            "heldout": sorted(heldout, key=lambda r: r["example_id"])}


class GlueMixture:
    Params = GlueMixtureParams
    outputs = ("pool", "target", "heldout")

    def glue_sources(self, p: GlueMixtureParams) -> list[tuple[str, str]]:
        return sorted({_ref(r) for r in [*p.candidates, *p.mixture]})

    def wikitext_splits(self, p: GlueMixtureParams) -> list[str]:
        return []

    def build(self, p: GlueMixtureParams, glue_rows: dict[str, list[dict[str, Any]]],
              wikitext: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
        return build(p, glue_rows)


BUILDER = GlueMixture()
