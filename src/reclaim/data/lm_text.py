"""WikiText-2 raw as language-model evaluation and calibration text.

The quantization and pruning papers' protocol (GPTQ, arXiv 2210.17323, Sec. 5; AWQ and Wanda
follow its code): the raw test split's lines joined with blank lines (``"\\n\\n".join`` over
the dataset's rows), tokenised once with no BOS, cut into non-overlapping ``seqlen``-token
windows with the tail dropped; perplexity is exp of the mean token NLL. Calibration windows
come from another split (valid here: the train split is not in the local data), drawn with a
seeded generator.

``prepare_wikitext`` writes ``data/wikitext/{split}.txt`` once from a local directory (the
classic ``{test,valid,train}.txt`` files) or the Hub, so every job reads the same bytes and
the files' hashes enter the results.
"""

from __future__ import annotations

from pathlib import Path

SPLITS = ("test", "valid", "train")
HUB_SPLITS = {"test": "test", "valid": "validation", "train": "train"}


def prepared_path(split: str) -> str:
    return f"data/wikitext/{split}.txt"


def read_split(directory: str, split: str, hub: str = "Salesforce/wikitext") -> list[str]:
    """The split's rows (lines with their newline), from ``directory`` or the Hub."""
    if split not in SPLITS:
        raise ValueError(f"wikitext: unknown split {split!r} ({', '.join(SPLITS)})")
    if directory:
        path = Path(directory) / f"{split}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"wikitext: {path} not found (data.wikitext_dir / WIKITEXT_DIR)")
        return path.read_text(encoding="utf-8").splitlines(keepends=True)
    import datasets  # the Hub path (honours HF_HUB_OFFLINE=1)

    return list(datasets.load_dataset(hub, "wikitext-2-raw-v1", split=HUB_SPLITS[split])["text"])


def joined(path: str | Path) -> str:
    """The evaluation text: the prepared split's rows joined with blank lines."""
    return "\n\n".join(Path(path).read_text(encoding="utf-8").splitlines(keepends=True))


def tokenize(tokenizer, text: str):  # type: ignore[no-untyped-def]
    """Token ids (1-D LongTensor) of the whole text, tokenised once, without special tokens."""
    import torch

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def windows(ids, seqlen: int, n_windows: int | None = None):  # type: ignore[no-untyped-def]
    """Non-overlapping ``seqlen`` windows (n, seqlen), tail dropped, the first ``n_windows``."""
    n = ids.numel() // seqlen
    if n == 0:
        raise ValueError(f"wikitext: {ids.numel()} tokens, fewer than one window of {seqlen}")
    if n_windows is not None:
        n = min(n, n_windows)
    return ids[: n * seqlen].view(n, seqlen)


def calibration_windows(ids, n_samples: int, seqlen: int, seed: int):  # type: ignore[no-untyped-def]
    """``n_samples`` random ``seqlen`` windows (GPTQ's sampling: uniform start positions), each
    (1, seqlen), from a generator seeded with ``seed``."""
    import torch

    if ids.numel() <= seqlen:
        raise ValueError(f"calibration: {ids.numel()} tokens, need more than seqlen {seqlen}")
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - seqlen, (n_samples,), generator=g)
    return [ids[s: s + seqlen].unsqueeze(0) for s in starts.tolist()]
