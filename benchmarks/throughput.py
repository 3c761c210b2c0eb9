"""Training throughput of reclaim's trainer vs a plain ``transformers.Trainer`` + PEFT harness.

Both harnesses train the same model on the same rows, in the same batch order, with the
same batch size, max length, optimizer (torch AdamW), cosine schedule with warmup, weight
decay, gradient clipping, LoRA config, dynamic padding, number of optimizer steps, threads
and device. Each measurement runs in a fresh Python process (so neither harness inherits
the other's warm caches), the two harnesses alternate, and the median of ``--repeats`` runs
is reported. See benchmarks/README.md for what is timed and how the ratio is defined.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/throughput.py --model minilm --task sst2 \\
        --examples 512 --threads 2 --device cpu
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC_DIR = REPO_ROOT / "src"
if str(SRC_DIR) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(SRC_DIR))

CLAIM = "lora_ga_glue"  # the claim whose scale settings the spec is built from
SCALE = "smoke"
HEADS = ["classifier"]  # encoder_cls head modules for BERT-style models (reclaim's framing)
HARNESSES = ("reclaim", "hf")

LOOP_DEF = (
    "examples actually trained on / wall time of the training loop only: reclaim = "
    "result['timings']['train_examples_per_s'] (first step to last step, cuda-synchronised); "
    "hf = a TrainerCallback timing on_train_begin -> on_train_end (cuda-synchronised), which "
    "is the span transformers' own train_samples_per_second times, after optimizer, "
    "scheduler and dataloader setup"
)
CALL_DEF = (
    "hf only: examples / wall time of the whole trainer.train() call (adds dataloader, "
    "optimizer, scheduler and accelerate setup and the end-of-training bookkeeping)"
)


# ---------------------------------------------------------------------------------------------
# Shared helpers (parent and workers)
# ---------------------------------------------------------------------------------------------


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _subsampled_rows(job: dict[str, Any]) -> list[dict[str, Any]]:
    from reclaim.io import read_jsonl
    from reclaim.train import subsample

    data = job["spec"]["data"]
    return subsample(read_jsonl(job["train_path"]), data["max_train_examples"],
                     data["subsample_seed"])


def _reclaim_order(n: int, seed: int) -> list[int]:
    """The permutation reclaim's trainer uses for epoch 0 (src/reclaim/train.py, batches())."""
    import torch

    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000)).tolist()


def _load_hf(job: dict[str, Any]) -> tuple[Any, Any]:
    """Tokenizer and sequence-classification model with plain transformers calls."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from reclaim.data.glue import get_task

    loc = job["model"]["location"]
    tok = AutoTokenizer.from_pretrained(loc)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    model = AutoModelForSequenceClassification.from_pretrained(
        loc, num_labels=get_task(job["spec"]["task"]).num_labels, ignore_mismatched_sizes=True,
        trust_remote_code=False,
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok


def _lora_config(model: Any, job: dict[str, Any]) -> Any:
    from peft import LoraConfig

    from reclaim.adapters._lora import linear_targets

    p = job["spec"]["method"]["params"]
    return LoraConfig(
        task_type="SEQ_CLS", r=int(p["r"]), lora_alpha=float(p["alpha"]),
        lora_dropout=float(p["dropout"]),
        target_modules=linear_targets(model, p["target_modules"], HEADS),
        modules_to_save=list(HEADS), init_lora_weights=True, use_rslora=False, use_dora=False,
    )


def _wrap(model: Any, job: dict[str, Any]) -> Any:
    """The HF harness's adapter: PEFT LoRA, or every parameter trainable for full_ft."""
    if job["spec"]["method"]["adapter"] == "lora":
        from peft import get_peft_model

        return get_peft_model(model, _lora_config(model, job))
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _encode(tok: Any, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
    items = []
    for r in rows:
        enc = tok(r["text_a"], r["text_b"], truncation=True, max_length=max_length)
        item = {k: list(v) for k, v in enc.items()}
        item["label"] = int(r["label"])
        items.append(item)
    return items


def _warm_up(job: dict[str, Any]) -> float:
    """Untimed forward/backward/AdamW steps on a throwaway copy of the model, run the same way
    in both workers: CUDA context, cuBLAS handles, lazily loaded kernels and oneDNN primitives
    are then initialised before the timed loop, so it measures steady state."""
    steps = int(job["warmup_steps"])
    if steps <= 0:
        return 0.0
    import gc

    import torch
    from transformers import DataCollatorWithPadding

    t0 = time.perf_counter()
    device, tcfg = job["device"], job["spec"]["train"]
    model, tok = _load_hf(job)
    model = _wrap(model, job).to(device)
    model.train()
    rows = _subsampled_rows(job)[: int(tcfg["batch_size"])]
    batch = DataCollatorWithPadding(tok)(_encode(tok, rows, int(tcfg["max_length"])))
    batch = {k: v.to(device) for k, v in batch.items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)
    for _ in range(steps):
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    del model, opt, batch
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# Workers (one fresh process per measurement)
# ---------------------------------------------------------------------------------------------


def worker_reclaim(job: dict[str, Any], scratch: Path) -> dict[str, Any]:
    import torch

    from reclaim import framings
    from reclaim.data.glue import get_task
    from reclaim.models import ResolvedModel, load_tokenizer
    from reclaim.train import run_job

    torch.set_num_threads(int(job["threads"]))
    warm_s = _warm_up(job)
    model = ResolvedModel(**job["model"])
    res = run_job(job["spec"], job["train_path"], job["dev_path"], scratch / "run" / "result.json",
                  model, tracking=None, device=job["device"], threads=int(job["threads"]),
                  progress=False)
    t = res["timings"]
    # Padded tokens per epoch-0 batch in reclaim's order (a check that HF sees the same shapes).
    tcfg = job["spec"]["train"]
    items = framings.get(job["spec"]["model"]["framing"]).encode(
        load_tokenizer(model), get_task(job["spec"]["task"]), _subsampled_rows(job),
        int(tcfg["max_length"]))
    order, bs = _reclaim_order(len(items), int(job["spec"]["seed"])), int(tcfg["batch_size"])
    padded = sum(len(chunk) * max(len(items[j]["input_ids"]) for j in chunk)
                 for chunk in (order[i:i + bs] for i in range(0, len(order), bs)))
    return {
        "examples_per_s": t["train_examples_per_s"], "train_s": t["train_s"],
        "load_s": t["load_s"], "prep_s": t["prep_s"], "init_s": t["init_s"],
        "eval_s": t["eval_s"], "job_s": t["job_s"], "warmup_s": warm_s,
        "steps": res["steps"], "examples_seen": res["examples_seen"], "n_train": res["n_train"],
        "trainable_params": res["trainable_params"], "total_params": res["total_params"],
        "threads_used": res["threads"], "first_loss": res["losses"][0],
        "mean_loss": statistics.fmean(res["losses"]), "padded_tokens_epoch0": padded,
        "eval_metrics": res["metrics"],
    }


def worker_hf(job: dict[str, Any], scratch: Path) -> dict[str, Any]:
    import torch
    from transformers import (
        DataCollatorWithPadding,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from reclaim.train import seed_everything

    torch.set_num_threads(int(job["threads"]))
    warm_s = _warm_up(job)
    device, spec = job["device"], job["spec"]
    tcfg, seed = spec["train"], int(spec["seed"])
    if tcfg["optimizer"] != "adamw":
        raise SystemExit(f"optimizer {tcfg['optimizer']!r}: only adamw is mirrored")

    seed_everything(seed)  # as reclaim does right before loading (fresh head init)
    t0 = time.perf_counter()
    model, tok = _load_hf(job)
    load_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    rows = _subsampled_rows(job)
    items = _encode(tok, rows, int(tcfg["max_length"]))
    # reclaim's epoch-0 order; the sequential sampler then yields reclaim's exact batches.
    ordered = [items[j] for j in _reclaim_order(len(items), seed)]
    prep_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = _wrap(model, job)
    init_s = time.perf_counter() - t0
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    bs = int(tcfg["batch_size"])
    steps = max(1, math.ceil(float(tcfg["epochs"]) * math.ceil(len(items) / bs)))
    warmup = math.ceil(float(tcfg["warmup_ratio"]) * steps)  # what reclaim computes

    class CountingCollator:
        def __init__(self) -> None:
            self.inner = DataCollatorWithPadding(tok)
            self.examples = 0
            self.padded = 0

        def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
            batch = self.inner(features)
            self.examples += batch["input_ids"].shape[0]
            self.padded += batch["input_ids"].numel()
            return batch

    class LoopTimer(TrainerCallback):
        def __init__(self) -> None:
            self.t_begin = self.t_end = 0.0
            self.losses: list[float] = []
            self.threads = 0

        def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            _sync(device)
            self.t_begin = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

        def on_train_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            _sync(device)
            self.t_end = time.perf_counter()
            self.threads = torch.get_num_threads()

    # train_sampling_strategy is a transformers 5 field; older versions get the same
    # SequentialSampler through the one-method Trainer subclass below.
    trainer_cls, extra = Trainer, {}
    if "train_sampling_strategy" in TrainingArguments.__dataclass_fields__:
        extra["train_sampling_strategy"] = "sequential"
        sampler_via = "train_sampling_strategy='sequential'"
    else:
        from torch.utils.data import SequentialSampler

        class SequentialTrainer(Trainer):
            def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
                return SequentialSampler(self.train_dataset)

        trainer_cls, sampler_via = SequentialTrainer, "Trainer._get_train_sampler override"

    collator, timer = CountingCollator(), LoopTimer()
    args = TrainingArguments(
        output_dir=str(scratch / "hf_out"),
        per_device_train_batch_size=bs,
        max_steps=steps,
        learning_rate=float(tcfg["lr"]),
        lr_scheduler_type=tcfg["scheduler"],
        warmup_steps=warmup,  # transformers 5: int = steps (warmup_ratio was folded into this)
        weight_decay=float(tcfg["weight_decay"]),
        max_grad_norm=float(tcfg["max_grad_norm"] or 0.0),
        optim="adamw_torch",  # torch.optim.AdamW like reclaim (the 5.x default is the fused one)
        logging_strategy="steps",
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        dataloader_num_workers=0,
        dataloader_pin_memory=device == "cuda",
        disable_tqdm=True,
        use_cpu=device == "cpu",
        seed=seed,
        remove_unused_columns=False,
        **extra,
    )
    trainer = trainer_cls(model=model, args=args, train_dataset=ordered, data_collator=collator,
                          callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # no per-step dict printing (reclaim prints none)
    _sync(device)
    t0 = time.perf_counter()
    out = trainer.train()
    _sync(device)
    call_s = time.perf_counter() - t0
    loop_s = timer.t_end - timer.t_begin
    seen = collator.examples
    return {
        "examples_per_s": seen / loop_s, "train_s": loop_s,
        "train_call_s": call_s, "train_call_examples_per_s": seen / call_s,
        "hf_train_samples_per_second": out.metrics.get("train_samples_per_second"),
        "load_s": load_s, "prep_s": prep_s, "init_s": init_s, "warmup_s": warm_s,
        "steps": trainer.state.global_step, "examples_seen": seen, "n_train": len(items),
        "warmup_steps_sched": warmup, "trainable_params": trainable, "total_params": total,
        "threads_used": timer.threads, "first_loss": timer.losses[0] if timer.losses else None,
        "mean_loss": out.training_loss, "padded_tokens_epoch0": collator.padded,
        "model_device": str(next(model.parameters()).device), "sequential_sampler": sampler_via,
    }


def run_worker(which: str, job_path: Path, out_path: Path) -> None:
    job = json.loads(job_path.read_text())
    with tempfile.TemporaryDirectory(prefix=f"bench-{which}-") as scratch:
        fn = worker_reclaim if which == "reclaim" else worker_hf
        result = fn(job, Path(scratch))
    out_path.write_text(json.dumps(result, indent=2, default=str))


# ---------------------------------------------------------------------------------------------
# Parent: setup, alternation, overhead, report
# ---------------------------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC_DIR), env.get("PYTHONPATH")) if p)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _spawn(which: str, job_path: Path, tmp: Path, idx: int) -> dict[str, Any]:
    out = tmp / f"{which}_{idx}.json"
    log = tmp / f"{which}_{idx}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", which,
           "--job", str(job_path), "--worker-out", str(out)]
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_child_env()).returncode
    wall = time.perf_counter() - t0
    if rc != 0 or not out.is_file():
        tail = log.read_text(errors="replace")[-4000:]
        raise SystemExit(f"{which} worker (repeat {idx}) failed with exit code {rc}:\n{tail}")
    res = json.loads(out.read_text())
    res["process_wall_s"] = wall
    warned = [ln.strip() for ln in log.read_text(errors="replace").splitlines()
              if "warn" in ln.lower()]
    res["log_warnings"] = warned[:10]
    return res


def _time_cmd(cmd: list[str], repeats: int) -> dict[str, Any]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            return {"skipped": True, "reason": (proc.stderr or proc.stdout).strip()[-500:],
                    "command": " ".join(cmd[1:])}
    return {"median_s": statistics.median(times), "all_s": times, "command": " ".join(cmd[1:])}


def measure_overhead(repeats: int, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    import importlib.util

    py = sys.executable
    core = "import reclaim.train, torch, transformers, peft"
    res: dict[str, Any] = {
        "python_start": _time_cmd([py, "-c", "pass"], repeats),
        "reclaim_cli_help": _time_cmd([py, "-m", "reclaim", "--help"], repeats),
        "import_core": _time_cmd([py, "-c", core], repeats),
    }
    if importlib.util.find_spec("mlflow") is None:
        res["import_with_mlflow"] = {"skipped": True, "reason": "mlflow is not installed here"}
    else:
        res["import_with_mlflow"] = _time_cmd([py, "-c", core + ", mlflow"], repeats)
    for h in HARNESSES:
        loads = [r["load_s"] for r in runs[h]]
        res[f"model_load_{h}"] = {"median_s": statistics.median(loads), "all_s": loads,
                                  "source": "worker timings load_s (from_pretrained + .to(device)"
                                  if h == "reclaim" else "worker from_pretrained (tokenizer+model)"}
    return res


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "peft": peft.__version__}
    try:
        import accelerate

        out["accelerate"] = accelerate.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
    return out


def prepare(a: argparse.Namespace, tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model, data and the reclaim job spec; returns (job, setup description)."""
    from reclaim.config import load_yaml
    from reclaim.data.glue import missing_files, read_classic
    from reclaim.io import write_jsonl
    from reclaim.jobs import make_spec
    from reclaim.models import resolve

    cfg = load_yaml(REPO_ROOT / "params.yaml")
    if a.model == "tiny-bert":
        from reclaim.testing import write_tiny_model

        model_dir = write_tiny_model(tmp / "tiny-bert", "bert", seed=a.seed)
        entry = {"framing": "encoder_cls", "local_dir": str(model_dir)}
    else:
        entry = dict(cfg["models"][a.model])
        if a.model_dir:
            entry["local_dir"] = a.model_dir
    cfg["models"][a.model] = entry
    resolved = resolve(a.model, entry)

    glue_dir = Path(a.glue_dir) if a.glue_dir else None
    if glue_dir is not None and glue_dir.is_dir() and not missing_files(glue_dir, a.task):
        glue_source = str(glue_dir.resolve())
    else:
        from reclaim.testing import write_glue_fixture

        glue_dir = write_glue_fixture(tmp / "glue", [a.task], n_train=a.examples,
                                      n_dev=a.max_eval, seed=a.seed)
        glue_source = f"generated fixture (reclaim.testing; {a.glue_dir} has no {a.task})"
    train_path, dev_path = tmp / "train.jsonl", tmp / "dev.jsonl"
    train_rows = read_classic(glue_dir, a.task, "train")
    write_jsonl(train_path, train_rows)
    write_jsonl(dev_path, read_classic(glue_dir, a.task, "dev"))

    scale = cfg["claims"][CLAIM]["scales"][SCALE]
    train = dict(scale.get("train", {}))
    train.update(batch_size=a.batch_size, max_length=a.max_length)
    if a.lr is not None:
        train["lr"] = a.lr
    scale.update(max_train_examples=a.examples, max_eval_examples=a.max_eval, train=train)
    spec = make_spec(cfg, CLAIM, a.model, a.task, a.method, a.seed, scale=SCALE)

    job = {"spec": spec, "train_path": str(train_path), "dev_path": str(dev_path),
           "model": {"name": resolved.name, "location": resolved.location, "kind": resolved.kind,
                     "gguf_file": resolved.gguf_file},
           "device": a.device, "threads": a.threads, "warmup_steps": a.warmup_steps}
    t = spec["train"]
    n = min(a.examples, len(train_rows))
    steps = max(1, math.ceil(float(t["epochs"]) * math.ceil(n / int(t["batch_size"]))))
    setup = {
        "model": a.model, "model_location": f"{resolved.kind}: {resolved.location}",
        "task": a.task, "glue": glue_source, "n_train": n, "n_eval_reclaim": a.max_eval,
        "method": a.method, "method_params": spec["method"]["params"], "seed": a.seed,
        "batch_size": t["batch_size"], "max_length": t["max_length"], "lr": t["lr"],
        "epochs": t["epochs"], "optimizer_steps": steps,
        "warmup_steps": math.ceil(float(t["warmup_ratio"]) * steps),
        "scheduler": t["scheduler"], "weight_decay": t["weight_decay"],
        "max_grad_norm": t["max_grad_norm"], "optimizer": "torch.optim.AdamW (both)",
        "lora_targets": "reclaim.adapters._lora.linear_targets(model, 'all-linear', "
                        "['classifier']), modules_to_save=['classifier']",
        "padding": "dynamic (pad to longest in batch); reclaim's collate vs "
                   "DataCollatorWithPadding",
        "batch_order": "identical: reclaim's epoch-0 permutation; HF trains the pre-permuted "
                       "list with train_sampling_strategy='sequential'",
        "device": a.device, "threads": a.threads, "untimed_warmup_steps_per_process": a.warmup_steps,
        "isolation": "one fresh Python process per measurement",
        "spec_job_id": spec["job_id"],
    }
    return job, setup


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def _checks(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    r, h = runs["reclaim"][0], runs["hf"][0]
    out: dict[str, Any] = {}
    for key in ("steps", "examples_seen", "n_train", "trainable_params", "padded_tokens_epoch0",
                "threads_used"):
        out[key] = {"reclaim": r[key], "hf": h[key], "same": r[key] == h[key]}
    out["first_loss"] = {"reclaim": r["first_loss"], "hf": h["first_loss"],
                         "note": "close, not equal: dropout RNG streams differ"}
    out["mean_loss"] = {"reclaim": r["mean_loss"], "hf": h["mean_loss"]}
    return out


def main_parent(a: argparse.Namespace) -> int:
    import torch

    from reclaim.train import device_name

    if a.threads is None:
        a.threads = torch.get_num_threads()
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    out_path = Path(a.out or REPO_ROOT / "results" / "benchmarks" / f"throughput_{a.device}.json")

    with tempfile.TemporaryDirectory(prefix="reclaim-bench-") as tmp_s:
        tmp = Path(tmp_s)
        job, setup = prepare(a, tmp)
        job_path = tmp / "job.json"
        job_path.write_text(json.dumps(job, indent=2))
        runs: dict[str, list[dict[str, Any]]] = {h: [] for h in HARNESSES}
        sequence = []
        for i in range(a.repeats):
            order = HARNESSES if i % 2 == 0 else HARNESSES[::-1]  # ABBA: cancels slow drift
            for h in order:
                print(f"[{i + 1}/{a.repeats}] {h} ...", file=sys.stderr, flush=True)
                runs[h].append(_spawn(h, job_path, tmp, i))
                sequence.append(h)
        overhead = None if a.skip_overhead else measure_overhead(a.repeats, runs)

    med = {h: _median(runs[h], "examples_per_s") for h in HARNESSES}
    hf_call = _median(runs["hf"], "train_call_examples_per_s")
    report = {
        "benchmark": "training throughput: reclaim.train.run_job vs transformers.Trainer + peft",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": a.device, "device_name": device_name(a.device),
        "cpu_count": os.cpu_count(), "threads": a.threads, "versions": _versions(),
        "setup": setup, "repeats": a.repeats, "run_sequence": sequence,
        "throughput_examples_per_s": {
            "definition": LOOP_DEF,
            "reclaim": {"median": med["reclaim"],
                        "all": [r["examples_per_s"] for r in runs["reclaim"]]},
            "hf": {"median": med["hf"], "all": [r["examples_per_s"] for r in runs["hf"]]},
            "hf_train_call": {"definition": CALL_DEF, "median": hf_call,
                              "all": [r["train_call_examples_per_s"] for r in runs["hf"]]},
            "hf_own_metric": {
                "definition": "train_result.metrics['train_samples_per_second'] (time.time() "
                              "over the same span as 'hf', nominal max_steps x batch_size samples)",
                "all": [r["hf_train_samples_per_second"] for r in runs["hf"]]},
        },
        "ratio_reclaim_over_hf": {
            "loop": med["reclaim"] / med["hf"],
            "vs_hf_train_call": med["reclaim"] / hf_call if hf_call else None,
            "definition": "median reclaim examples/s / median HF examples/s; > 1: reclaim is "
                          "faster. 'loop' compares like with like (training loop only); "
                          "'vs_hf_train_call' charges HF its whole trainer.train() call",
        },
        "checks": _checks(runs),
        "per_run": runs,
        "overhead": overhead if overhead is not None else {"skipped": "--skip-overhead"},
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_report(report, out_path)
    return 0


def print_report(rep: dict[str, Any], out_path: Path) -> None:
    s, tp = rep["setup"], rep["throughput_examples_per_s"]
    v = rep["versions"]
    print(f"device: {rep['device']} - {rep['device_name']}, threads {rep['threads']}")
    print(f"versions: torch {v['torch']}, transformers {v['transformers']}, peft {v['peft']}")
    print(f"setup: {s['model']} / {s['task']} / {s['method']}, {s['n_train']} examples, "
          f"batch {s['batch_size']}, max_length {s['max_length']}, {s['optimizer_steps']} steps, "
          f"data: {s['glue']}")
    print()
    print(f"{'harness':<22} {'median ex/s':>12}  repeats (ex/s)")
    rows = [("reclaim (loop)", tp["reclaim"]), ("hf Trainer (loop)", tp["hf"]),
            ("hf trainer.train()", tp["hf_train_call"])]
    for name, d in rows:
        allv = " ".join(f"{x:.1f}" for x in d["all"])
        print(f"{name:<22} {d['median']:>12.1f}  {allv}")
    r = rep["ratio_reclaim_over_hf"]
    print(f"\nratio reclaim/HF (loop only): {r['loop']:.3f}")
    if r["vs_hf_train_call"] is not None:
        print(f"ratio reclaim/HF (vs whole trainer.train()): {r['vs_hf_train_call']:.3f}")
    bad = [k for k, c in rep["checks"].items() if "same" in c and not c["same"]]
    print(f"checks: {'all same' if not bad else 'DIFFER: ' + ', '.join(bad)} "
          f"(steps, examples, trainable params, padded tokens, threads)")
    ov = rep["overhead"]
    if "skipped" not in ov:
        print("\nper-job fixed overhead (median s):")
        for k, d in ov.items():
            val = f"{d['median_s']:.3f}" if "median_s" in d else f"skipped ({d['reason']})"
            print(f"  {k:<22} {val}")
    print(f"\nwritten: {out_path}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", choices=["minilm", "tiny-bert"], default="minilm",
                   help="minilm: params.yaml entry via reclaim.models.resolve; tiny-bert: "
                        "generated with reclaim.testing")
    p.add_argument("--model-dir", default=None,
                   help="minilm only: load from this directory (sets the entry's local_dir)")
    p.add_argument("--glue-dir", default="../shared/data/glue",
                   help="classic GLUE layout; a fixture is generated if the task is absent")
    p.add_argument("--task", default="sst2", choices=["sst2", "cola", "mrpc", "qnli", "mnli"])
    p.add_argument("--examples", type=int, default=512, help="training examples")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: params.yaml's smoke-scale value)")
    p.add_argument("--max-eval", type=int, default=64,
                   help="reclaim's eval examples (eval is not timed as training)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for both harnesses (default: torch's current)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs per harness, alternating reclaim/HF; the median is reported")
    p.add_argument("--warmup-steps", type=int, default=2,
                   help="untimed fwd/bwd steps on a throwaway model in each worker process "
                        "before the timed run (0: none)")
    p.add_argument("--method", choices=["lora", "full_ft"], default="lora")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None,
                   help="JSON report (default: results/benchmarks/throughput_<device>.json)")
    p.add_argument("--skip-overhead", action="store_true",
                   help="skip the per-job fixed overhead measurements")
    p.add_argument("--worker", choices=HARNESSES, help=argparse.SUPPRESS)
    p.add_argument("--job", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.worker:
        run_worker(a.worker, Path(a.job), Path(a.worker_out))
        return 0
    if a.repeats < 1 or a.examples < 1 or a.batch_size < 1:
        raise SystemExit("--repeats, --examples and --batch-size must be >= 1")
    return main_parent(a)


if __name__ == "__main__":
    raise SystemExit(main())
