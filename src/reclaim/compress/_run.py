"""The ``compress`` rule's job: load the step's model (packaged, or an earlier step's model
directory), draw calibration windows with the job's seed, run the method, and write the
compressed model directory (renamed into place when complete) and ``compress.json`` last,
Snakemake's marker of a finished job."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from reclaim.io import write_json
from reclaim.models import save_model_dir

AUTO_CLASSES = {"causal_lm": "AutoModelForCausalLM", "encoder_cls": "AutoModelForSequenceClassification"}


def load_subject(framing: str, model_json: str, model_dir: str):  # type: ignore[no-untyped-def]
    """The model and tokenizer: from ``model_dir`` (an earlier step's output) if given, else the
    resolved packaged/Hub model."""
    import transformers

    from reclaim.models import ResolvedModel, load_pretrained, load_tokenizer

    if framing not in AUTO_CLASSES:
        raise ValueError(f"compress: framing {framing!r} has no model class here (known: {', '.join(AUTO_CLASSES)})")
    original = ResolvedModel(**json.loads(model_json)) if model_json else None
    resolved = ResolvedModel("artifact", model_dir, "local_dir") if model_dir else original
    model = load_pretrained(getattr(transformers, AUTO_CLASSES[framing]), resolved, dtype="float32")
    model.eval()
    # a train job's saved model has no tokenizer files: the model it fine-tuned has them
    has_tok = any((Path(resolved.location) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    tok = load_tokenizer(resolved if has_tok or original is None else original)
    return model, tok, resolved


def summarize(layers: dict[str, dict[str, Any]], model: Any) -> dict[str, Any]:
    """Parameter-weighted means over the compressed layers."""
    from reclaim.compress._blocks import compressible_linears

    lins = compressible_linears(model)
    out: dict[str, Any] = {"n_layers": len(layers)}
    for key in ("weight_error", "output_error", "stored_bits", "sparsity"):
        pairs = [(rec[key], lins[name].weight.numel()) for name, rec in layers.items()
                 if rec.get(key) is not None and name in lins]
        if pairs:
            out[f"mean_{key}"] = sum(v * n for v, n in pairs) / sum(n for _, n in pairs)
    return out


def run(spec: dict[str, Any], model_json: str, model_dir: str, calibration: str, out_json: str,
        threads: int | None = None) -> dict[str, Any]:
    import torch

    from reclaim import compress
    from reclaim.compress._base import Calibration
    from reclaim.data import lm_text
    from reclaim.machine import cpu_name
    from reclaim.train import seed_everything

    if threads:
        torch.set_num_threads(threads)
    comp = compress.get(spec["method"])
    params = comp.make_params(spec["params"])
    seed = int(spec.get("seed") or 0)
    seed_everything(seed)
    t0 = time.perf_counter()
    model, tok, resolved = load_subject(spec["framing"], model_json, model_dir)
    extra = load_original(spec, model_json, model_dir) if comp.needs_original else {}
    t_load = time.perf_counter() - t0
    windows, calib_rec = None, None
    if comp.needs_calibration and spec["calibration"].get("source") == "task":
        windows, calib_rec = task_calibration(spec, tok, Calibration(**spec["calibration"]), calibration, seed)
    elif comp.needs_calibration:
        cal = Calibration(**spec["calibration"])
        ids = lm_text.tokenize(tok, lm_text.joined(calibration))
        windows = lm_text.calibration_windows(ids, cal.n_samples, cal.seqlen, seed)
        digest = hashlib.sha256(torch.cat([w.flatten() for w in windows]).numpy().tobytes()).hexdigest()
        calib_rec = {**cal.__dict__, "source": f"wikitext/{cal.split}", "seed": seed, "tokens": sum(w.numel()
                     for w in windows), "token_sha256": digest, "file_sha256": _sha256(calibration)}
    t1 = time.perf_counter()
    with torch.no_grad():
        record = comp.compress(model, windows, params, seed, **extra)
    outputs = record.pop("_outputs", None)  # extra files (a PEFT adapter), not JSON
    t_compress = time.perf_counter() - t1
    out = Path(out_json)
    final = out.parent / "model"
    tmp = Path(tempfile.mkdtemp(prefix=".model-", dir=out.parent))
    try:
        save_model_dir(model, tok, tmp)
        for name, obj in record.get("model_files", {}).items():  # e.g. activation ranges
            write_json(tmp / name, obj)
        if outputs is not None:
            comp.write_outputs(tmp, outputs)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    result = {"spec": spec, "method": spec["method"], "params": spec["params"], "calibration": calib_rec,
              "base": model_dir or resolved.location,
              "summary": summarize(record.get("layers", {}), model), "record": record,
              "timings": {"load_s": t_load, "compress_s": t_compress, "job_s": time.perf_counter() - t0},
              "device_name": cpu_name(), "torch": torch.__version__}
    if extra.get("base"):  # the compress step whose error this one compensates
        result["base_compress"] = {k: extra["base"].get(k) for k in ("method", "params", "summary")}
    write_json(out, result)
    return result


def load_original(spec: dict[str, Any], model_json: str, model_dir: str) -> dict[str, Any]:
    """For a method that compensates an earlier compress step (``needs_original``): the model
    that step compressed (the packaged model, or the model directory it read) and its record."""
    if not model_dir:
        raise ValueError(f"compress {spec['method']}: compensates an earlier compress step's error, "
                         "but no compressed model directory was given (put a compress step before it)")
    rec_path = Path(model_dir).parent / "compress.json"
    base = json.loads(rec_path.read_text()) if rec_path.is_file() else None
    source = base["base"] if base and base["spec"].get("base") else ""
    original, _, _ = load_subject(spec["framing"], model_json, source)
    return {"original": original, "base": base}


def task_calibration(spec: dict[str, Any], tok: Any, cal: Any, path: str, seed: int,
                     batch_size: int = 16) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``n_samples`` training rows of the arm's task (a seeded draw), encoded by the model's
    framing and collated into batches with their labels: what a fine-tuned classifier's PTQ
    calibration and QAT read."""
    from reclaim import framings
    from reclaim.data.selection import subsample
    from reclaim.data.tasks import get_task, read_rows

    task = get_task(spec["task"])
    framing = framings.get(spec["framing"])
    rows = subsample(read_rows(path, ("text_a", "text_b", "label")), cal.n_samples, seed)
    items = framing.encode(tok, task, rows, cal.seqlen)
    batches = [framing.collate(tok, items[i:i + batch_size]) for i in range(0, len(items), batch_size)]
    return batches, {**cal.__dict__, "task": spec["task"], "seed": seed, "examples": len(items),
                     "file_sha256": _sha256(path)}


def _sha256(path: str) -> str:
    from reclaim.io import sha256_file

    return sha256_file(Path(path))


def command(a: argparse.Namespace) -> int:
    from reclaim.stage_tracking import tracked

    spec = json.loads(a.spec)
    with tracked(a, "compress", f"{spec['method']}/{spec['id']}", spec) as m:
        res = run(spec, a.model, a.model_dir, a.calibration, a.out, a.threads)
        m.update({k: v for k, v in res["summary"].items() if isinstance(v, (int, float))})
        m.update({f"time_{k}": v for k, v in res["timings"].items()})
    s = res["summary"]
    print(f"compress {spec['method']}: {s.get('n_layers')} layers, mean weight error "
          f"{s.get('mean_weight_error', float('nan')):.3g}, {res['timings']['compress_s']:.1f}s -> {a.out}")
    return 0
