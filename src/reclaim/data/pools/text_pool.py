"""A mixed text pool with a hidden in-domain share, for targeted-selection claims (DSIR).

The DSIR paper selects from The Pile for a Wikipedia+books target (arXiv 2302.03169,
Sec. 5); the smoke/small stand-in mixes local text sources into fixed-length word chunks
and hides half of one task's training text in the pool, while the other half is the
target. How much of the hidden half a method recovers is then measurable.

Sources: WikiText-2 raw splits, prepared GLUE splits (canonical JSONL), and the ``hidden``
GLUE split divided in two by example_id (a content hash, so the halves do not depend on file
order). Words of one source are packed, in canonical order, into chunks of ``chunk_words``
(the tail shorter than a chunk is dropped, as the paper's pipeline chunks the Pile). The
target and held-out target samples are disjoint draws of whole sentences from the other
half. Every pool row is ``{example_id, text, source}``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reclaim.data.example_ids import assign_ids
from reclaim.select._base import row_text


@dataclass(frozen=True)
class TextPoolParams:
    hidden: str                               # "<task>/<split>": half hidden in the pool, half target
    glue: list[str] = field(default_factory=list)  # other "<task>/<split>" sources
    wikitext_splits: list[str] = field(default_factory=list)  # "valid", "test"
    chunk_words: int = 64
    target_size: int = 2000
    heldout_size: int = 1000
    max_chunks_per_source: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for ref in [self.hidden, *self.glue]:
            if ref.count("/") != 1:
                raise ValueError(f"a GLUE source is '<task>/<split>', got {ref!r}")
        for s in self.wikitext_splits:
            if s not in ("valid", "test"):
                raise ValueError(f"wikitext_splits: unknown split {s!r} (valid, test); train is not used")
        if self.chunk_words < 4:
            raise ValueError(f"chunk_words must be >= 4, got {self.chunk_words}")
        if self.target_size < 1 or self.heldout_size < 1:
            raise ValueError("target_size and heldout_size must be >= 1")


def glue_sources(p: TextPoolParams) -> list[tuple[str, str]]:
    return [tuple(ref.split("/")) for ref in [p.hidden, *p.glue]]  # type: ignore[misc]


def wikitext_text(path: str | Path) -> str:
    """Raw WikiText with the ``= Heading =`` lines removed."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return "\n".join(ln for ln in lines if not ln.strip().startswith("="))


def pack(texts: list[str], chunk_words: int) -> list[str]:
    words = " ".join(texts).split()
    return [" ".join(words[i:i + chunk_words]) for i in range(0, len(words) - chunk_words + 1, chunk_words)]


def build(p: TextPoolParams, glue_rows: dict[str, list[dict[str, Any]]],
          wikitext: dict[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(pool, target, heldout). ``glue_rows`` maps "<task>/<split>" to canonical rows."""
    pool: list[dict[str, Any]] = []

    def add(source: str, texts: list[str]) -> None:
        chunks = pack(texts, p.chunk_words)
        if p.max_chunks_per_source is not None:
            chunks = chunks[: p.max_chunks_per_source]
        pool.extend({"text": c, "source": source} for c in chunks)

    for split in p.wikitext_splits:
        add(f"wikitext/{split}", [wikitext[split]])
    for ref in p.glue:
        add(ref, [row_text(r) for r in sorted(glue_rows[ref], key=lambda r: r["example_id"])])
    hidden = sorted(glue_rows[p.hidden], key=lambda r: r["example_id"])
    in_pool = [r for r in hidden if int(r["example_id"][-1], 16) % 2 == 0]
    rest = [r for r in hidden if int(r["example_id"][-1], 16) % 2 == 1]
    add(p.hidden, [row_text(r) for r in in_pool])
    if len(rest) < p.target_size + p.heldout_size:
        raise ValueError(f"{p.hidden}: the target half has {len(rest)} examples, fewer than "
                         f"target_size + heldout_size = {p.target_size + p.heldout_size}")
    draw = random.Random(p.seed).sample(range(len(rest)), p.target_size + p.heldout_size)
    target = [{"example_id": rest[i]["example_id"], "text": row_text(rest[i]), "source": p.hidden}
              for i in sorted(draw[: p.target_size])]
    heldout = [{"example_id": rest[i]["example_id"], "text": row_text(rest[i]), "source": p.hidden}
               for i in sorted(draw[p.target_size:])]
    assign_ids(pool, ["pool"], ["source", "text"])
    return pool, target, heldout


class TextPool:
    Params = TextPoolParams
    outputs = ("pool", "target", "heldout")

    def glue_sources(self, p: TextPoolParams) -> list[tuple[str, str]]:
        return glue_sources(p)

    def wikitext_splits(self, p: TextPoolParams) -> list[str]:
        return list(p.wikitext_splits)

    def build(self, p: TextPoolParams, glue_rows: dict[str, list[dict[str, Any]]],
              wikitext: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
        pool, target, heldout = build(p, glue_rows, wikitext)
        return {"pool": pool, "target": target, "heldout": heldout}


BUILDER = TextPool()
