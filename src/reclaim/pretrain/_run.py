"""The ``pretrain`` rule's job: continue training a model with its pretraining objective on
the selected pool text, log the curve to MLflow as it goes, and write the model directory
and a record (``pretrain.json``) atomically: the directory is renamed into place only once
complete, and the record, Snakemake's marker of a finished job, is written last."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from reclaim.io import read_jsonl, write_json


def _held_out_loss(objective: Any, model: Any, tok: Any, ids: list[list[int]], params: Any, seed: int,
                   device: str) -> float | None:
    """Mean per-token loss on held-out text, with masks from a fixed generator (so before and
    after are measured on the same masked tokens)."""
    import torch

    from reclaim.train import _to

    if not ids:
        return None
    g = torch.Generator().manual_seed(seed + 104729)
    total, count = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(ids), params.batch_size):
            batch = _to(objective.collate(tok, ids[i:i + params.batch_size], params, g), device)
            losses, counts = objective.example_losses(model, batch)
            total += float((losses * counts).sum())
            count += int(counts.sum())
    model.train()
    return total / count if count else None


def _base_record(spec: dict[str, Any]) -> dict[str, Any] | None:
    """What the compress step(s) under the trained model did (method, params), for the claim rows."""
    if not spec.get("init_dir"):
        return None
    path = Path(spec["init_dir"]).parent / "compress.json"
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    out = {k: rec.get(k) for k in ("method", "params", "summary")}
    if spec.get("adapter_dir"):  # the compensation step whose factors start the LoRA
        comp = json.loads((Path(spec["adapter_dir"]).parents[1] / "compress.json").read_text())
        out["compensation"] = {k: comp.get(k) for k in ("method", "params")}
    return out


def run(spec: dict[str, Any], model_json: str, pool: str, subset: str | None, heldout: str | None,
        out_json: str, threads: int | None = None, tracking: Any = None, progress: bool = True) -> dict[str, Any]:
    import torch
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    from reclaim import pretrain, reweight
    from reclaim.data import selection
    from reclaim.models import ResolvedModel
    from reclaim.pretrain._base import resolve
    from reclaim.select._base import canonical, row_text
    from reclaim.train import _to, device_name, pick_device, seed_everything

    t_job = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    params = resolve(spec["params"])
    objective = pretrain.get(params.objective)
    seed = int(spec["seed"])
    device = pick_device("auto")
    base = ResolvedModel(**json.loads(model_json))
    source = base
    if spec.get("init_dir"):  # a model an earlier step wrote (a compressed model), not the packaged one
        source = ResolvedModel("artifact", spec["init_dir"], "local_dir")
        if not Path(spec["init_dir"]).is_dir():
            raise FileNotFoundError(f"pretrain {spec['id']}: the model directory {spec['init_dir']} an earlier "
                                    "step should have written does not exist")

    seed_everything(seed)  # a head the checkpoint lacks (and LoRA's A) is initialised from this seed
    model, tok = objective.load(source)
    lora_modules: list[str] = []
    if spec.get("lora"):
        from reclaim.pretrain import _lora

        model, lora_modules = _lora.wrap(model, _lora.resolve(spec["lora"]), spec.get("adapter_dir"))
    model.to(device)
    rows = canonical(read_jsonl(pool), pool)
    if subset:
        rows = selection.apply(rows, subset, spec.get("weight_mode", "hard"))
    texts = [row_text(r) for r in rows]
    train_ids = objective.encode(tok, texts, params.max_length)
    held = canonical(read_jsonl(heldout), heldout)[: params.eval_examples] if heldout else []
    held_ids = objective.encode(tok, [row_text(r) for r in held], params.max_length)
    total_steps = params.total_steps(len(train_ids))
    hook = reweight.hook(spec.get("reweighting"), objective)

    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=params.lr,
                                  weight_decay=params.weight_decay)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=math.ceil(params.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    before = _held_out_loss(objective, model, tok, held_ids, params, seed, device)

    tracker = None
    if tracking is not None and tracking.uri:
        from reclaim.tracking import Tracker

        tracker = Tracker(tracking.uri, tracking.experiment, run_name=f"pretrain/{spec['id']}",
                          tags=dict(tracking.tags), params=spec, log_every=tracking.log_every)
    masks = torch.Generator().manual_seed(seed + 1)
    losses: list[float] = []
    step, epoch = 0, 0
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(total=total_steps, desc=f"pretrain {spec['id']}", disable=not progress, mininterval=2.0)
    status = "FAILED"
    try:
        while step < total_steps:
            order = torch.randperm(len(train_ids), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
            for i in range(0, len(order), params.batch_size):
                idx = order[i:i + params.batch_size].tolist()
                batch = _to(objective.collate(tok, [train_ids[j] for j in idx], params, masks), device)
                loss = hook.loss(model, batch, step)
                loss.backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise FloatingPointError(f"pretrain {spec['id']}: loss is {value} at step {step}")
                losses.append(value)
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
                if tracker:
                    tracker.log({"pretrain_loss": value, "lr": scheduler.get_last_lr()[0]}, step)
                if step >= total_steps:
                    break
            epoch += 1
        bar.close()
        train_s = time.perf_counter() - t0
        after = _held_out_loss(objective, model, tok, held_ids, params, seed, device)

        out_dir = Path(out_json).parent / "model"
        tmp = out_dir.with_name(f".model.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if spec.get("lora"):  # the factors as a PEFT adapter, the merged model for the evaluators
            from reclaim.pretrain import _lora

            model = _lora.save(model, tmp)
        files = objective.save(model, tok, base, tmp)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
        record = {
            "id": spec["id"], "spec": spec, "params": params.as_dict(), "n_train": len(train_ids),
            "n_heldout": len(held_ids), "steps": step, "losses": losses,
            "heldout_loss_before": before, "heldout_loss_after": after,
            "heldout_ppl_before": math.exp(before) if before is not None else None,
            "heldout_ppl_after": math.exp(after) if after is not None else None,
            "model_dir": str(out_dir), "files": files, "reweighting": hook.record(),
            "trainable_params": n_trainable, "lora_modules": lora_modules, "base_compress": _base_record(spec),
            "device": device, "device_name": device_name(device), "threads": torch.get_num_threads(),
            "timings": {"train_s": train_s, "job_s": time.perf_counter() - t_job},
        }
        if tracker:
            tracker.finish({"heldout_loss_before": before or float("nan"),
                            "heldout_loss_after": after or float("nan"), "time_train_s": train_s})
        status = "FINISHED"
        write_json(out_json, record)
        return record
    finally:
        if tracker and status != "FINISHED":
            tracker.finish({}, status=status)


def command(a: Any) -> int:
    """``reclaim pretrain``: one job from the rule's arguments."""
    from reclaim.tracking import git_state, tracking_uri
    from reclaim.train import TrackingConfig

    spec = json.loads(a.spec)
    tracking = None
    if a.tracking_uri:
        tags = {"reclaim.rule": "pretrain", "reclaim.job_id": spec["id"], "reclaim.scale": a.scale,
                "reclaim.model": spec["model"]["name"], "reclaim.seed": str(spec["seed"]), **git_state()}
        tracking = TrackingConfig(tracking_uri(a.tracking_uri), a.experiment, a.log_every, tags)
    rec = run(spec, a.model, a.pool, a.subset or None, a.heldout or None, a.out, threads=a.threads,
              tracking=tracking, progress=not a.no_progress)
    print(f"pretrain {spec['id']}: {rec['steps']} steps on {rec['n_train']} examples, held-out loss "
          f"{rec['heldout_loss_before']} -> {rec['heldout_loss_after']} ({rec['timings']['job_s']:.1f}s)")
    return 0
