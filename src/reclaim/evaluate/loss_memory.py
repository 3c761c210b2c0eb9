"""Memory of the loss operation itself, plain vs chunked cross-entropy (CCE's Table 1
protocol: Wijmans et al., arXiv 2411.09009; the reference notes, sections 1.5, 2.3 and 4.7).

The subject model turns ``n_tokens`` WikiText-2 tokens (contiguous ``seqlen`` windows; each
position's target is the next token of the text) into its real final hidden states E (N x D);
its LM head weight is C (V x D). Both losses then run on the same leaves, four times in all:

- plain: logits E C^T materialised, ``F.cross_entropy`` (the baseline);
- chunked: reclaim.optim._linear_ce, one N x ``chunk`` block at a time;

each as forward only and as forward + backward. The number per run is the extra live tensor
bytes above E, C and the targets (reclaim.memory's tracker: deterministic on CPU, where torch
has no allocator statistics; on CUDA the ``max_memory_allocated`` delta is kept beside it),
gradients of E and C included, as CCE's benchmark counts them. Beside each: the analytic
prediction from shapes (``predicted_extra_bytes``), |delta loss|, max |delta dE|,
max |delta dC| against the plain loss, and wall times of ``repeats`` interleaved forward +
backward runs (reported; a CPU time decides nothing). Both fp32 losses are also compared
with the plain loss in float64 (``reference_fp64``): on real hidden states (logits up to
~35) the plain fp32 loss is itself ~1e-5 off in the loss and in dC, and the chunked one is
closer to float64 than it.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reclaim.select._base import ModelContext


@dataclass(frozen=True)
class LossMemoryParams:
    n_tokens: int = 8192   # N: CCE Table 1's token count
    seqlen: int = 512      # window the hidden states are computed in (n_tokens must be a multiple)
    chunk: int = 4096      # vocabulary entries per block of the chunked loss
    split: str = "test"
    repeats: int = 1       # timed forward + backward runs per loss (interleaved), for the time ratio

    def __post_init__(self) -> None:
        from reclaim.optim._linear_ce import check_chunk

        for name in ("n_tokens", "seqlen", "repeats"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.n_tokens % self.seqlen:
            raise ValueError(f"n_tokens {self.n_tokens} must be a multiple of seqlen {self.seqlen}")
        check_chunk(self.chunk)
        if self.split not in ("test", "valid"):
            raise ValueError(f"split: unknown {self.split!r} (test, valid)")


def hidden_states(lm: Any, ids: Any, n_tokens: int, seqlen: int) -> tuple[Any, Any, Any]:
    """(E (N, D), C (V, D), targets (N,)): the model's final hidden states over the first
    ``n_tokens`` tokens in ``seqlen`` windows, its head weight, and the next token of each."""
    import torch

    from reclaim.framings._base import lm_head_inputs

    if ids.numel() < n_tokens + 1:
        raise ValueError(f"wikitext: {ids.numel()} tokens, need n_tokens + 1 = {n_tokens + 1}")
    windows = ids[:n_tokens].view(-1, seqlen)
    parts = []
    with torch.no_grad():
        for w in windows:
            hidden, weight = lm_head_inputs(lm, w.unsqueeze(0), torch.ones_like(w).unsqueeze(0))
            parts.append(hidden[0].float())
    return torch.cat(parts), weight.detach().float().clone(), ids[1:n_tokens + 1].clone()


def measure(fn: Any, e: Any, c: Any, y: Any, backward: bool) -> dict[str, Any]:
    """Extra live bytes (and, on CUDA, the allocator's peak delta) of one loss call, with
    its backward pass when asked; the loss, the gradients and the wall time."""
    import torch

    from reclaim.memory import LiveTensorTracker

    e = e.detach().requires_grad_(True)
    c = c.detach().requires_grad_(True)
    gc.collect()
    cuda = e.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    tracker = LiveTensorTracker(e.device.type)
    with tracker:
        tracker.track(e, c, y)
        base = tracker.cur
        tracker.reset_peak()
        t0 = time.perf_counter()
        loss = fn(e, c, y)
        if backward:
            loss.backward()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    out = {"bytes": tracker.peak - base, "seconds": seconds, "loss": float(loss.detach())}
    if cuda:
        out["cuda_bytes"] = int(torch.cuda.max_memory_allocated() - before)
    if backward:
        out["de"], out["dc"] = e.grad, c.grad
    return out


def reference_fp64(e: Any, c: Any, y: Any, rows: int = 256) -> tuple[float, Any, Any]:
    """(loss, dE, dC) of the plain loss in float64, computed ``rows`` tokens at a time (so
    the N x V float64 logits never exist at once): what both fp32 losses are judged against,
    since the plain fp32 loss has rounding error of its own."""
    import torch.nn.functional as F

    e64 = e.detach().double().requires_grad_(True)
    c64 = c.detach().double().requires_grad_(True)
    n = int((y != -100).sum())
    total = 0.0
    for i in range(0, e64.shape[0], rows):
        part = F.cross_entropy(e64[i:i + rows] @ c64.t(), y[i:i + rows], ignore_index=-100, reduction="sum") / n
        part.backward()
        total += float(part)
    return total, e64.grad, c64.grad


class LossMemory:
    Params = LossMemoryParams
    inputs: tuple[str, ...] = ()
    needs_model = True  # the scale's ``subject``: its hidden states and head weight

    def make_params(self, raw: dict[str, Any] | None) -> LossMemoryParams:
        from reclaim.registry import make_params

        return make_params(LossMemoryParams, raw)

    def code_modules(self, params: LossMemoryParams) -> list[str]:
        return ["reclaim.optim._linear_ce", "reclaim.memory"]

    def data_inputs(self, params: LossMemoryParams) -> dict[str, str]:
        from reclaim.data.lm_text import prepared_path

        return {"text": prepared_path(params.split)}

    def evaluate(self, inputs: dict[str, str], params: LossMemoryParams, model: ModelContext) -> dict[str, Any]:
        import torch
        import transformers

        from reclaim.data import lm_text
        from reclaim.io import sha256_file
        from reclaim.models import load_pretrained, load_tokenizer
        from reclaim.optim._linear_ce import (
            chunked_linear_cross_entropy,
            plain_linear_cross_entropy,
            predicted_extra_bytes,
        )
        from reclaim.train import device_name, pick_device

        if model.threads:
            torch.set_num_threads(model.threads)
        device = pick_device("auto")
        t0 = time.perf_counter()
        lm = load_pretrained(transformers.AutoModelForCausalLM, model.location, dtype="float32").eval()
        tok = load_tokenizer(model.location)
        ids = lm_text.tokenize(tok, lm_text.joined(inputs["text"]))
        lm.to(device)
        e, c, y = hidden_states(lm, ids.to(device), params.n_tokens, params.seqlen)
        del lm
        t_hidden = time.perf_counter() - t0
        n, d = e.shape
        v = c.shape[0]
        losses = {"plain": plain_linear_cross_entropy,
                  "chunked": lambda e_, c_, y_: chunked_linear_cross_entropy(e_, c_, y_, params.chunk)}
        runs: dict[str, dict[str, Any]] = {}
        times: dict[str, list[float]] = {k: [] for k in losses}
        for name, fn in losses.items():
            runs[f"{name}_forward"] = measure(fn, e, c, y, backward=False)
        for i in range(params.repeats):  # interleaved, so drift hits both alike
            for name, fn in losses.items():
                r = measure(fn, e, c, y, backward=True)
                times[name].append(r["seconds"])
                if i == 0:
                    runs[f"{name}_forward_backward"] = r
                elif r["bytes"] != runs[f"{name}_forward_backward"]["bytes"]:
                    raise RuntimeError(f"{name}: extra bytes differ between repeats ({r['bytes']} vs "
                                       f"{runs[f'{name}_forward_backward']['bytes']})")
        p, ch = runs["plain_forward_backward"], runs["chunked_forward_backward"]
        ref_loss, ref_de, ref_dc = reference_fp64(e, c, y)
        errors = {f"err_{name}_{q}": v_ for name, r in (("plain", p), ("chunked", ch)) for q, v_ in (
            ("loss", abs(r["loss"] - ref_loss)), ("de", float((r["de"].double() - ref_de).abs().max())),
            ("dc", float((r["dc"].double() - ref_dc).abs().max())))}
        predicted = predicted_extra_bytes(n, v, d, params.chunk, e.element_size())
        out: dict[str, Any] = {"n_tokens": n, "vocab": v, "hidden": d, "chunk": params.chunk,
                               "dtype": str(e.dtype).replace("torch.", "")}
        for key, r in runs.items():
            out[f"{key}_bytes"] = r["bytes"]
            out[f"predicted_{key}_bytes"] = predicted[key]
            if "cuda_bytes" in r:
                out[f"{key}_cuda_bytes"] = r["cuda_bytes"]
        out.update({
            "loss_plain": p["loss"], "loss_chunked": ch["loss"],
            "abs_delta_loss": abs(p["loss"] - ch["loss"]),
            "abs_delta_loss_forward": abs(runs["plain_forward"]["loss"] - runs["chunked_forward"]["loss"]),
            "max_abs_delta_de": float((p["de"] - ch["de"]).abs().max()),
            "max_abs_delta_dc": float((p["dc"] - ch["dc"]).abs().max()),
            "max_abs_de": float(p["de"].abs().max()), "max_abs_dc": float(p["dc"].abs().max()),
            "loss_fp64": ref_loss, **errors,  # each fp32 loss against the float64 reference
            "time_plain_s": times["plain"], "time_chunked_s": times["chunked"],
            "device": device, "device_name": device_name(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "time_hidden_s": t_hidden,
            "protocol": {"text": f"wikitext-2 raw {params.split}", "tokens": n, "seqlen": params.seqlen,
                         "windows": n // params.seqlen, "targets": "next token of the text",
                         "text_sha256": sha256_file(inputs["text"]),
                         "metric": "extra live tensor bytes above E, C, targets (reclaim.memory), "
                                   "gradients included"},
            "model": str(Path(model.location.location)),
        })
        return out


EVALUATOR = LossMemory()
