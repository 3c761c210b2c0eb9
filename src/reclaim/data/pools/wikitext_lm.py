"""WikiText-2 as a language-modelling pool: one raw split packed into fixed-length word
chunks to train on, another split's chunks held out for perplexity (the loss-reweighting
claim's LM arms continue pretraining on it; Sow et al., arXiv 2502.06733, Sec. 5 pretrain on
web text and report perplexity).

Only the valid and test splits are read (the 36k-line train split is not in the local data;
the Hub path serves any). Chunks are whole words in document order, the tail shorter than a
chunk dropped; ids are content hashes of (split, text), so the pool does not depend on file
order elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.data.example_ids import assign_ids
from reclaim.data.pools.text_pool import pack


@dataclass(frozen=True)
class WikitextLMParams:
    train_split: str = "valid"
    heldout_split: str = "test"
    chunk_words: int = 96
    max_train_chunks: int | None = None
    max_heldout_chunks: int | None = None

    def __post_init__(self) -> None:
        for key in ("train_split", "heldout_split"):
            if getattr(self, key) not in ("valid", "test"):
                raise ValueError(f"{key}: unknown split {getattr(self, key)!r} (valid, test)")
        if self.train_split == self.heldout_split:
            raise ValueError("train_split and heldout_split must differ (held-out text is never trained on)")
        if self.chunk_words < 4:
            raise ValueError(f"chunk_words must be >= 4, got {self.chunk_words}")
        for key in ("max_train_chunks", "max_heldout_chunks"):
            v = getattr(self, key)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{key} must be an integer >= 1 or null, got {v!r}")


class WikitextLM:
    Params = WikitextLMParams
    outputs = ("pool", "heldout")

    def glue_sources(self, p: WikitextLMParams) -> list[tuple[str, str]]:
        return []

    def wikitext_splits(self, p: WikitextLMParams) -> list[str]:
        return [p.train_split, p.heldout_split]

    def build(self, p: WikitextLMParams, glue_rows: dict[str, list[dict[str, Any]]],
              wikitext: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
        def chunks(split: str, limit: int | None) -> list[dict[str, Any]]:
            texts = pack([wikitext[split]], p.chunk_words)[:limit]
            rows = [{"text": t, "source": f"wikitext/{split}"} for t in texts]
            assign_ids(rows, [f"wikitext/{split}"], ["text"])
            return rows

        return {"pool": chunks(p.train_split, p.max_train_chunks),
                "heldout": chunks(p.heldout_split, p.max_heldout_chunks)}


BUILDER = WikitextLM()
