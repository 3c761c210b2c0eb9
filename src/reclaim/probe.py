"""The memory-probe job: peak and steady memory of one training step of a method, measured
with reclaim.memory's live-tensor tracker, apart from the quality run.

The job builds exactly what the train job builds for the same (model, task, method):
framing, adapter, training strategy, optimizer, loss (reclaim.train's step, not a copy of
it), on one fixed batch of ``batch_size`` training examples padded to ``max_length``
tokens, so the row's "batch x seq" is exact. It also records the peak of one forward pass
under ``no_grad`` on the same batch (the inference memory zeroth-order methods are compared
to), the dtype, the attention implementation and the torch version: memory verdicts compare
ratios measured in the same environment, never bytes across machines.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reclaim.registry import make_params


@dataclass(frozen=True)
class ProbeParams:
    batch_size: int = 16
    max_length: int = 64
    steps: int = 2  # probe steps after the warm-up step; their peaks must be equal

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 2:
            raise ValueError(f"steps must be >= 2 (two probe steps are compared), got {self.steps}")


def resolve(raw: dict[str, Any] | None) -> ProbeParams:
    return make_params(ProbeParams, raw)


def code_modules(spec: dict[str, Any]) -> list[str]:
    """The modules the probe job executes: the train job's (reclaim.jobs.train_modules) and
    the probe itself."""
    from reclaim.jobs import train_modules

    return ["reclaim.probe", "reclaim.memory", *train_modules(spec["train_spec"])]


def pad_to(batch: dict[str, Any], length: int, pad_id: int) -> dict[str, Any]:
    """Pad every (batch, seq) tensor to ``length`` columns: token ids with ``pad_id``, labels
    with -100 (ignored by the loss), masks and type ids with 0."""
    import torch.nn.functional as F

    out = {}
    for k, v in batch.items():
        if v.dim() >= 2 and v.shape[1] < length and k != "pixel_values":
            value = pad_id if k == "input_ids" else -100 if k == "labels" else 0
            v = F.pad(v, (0, length - v.shape[1]), value=value)
        out[k] = v
    return out


def run(spec: dict[str, Any], train_path: str, model_json: str, out: str, threads: int | None = None,
        device: str = "auto") -> dict[str, Any]:
    import torch

    from reclaim import adapters, framings, reweight
    from reclaim.adapters._base import AdapterContext
    from reclaim.data.selection import subsample
    from reclaim.data.tasks import get_task, read_rows
    from reclaim.io import write_json
    from reclaim.memory import inference_peak, probe_steps
    from reclaim.models import ResolvedModel
    from reclaim.optim._base import StepContext
    from reclaim.train import (
        ROW_KEYS,
        _to,
        device_name,
        make_strategy,
        pick_device,
        seed_everything,
    )

    t_job = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    device = pick_device(device)
    p = resolve(spec["probe"])
    train = spec["train_spec"]
    seed = int(train["seed"])
    task = get_task(train["task"])
    framing = framings.get(train["model"]["framing"])
    adapter = adapters.get(train["method"]["adapter"])
    aparams = adapter.make_params(train["method"]["params"])
    strategy, sparams = make_strategy(train)
    framing = strategy.loss_framing(framing, sparams)  # itself, or a loss override (chunked_ce)
    loss_hook = reweight.hook(train.get("reweighting"), framing)

    seed_everything(seed)
    model, tok = framing.load(ResolvedModel(**json.loads(model_json)), task)
    model.to(device)
    rows = subsample(read_rows(train_path, ROW_KEYS), train["data"]["max_train_examples"],
                     train["data"]["subsample_seed"])
    if len(rows) < p.batch_size:
        raise ValueError(f"{train_path}: {len(rows)} training examples, fewer than the probe's batch_size "
                         f"{p.batch_size}")
    items = framing.encode(tok, task, rows[: p.batch_size], p.max_length)
    pad_id = getattr(tok, "pad_token_id", None) or 0
    batch = _to(pad_to(framing.collate(tok, items), p.max_length, pad_id), device)

    def train_batches(n: int, b: int):  # what an adapter's init (LoRA-GA) reads: the probe batch
        for i in range(0, min(n, len(items)), b):
            yield _to(framing.collate(tok, items[i:i + b]), device)

    ctx = AdapterContext(loss_fn=framing.loss, train_batches=train_batches, total_steps=p.steps + 1,
                         head_modules=framing.head_modules(model), seed=seed, device=device)
    model = adapter.apply(model, aparams, ctx)
    tcfg = train["train"]
    optimizer = strategy.build_optimizer(model, sparams, adapter, aparams, float(tcfg["lr"]),
                                         float(tcfg["weight_decay"]))
    model.train()

    def loss_fn(m: Any, b: dict[str, Any], step: int) -> tuple[Any, Any]:
        loss = loss_hook.loss(m, b, step)
        extra = adapter.extra_loss(m, aparams)
        return loss, (loss if extra is None else loss + extra)

    step_ctx = StepContext(loss_fn, float(tcfg["max_grad_norm"] or 0.0), seed)
    step_times: list[float] = []

    def one_step(i: int) -> None:
        t0 = time.perf_counter()
        strategy.on_step_begin(model, optimizer, sparams, i, seed)
        strategy.step(model, batch, optimizer, sparams, i, step_ctx)
        adapter.on_step_end(model, aparams, i + 1)
        optimizer.zero_grad(set_to_none=True)
        step_times.append(time.perf_counter() - t0)

    res = probe_steps(model, optimizer, batch, one_step, lambda: strategy.extra_state(optimizer),
                      n_probe=p.steps, stride=strategy.probe_stride(sparams), equal_peaks=strategy.fixed_trainable,
                      holds_grads=strategy.first_order)
    model.eval()
    inf = inference_peak(model, batch, lambda: framing.loss(model, batch))
    param_dtypes = sorted({str(t.dtype).replace("torch.", "") for t in model.parameters()})
    result = {
        "job_id": spec["id"], "spec": spec, **res.as_dict(), "inference_peak_bytes": inf,
        "peak_over_inference": res.peak_bytes / inf,
        "metric_definition": "peak live tensor bytes of one training step (reclaim.memory)",
        # the paper's own estimate where it counts memory analytically (GaLore: bf16 weights +
        # the projected matrices' states); {} for methods whose papers measured peaks
        "paper_accounting": strategy.paper_accounting(model, optimizer, sparams),
        "batch": {"batch_size": p.batch_size, "max_length": p.max_length,
                  "shape": list(batch["input_ids"].shape) if "input_ids" in batch else None},
        "dtype": param_dtypes[0] if len(param_dtypes) == 1 else param_dtypes,
        "attn_implementation": getattr(getattr(model, "config", None), "_attn_implementation", None),
        "torch": torch.__version__, "device": device, "device_name": device_name(device),
        "threads": torch.get_num_threads(), "optimizer": {"name": (train["method"].get("optimizer") or {}).get(
            "name", "adamw"), **strategy.checkpoint_state()},
        "timings": {"step_s": step_times, "job_s": time.perf_counter() - t_job},
    }
    write_json(out, result)
    return result


def command(a: argparse.Namespace) -> int:
    from reclaim.stage_tracking import tracked

    spec = json.loads(a.spec)
    with tracked(a, "memory_probe", spec["id"], spec) as m:
        res = run(spec, a.train, a.model, a.out, a.threads)
        m.update({k: float(res[k]) for k in ("peak_bytes", "steady_bytes", "opt_state_bytes", "grad_bytes",
                                             "inference_peak_bytes", "trainable_params")})
    mib = 2**20
    print(f"memory_probe {spec['train_spec']['method']['name']}: peak {res['peak_bytes'] / mib:.2f} MiB, "
          f"steady {res['steady_bytes'] / mib:.2f} MiB, optimizer state {res['opt_state_bytes'] / mib:.2f} MiB, "
          f"inference {res['inference_peak_bytes'] / mib:.2f} MiB -> {Path(a.out)}")
    return 0
