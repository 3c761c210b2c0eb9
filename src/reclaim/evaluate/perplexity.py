"""WikiText-2 token perplexity, the GPTQ/AWQ/Wanda/FLAP protocol (GPTQ, arXiv 2210.17323,
Sec. 5; reclaim.data.lm_text): raw test split, rows joined with blank lines, tokenised once
without BOS, non-overlapping ``seqlen`` windows with the tail dropped, the first
``n_windows`` of them (all when null), perplexity = exp(mean token NLL). ``bos: true`` puts
the tokenizer's BOS before each window and scores all ``seqlen`` tokens: Gemma-3 conditions on
BOS, and without it its dequantized Q4_K_M scores 157.4 instead of 61.4 on the first 16 x 512
test windows (measured here); the GPTQ protocol's models (LLaMA, OPT) are scored without it.

The model is the step before's model directory (a compressed, pretrained or trained model)
or, with none, the arm's own model (the uncompressed reference). Each window's mean NLL is
kept, so a claim gets paired bootstrap errors over windows; the protocol (seqlen, windows,
tokens, BOS policy, text hash) is part of every result.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reclaim.select._base import ModelContext

MODEL_ARTIFACTS = ("compressed", "pretrained")  # upstream markers whose sibling model/ is a model


@dataclass(frozen=True)
class PerplexityParams:
    seqlen: int = 2048
    n_windows: int | None = None
    split: str = "test"
    batch_size: int = 1
    bos: bool = False   # prepend the tokenizer's BOS to every window (Gemma needs it); all seqlen tokens scored

    def __post_init__(self) -> None:
        if not isinstance(self.seqlen, int) or self.seqlen < 2:
            raise ValueError(f"seqlen must be an integer >= 2, got {self.seqlen!r}")
        if self.n_windows is not None and (not isinstance(self.n_windows, int) or self.n_windows < 1):
            raise ValueError(f"n_windows must be an integer >= 1 or null, got {self.n_windows!r}")
        if self.split not in ("test", "valid"):
            raise ValueError(f"split: unknown {self.split!r} (test, valid)")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not isinstance(self.bos, bool):
            raise ValueError(f"bos must be true or false, got {self.bos!r}")


def window_nll(model: Any, windows: Any, batch_size: int = 1, progress: bool = True) -> list[float]:
    """Mean next-token NLL of each window (seqlen - 1 predicted tokens each)."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    out: list[float] = []
    with torch.inference_mode():
        for i in tqdm(range(0, windows.shape[0], batch_size), desc="perplexity", disable=not progress):
            ids = windows[i:i + batch_size]
            logits = model(input_ids=ids, use_cache=False).logits.float()
            nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                  reduction="none").view(ids.shape[0], -1)
            out += nll.mean(dim=1).tolist()
    return out


class Perplexity:
    Params = PerplexityParams
    inputs: tuple[str, ...] = ()
    optional_inputs = MODEL_ARTIFACTS
    needs_model = True

    def make_params(self, raw: dict[str, Any] | None) -> PerplexityParams:
        from reclaim.registry import make_params

        return make_params(PerplexityParams, raw)

    def data_inputs(self, params: PerplexityParams) -> dict[str, str]:
        from reclaim.data.lm_text import prepared_path

        return {"text": prepared_path(params.split)}

    def evaluate(self, inputs: dict[str, str], params: PerplexityParams, model: ModelContext) -> dict[str, Any]:
        import torch
        import transformers

        from reclaim.data import lm_text
        from reclaim.io import sha256_file
        from reclaim.models import ResolvedModel, load_pretrained, load_tokenizer

        if model.threads:
            torch.set_num_threads(model.threads)
        artifact = next((inputs[k] for k in MODEL_ARTIFACTS if k in inputs), None)
        resolved = (ResolvedModel("artifact", str(Path(artifact).parent / "model"), "local_dir") if artifact
                    else model.location)
        t0 = time.perf_counter()
        lm = load_pretrained(transformers.AutoModelForCausalLM, resolved, dtype="float32")
        lm.eval()
        tok = load_tokenizer(resolved)
        ids = lm_text.tokenize(tok, lm_text.joined(inputs["text"]))
        wins = lm_text.windows(ids, params.seqlen, params.n_windows)
        if params.bos:  # BOS as the context of each window's first token, which is then scored too
            if tok.bos_token_id is None:
                raise ValueError(f"perplexity bos: the tokenizer of {resolved.location} has no BOS token")
            wins = torch.cat([torch.full((wins.shape[0], 1), tok.bos_token_id, dtype=wins.dtype), wins], dim=1)
        t1 = time.perf_counter()
        nll = window_nll(lm, wins, params.batch_size)
        mean_nll = sum(nll) / len(nll)
        return {"perplexity": math.exp(mean_nll), "mean_nll": mean_nll, "window_nll": nll,
                "protocol": {"text": f"wikitext-2 raw {params.split}", "seqlen": params.seqlen,
                             "n_windows": len(nll), "windows_available": ids.numel() // params.seqlen,
                             "tokens_scored": len(nll) * (params.seqlen - (0 if params.bos else 1)),
                             "text_tokens": int(ids.numel()),
                             "bos": (f"prepended (id {tok.bos_token_id}) to each window; text tokenised once"
                                     if params.bos else "none (tokenised once, no special tokens)"), "tail": "dropped",
                             "text_sha256": sha256_file(inputs["text"])},
                "model": artifact and str(Path(artifact).parent / "model") or resolved.location,
                "time_load_s": t1 - t0, "time_eval_s": time.perf_counter() - t1}


EVALUATOR = Perplexity()
