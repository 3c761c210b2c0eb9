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

AUTO_CLASSES = {"causal_lm": "AutoModelForCausalLM", "encoder_cls": "AutoModelForSequenceClassification"}


def load_subject(framing: str, model_json: str, model_dir: str):  # type: ignore[no-untyped-def]
    """The model and tokenizer: from ``model_dir`` (an earlier step's output) if given, else the
    resolved packaged/Hub model."""
    import transformers

    from reclaim.models import ResolvedModel, load_pretrained, load_tokenizer

    if framing not in AUTO_CLASSES:
        raise ValueError(f"compress: framing {framing!r} has no model class here (known: {', '.join(AUTO_CLASSES)})")
    resolved = (ResolvedModel("artifact", model_dir, "local_dir") if model_dir
                else ResolvedModel(**json.loads(model_json)))
    model = load_pretrained(getattr(transformers, AUTO_CLASSES[framing]), resolved, dtype="float32")
    model.eval()
    return model, load_tokenizer(resolved), resolved


def save_model_dir(model: Any, tokenizer: Any, out_dir: Path) -> None:
    """Safetensors + config + tokenizer. A GGUF-loaded model is marked quantized and refuses
    ``save_pretrained``; its (dequantized, now compressed) weights are plain tensors, written
    with safetensors beside a config without the GGUF quantization entry."""
    if getattr(model, "hf_quantizer", None) is None:
        model.save_pretrained(out_dir, safe_serialization=True)
    else:
        from safetensors.torch import save_model

        config = model.config.to_dict()
        config.pop("quantization_config", None)
        type(model.config).from_dict(config).save_pretrained(out_dir)
        save_model(model, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out_dir)


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
    t_load = time.perf_counter() - t0
    windows, calib_rec = None, None
    if comp.needs_calibration:
        cal = Calibration(**spec["calibration"])
        ids = lm_text.tokenize(tok, lm_text.joined(calibration))
        windows = lm_text.calibration_windows(ids, cal.n_samples, cal.seqlen, seed)
        digest = hashlib.sha256(torch.cat([w.flatten() for w in windows]).numpy().tobytes()).hexdigest()
        calib_rec = {**cal.__dict__, "source": f"wikitext/{cal.split}", "seed": seed, "tokens": sum(w.numel()
                     for w in windows), "token_sha256": digest, "file_sha256": _sha256(calibration)}
    t1 = time.perf_counter()
    with torch.no_grad():
        record = comp.compress(model, windows, params, seed)
    t_compress = time.perf_counter() - t1
    out = Path(out_json)
    final = out.parent / "model"
    tmp = Path(tempfile.mkdtemp(prefix=".model-", dir=out.parent))
    try:
        save_model_dir(model, tok, tmp)
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
    write_json(out, result)
    return result


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
