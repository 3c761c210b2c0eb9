"""The training job: one (model, task, method, hyperparameters, seed).

A plain PyTorch loop rather than ``transformers.Trainer``: adapters hook into it at four
points (apply, optimizer, extra loss, step end) and training strategies (reclaim.optim: LISA,
zeroth-order, GaLore, chunked CE) at four (build the optimizer, step begin, the step itself, the
loss: ``loss_framing``); inputs are
tokenised once and padded per batch, and every step's loss is kept for the convergence verdicts. The job's only declared
output, ``result.json``, is written last and atomically; the adapter is saved beside it.

Crash safety: every ``checkpoint_every`` optimizer steps the full training state goes to
``<job dir>/checkpoint/`` (reclaim.checkpoint); a rerun of the same job resumes from it and
produces the same losses and metrics as an uninterrupted run (CPU, same thread count).
SIGTERM (scheduler cancel, Slurm preemption) finishes the current step, writes a
checkpoint and exits with status 143.
"""

from __future__ import annotations

import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reclaim import adapters, checkpoint, framings, optim, reweight
from reclaim.data import selection
from reclaim.data.selection import subsample
from reclaim.data.tasks import get_task, read_rows
from reclaim.io import write_json
from reclaim.metrics import compute
from reclaim.models import ResolvedModel

ROW_KEYS = ("text_a", "text_b", "label")  # what text framings read from a canonical GLUE row


@dataclass
class TrackingConfig:
    uri: str | None = None  # None: no MLflow run (library use, unit tests)
    experiment: str = "reclaim"
    log_every: int = 10
    tags: dict[str, str] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _to(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class JobTerminated(SystemExit):
    """The job got SIGTERM; exits with 143 like an unhandled SIGTERM, but through ``finally``
    blocks, so the MLflow run is closed as KILLED."""


class _TermHandler:
    """SIGTERM inside the training loop waits for the step to finish (so a checkpoint can be
    written); anywhere else, or a second SIGTERM, stops at once. Main thread only."""

    def __init__(self) -> None:
        self.requested = False
        self.deferring = False
        self._previous: Any = None

    def __enter__(self) -> _TermHandler:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.deferring and not self.requested:
            self.requested = True
            return
        raise JobTerminated(128 + signum)

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def run_job(spec: dict[str, Any], train_path: str | Path, dev_path: str | Path, out: str | Path,
            model_location: ResolvedModel, tracking: TrackingConfig | None = None,
            device: str = "auto", threads: int | None = None, progress: bool = True,
            checkpoint_every: int = 0, subset_path: str | Path | None = None) -> dict[str, Any]:
    """Train and evaluate one job described by ``spec`` (see reclaim.jobs); returns the result.

    ``subset_path``: the selection (``example_id, weight``) a spec with ``selection`` trains on.

    ``checkpoint_every``: optimizer steps between checkpoints (0: none are written). A valid
    checkpoint of this job found at start is resumed whatever the interval.
    """
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0: no checkpoints), got {checkpoint_every}")
    with _TermHandler() as term:
        return _run_job(spec, train_path, dev_path, out, model_location, tracking, device, threads,
                        progress, checkpoint_every, term, subset_path)


def _run_job(spec: dict[str, Any], train_path: str | Path, dev_path: str | Path, out: str | Path,
             model_location: ResolvedModel, tracking: TrackingConfig | None, device: str,
             threads: int | None, progress: bool, checkpoint_every: int,
             term: _TermHandler, subset_path: str | Path | None = None) -> dict[str, Any]:
    import torch
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    t_job = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    device = pick_device(device)
    tcfg, mcfg, dcfg = spec["train"], spec["method"], spec["data"]
    seed = int(spec["seed"])
    task = get_task(spec["task"])
    framing = framings.get(spec["model"]["framing"])
    adapter = adapters.get(mcfg["adapter"])
    params = adapter.make_params(mcfg["params"])
    strategy, sparams = make_strategy(spec)
    framing = strategy.loss_framing(framing, sparams)  # itself, or a loss override (chunked_ce)
    loss_hook = reweight.hook(spec.get("reweighting"), framing)  # the framing's mean loss unless reweighted

    seed_everything(seed)
    t0 = time.perf_counter()
    model, tok = framing.load(model_location, task)
    model.to(device)
    load_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    train_rows = subsample(read_rows(train_path, ROW_KEYS), dcfg["max_train_examples"],
                           dcfg["subsample_seed"])
    sample_weights = None  # the selection's weights in ``loss`` / ``sampler`` mode (reclaim.data.selection)
    if spec.get("selection"):
        if subset_path is None:
            raise ValueError(f"{spec['job_id']}: the spec trains on selection {spec['selection']['id']} "
                             "but no subset file was given")
        mode = spec["selection"]["weight_mode"]
        train_rows, sample_weights = selection.apply_weighted(train_rows, subset_path, mode)
        if mode == "loss":
            loss_hook = selection.WeightedLoss(framing)
    dev_rows = subsample(read_rows(dev_path, ROW_KEYS), dcfg["max_eval_examples"], dcfg["subsample_seed"])
    train_items = framing.encode(tok, task, train_rows, tcfg["max_length"])
    dev_items = framing.encode(tok, task, dev_rows, tcfg["max_length"])
    prep_s = time.perf_counter() - t0

    bs = int(tcfg["batch_size"])
    steps_per_epoch = math.ceil(len(train_items) / bs)
    total_steps = max(1, math.ceil(float(tcfg["epochs"]) * steps_per_epoch))

    def batches(n_examples: int, batch_size: int, generator_seed: int,
                start: int = 0, weighted: bool = False) -> Iterator[dict[str, Any]]:
        """Batches in a seeded order; ``start`` skips batches already trained on (resume);
        ``weighted``: carry the ``loss``-mode selection weights as ``sample_weight``."""
        if sample_weights is not None and spec["selection"]["weight_mode"] == "sampler":
            order = selection.sampled_order(sample_weights, generator_seed)[:n_examples]
        else:
            g = torch.Generator().manual_seed(generator_seed)
            order = torch.randperm(len(train_items), generator=g).tolist()[:n_examples]
        for i in range(start * batch_size, len(order), batch_size):
            idx = order[i:i + batch_size]
            batch = framing.collate(tok, [train_items[j] for j in idx])
            if weighted and sample_weights is not None and spec["selection"]["weight_mode"] == "loss":
                batch["sample_weight"] = torch.tensor([sample_weights[j] for j in idx])
            yield _to(batch, device)

    ctx = adapters._base.AdapterContext(
        loss_fn=framing.loss,
        train_batches=lambda n, b: batches(n, b, seed + 7919),
        total_steps=total_steps, head_modules=framing.head_modules(model), seed=seed, device=device,
    )
    t0 = time.perf_counter()
    model = adapter.apply(model, params, ctx)
    init_s = time.perf_counter() - t0
    trainable, total = adapters._base.count_trainable(model)

    optimizer = strategy.build_optimizer(model, sparams, adapter, params, float(tcfg["lr"]),
                                         float(tcfg["weight_decay"]))
    scheduler = get_scheduler(tcfg["scheduler"], optimizer,
                              num_warmup_steps=math.ceil(float(tcfg["warmup_ratio"]) * total_steps),
                              num_training_steps=total_steps)

    from reclaim.jobs import train_code

    out = Path(out)
    ckpt = checkpoint.checkpoint_dir(out)
    ident = checkpoint.identity(spec, train_path, train_code(spec))
    state = checkpoint.load(ckpt, ident, spec["job_id"], model, optimizer, scheduler, adapter, params)
    resumed_from = state.step if state else None
    if state is None:
        state = checkpoint.TrainState()
    else:
        checkpoint.log(f"{spec['job_id']}: resuming from step {state.step} of {total_steps} ({ckpt})")

    tracker = None
    if tracking is not None and tracking.uri:
        from reclaim.tracking import Tracker

        tags = dict(tracking.tags)
        if resumed_from is not None:
            tags["reclaim.resumed_from_step"] = str(resumed_from)
            if state.mlflow_run_id:
                tags["reclaim.resumed_from_run"] = state.mlflow_run_id
        tracker = Tracker(tracking.uri, tracking.experiment, run_name=spec["job_id"],
                          tags=tags, params=spec, log_every=tracking.log_every)
        if resumed_from is not None:
            _close_interrupted_run(tracker, state.mlflow_run_id)
            for i, (value, lr) in enumerate(zip(state.losses, state.lrs, strict=True), 1):
                tracker.log({"train_loss": value, "lr": lr}, i)  # this run holds the whole curve
        state.mlflow_run_id = tracker.run_id

    def loss_fn(model: Any, batch: dict[str, Any], step: int) -> tuple[Any, Any]:
        loss = loss_hook.loss(model, batch, step)
        extra = adapter.extra_loss(model, params)
        return loss, (loss if extra is None else loss + extra)

    from reclaim.optim._base import StepContext

    step_ctx = StepContext(loss_fn, float(tcfg["max_grad_norm"] or 0.0), seed)
    losses, lrs = state.losses, state.lrs
    status = "FAILED"
    try:
        model.train()
        step, seen, epoch, pos = state.step, state.seen, state.epoch, state.pos
        t0 = time.perf_counter()
        bar = tqdm(total=total_steps, initial=step, desc=spec["job_id"], disable=not progress,
                   mininterval=2.0)
        term.deferring = True
        while step < total_steps:
            for batch in batches(len(train_items), bs, seed * 1000 + epoch, start=pos, weighted=True):
                strategy.on_step_begin(model, optimizer, sparams, step, seed)
                loss = strategy.step(model, batch, optimizer, sparams, step, step_ctx)
                scheduler.step()
                step += 1
                pos += 1
                adapter.on_step_end(model, params, step)
                optimizer.zero_grad(set_to_none=True)
                value = float(loss)
                if not math.isfinite(value):
                    raise FloatingPointError(f"{spec['job_id']}: training loss is {value} at step {step}")
                lr = scheduler.get_last_lr()[0]
                losses.append(value)
                lrs.append(lr)
                seen += batch["labels"].shape[0]
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
                if tracker:
                    tracker.log({"train_loss": value, "lr": lr}, step)
                if step >= total_steps:
                    break
                if (checkpoint_every and step % checkpoint_every == 0) or term.requested:
                    if checkpoint_every:
                        state.step, state.epoch, state.pos, state.seen = step, epoch, pos, seen
                        state.train_s += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        checkpoint.save(ckpt, ident, spec["job_id"], model, optimizer, scheduler,
                                        adapter, params, state)
                    if term.requested:
                        checkpoint.log(f"{spec['job_id']}: SIGTERM at step {step}; "
                                       + ("checkpoint written" if checkpoint_every else
                                          "checkpoints are off, a rerun starts over"))
                        raise JobTerminated(128 + signal.SIGTERM)
            epoch += 1
            pos = 0
        term.deferring = False
        bar.close()
        if device == "cuda":
            torch.cuda.synchronize()
        train_s = state.train_s + time.perf_counter() - t0

        t0 = time.perf_counter()
        model.eval()
        preds: list[float] = []  # class indices, or scores for a regression task (STS-B)
        with torch.inference_mode():
            eb = int(tcfg["eval_batch_size"])
            for i in range(0, len(dev_items), eb):
                batch = _to(framing.collate(tok, dev_items[i:i + eb]), device)
                preds.extend(framing.predict(model, batch).tolist())
        eval_s = time.perf_counter() - t0
        labels = [it["label"] for it in dev_items]
        metrics = compute(task.metrics, preds, labels)

        saved = adapter.save(model, params, out.parent / "adapter")
        timings = {
            "load_s": load_s, "prep_s": prep_s, "init_s": init_s, "train_s": train_s,
            "eval_s": eval_s, "job_s": time.perf_counter() - t_job,
            "train_examples_per_s": seen / train_s if train_s > 0 else float("nan"),
        }
        result = {
            "job_id": spec["job_id"], "spec": spec, "metrics": metrics, "losses": losses,
            "n_train": len(train_items), "n_eval": len(dev_items), "steps": step,
            "examples_seen": seen, "trainable_params": trainable, "total_params": total,
            "device": device, "device_name": device_name(device), "threads": torch.get_num_threads(),
            "timings": timings, "adapter_files": saved, "model_location": model_location.kind,
            "pid": os.getpid(), "resumed_from_step": resumed_from,
            "selection": spec.get("selection"), "reweighting": loss_hook.record(),
            "optimizer": {"name": spec["method"].get("optimizer", {}).get("name", optim.DEFAULT),
                          **strategy.checkpoint_state()},
        }
        if tracker:
            tracker.finish({**{f"eval_{k}": v for k, v in metrics.items()},
                            **{f"time_{k}": v for k, v in timings.items()}})
            result["mlflow_run_id"] = tracker.run_id
        status = "FINISHED"
        write_json(out, result)
        checkpoint.discard(ckpt)  # only now: result.json is complete and in place
        return result
    except JobTerminated:
        status = "KILLED"
        raise
    finally:
        term.deferring = False
        if tracker and status != "FINISHED":
            tracker.finish({}, status=status)


def make_strategy(spec: dict[str, Any]) -> tuple[Any, Any]:
    """The job's training strategy (a fresh instance) and its params; a method without
    ``optimizer`` trains with the adapter's own optimizer (``optim.DEFAULT``)."""
    entry = spec["method"].get("optimizer") or {"name": optim.DEFAULT, "params": {}}
    strategy = optim.get(entry["name"]).fresh()
    return strategy, strategy.make_params(entry.get("params"))


def _close_interrupted_run(tracker: Any, run_id: str | None) -> None:
    """Mark the MLflow run of a killed process (left RUNNING by SIGKILL) as KILLED."""
    if not run_id:
        return
    from reclaim.tracking import _retry

    try:
        run = _retry(lambda: tracker.client.get_run(run_id))
    except Exception as exc:  # a store that lost the run must not block the resume
        checkpoint.log(f"MLflow run {run_id} of the interrupted process not found ({exc})")
        return
    if run.info.status == "RUNNING":
        _retry(lambda: tracker.client.set_terminated(run_id, status="KILLED"))


def device_name(device: str) -> str:
    """What ran the job, in words, for results and tables (GPU model, or CPU model and count)."""

    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    from reclaim.machine import cpu_name

    return cpu_name()
