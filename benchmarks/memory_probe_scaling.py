"""How the memory probe's numbers and its cost grow with the work it measures.

For BERT-shaped encoders of growing width (hidden 64 ... 384, MiniLM's, 6 layers, vocab
30,522) and growing batch (8 ... 64 sequences of 64 tokens), one full-fine-tuning AdamW step
is probed (reclaim.memory.probe_steps) and timed with and without the live-tensor tracker:

- peak and steady bytes, and activations = peak - steady: activations should grow linearly
  in the batch, parameters (and with them steady bytes) quadratically in the width;
- the tracker's overhead: tracked step time / untracked step time (the dispatch hook runs on
  every operator, so the overhead per op is fixed and its share shrinks as ops get larger).

Random weights (shapes decide bytes); no Hub, no ../shared. Each point is the median of
``--repeats`` step times after a warm-up step.

    .venv/bin/python benchmarks/memory_probe_scaling.py --out benchmarks/results/memory_probe_scaling.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path


def build(hidden: int):  # -> BertForSequenceClassification
    from transformers import BertConfig, BertForSequenceClassification

    heads = max(1, hidden // 32)
    return BertForSequenceClassification(BertConfig(
        vocab_size=30522, hidden_size=hidden, num_hidden_layers=6, num_attention_heads=heads,
        intermediate_size=4 * hidden, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))


def point(hidden: int, batch: int, seq: int, repeats: int) -> dict:
    import torch

    from reclaim.memory import LiveTensorTracker, probe_steps

    torch.manual_seed(0)
    model = build(hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    data = {"input_ids": torch.randint(0, 30522, (batch, seq), generator=g),
            "attention_mask": torch.ones(batch, seq, dtype=torch.long),
            "labels": torch.randint(0, 2, (batch,), generator=g)}

    def step(_: int = 0) -> None:
        model(**data).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    res = probe_steps(model, opt, data, step)
    plain, tracked = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        plain.append(time.perf_counter() - t0)
        tr = LiveTensorTracker()
        with tr:
            t0 = time.perf_counter()
            step()
            tracked.append(time.perf_counter() - t0)
    return {"hidden": hidden, "batch": batch, "seq": seq, "params": res.total_params,
            "peak_mib": res.peak_bytes / 2**20, "steady_mib": res.steady_bytes / 2**20,
            "activations_mib": (res.peak_bytes - res.steady_bytes) / 2**20,
            "step_s": statistics.median(plain), "tracked_step_s": statistics.median(tracked),
            "overhead": statistics.median(tracked) / statistics.median(plain)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 384])
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    rows = [point(h, 32, a.seq, a.repeats) for h in a.widths]
    rows += [point(a.widths[-1], b, a.seq, a.repeats) for b in a.batches if b != 32]
    rows.sort(key=lambda r: (r["hidden"], r["batch"]))
    print(f"{'hidden':>6} {'batch':>5} {'params':>11} {'peak MiB':>9} {'steady':>8} {'activ.':>8} "
          f"{'step s':>7} {'tracked':>8} {'overhead':>8}")
    for r in rows:
        print(f"{r['hidden']:>6} {r['batch']:>5} {r['params']:>11,} {r['peak_mib']:>9.1f} {r['steady_mib']:>8.1f} "
              f"{r['activations_mib']:>8.1f} {r['step_s']:>7.3f} {r['tracked_step_s']:>8.3f} {r['overhead']:>8.2f}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                     "torch": torch.__version__, "threads": a.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
