"""Crash-safe training checkpoints, so a killed job resumes instead of starting over.

A checkpoint lives in ``<job dir>/checkpoint/``, beside ``result.json`` but not a declared
Snakemake output: Snakemake deletes a failed job's declared outputs, and the checkpoint
must survive exactly that. It holds everything a CPU run needs to continue bit-for-bit:

- ``trainable.safetensors``: every parameter the optimizer holds (the rest of the model
  is rebuilt deterministically from the seed: base weights, heads' init, and adapter
  inits that rewrite base weights, such as PiSSA and LoRA-GA, by re-running ``apply``);
- ``optimizer.pt``: optimizer and LR-scheduler state and the torch RNG states, loaded
  with ``torch.load(weights_only=True)``;
- ``adapter.safetensors``: adapter state kept outside parameters (AdaLoRA's importance
  scores), from ``Adapter.checkpoint_state``;
- ``state.json``: step, epoch, position in the epoch, losses and learning rates so far,
  examples seen, numpy/python RNG states, the MLflow run that wrote it;
- ``manifest.json``: the job's identity (spec, training data, code) and the sha256 of
  every file above. A file whose hash differs is an error naming it: a corrupt
  checkpoint is never used silently.

It is written to a temporary directory and renamed into place; the previous one is
renamed aside first and removed after, and is renamed back if a crash hits in between.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reclaim.io import sha256_file

if TYPE_CHECKING:
    import torch
    from torch import nn

CHECKPOINT_DIR = "checkpoint"
MANIFEST = "manifest.json"
FORMAT = 1
_OLD = ".checkpoint.old"
_TMP_PREFIX = ".checkpoint.tmp-"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used safely (corrupt, truncated, inconsistent)."""


@dataclass
class TrainState:
    """Where training stands: enough to continue the loop where it stopped."""

    step: int = 0
    epoch: int = 0
    pos: int = 0  # batches of ``epoch`` already trained on
    seen: int = 0
    train_s: float = 0.0  # training seconds spent by the processes before this one
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    mlflow_run_id: str | None = None


def log(msg: str) -> None:
    """A line on stderr (the job's log); never fails, even if the log pipe has gone."""
    try:
        print(f"reclaim train: {msg}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def identity(spec: dict[str, Any], train_path: str | os.PathLike[str], code_files: list[str]) -> str:
    """What a checkpoint must match to be resumed: the spec, the training data and the code
    (a changed file makes Snakemake rerun the job, and then it must not pick up old state)."""
    h = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    h.update(sha256_file(train_path).encode())
    for f in sorted(code_files):
        h.update(f"{Path(f).name}:{sha256_file(f)}".encode())
    return h.hexdigest()


def checkpoint_dir(out: str | os.PathLike[str]) -> Path:
    return Path(out).parent / CHECKPOINT_DIR


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(ckpt: Path, ident: str, job_id: str, model: nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: Any, adapter: Any, params: Any, state: TrainState) -> None:
    """Write a checkpoint of the current training state atomically, replacing the old one."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    ckpt = Path(ckpt)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=ckpt.parent))
    old = ckpt.parent / _OLD
    try:
        trainable = {n: p.detach().cpu().contiguous() for n, p in optimized(model, optimizer).items()}
        save_file(trainable, str(tmp / "trainable.safetensors"))
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng},
                   tmp / "optimizer.pt")
        tensors, meta = adapter.checkpoint_state(model, params)
        if tensors:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                      str(tmp / "adapter.safetensors"))
        np_state = np.random.get_state()
        body = {**asdict(state), "adapter_meta": meta,
                "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
                "python_rng": _plain(random.getstate())}
        (tmp / "state.json").write_text(json.dumps(body), encoding="utf-8")
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        manifest = {"format": FORMAT, "identity": ident, "job_id": job_id, "step": state.step,
                    "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        for p in tmp.iterdir():
            _fsync_file(p)
        if old.exists():
            shutil.rmtree(old)
        if ckpt.exists():
            os.replace(ckpt, old)
        os.replace(tmp, ckpt)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _plain(obj: Any) -> Any:
    return [_plain(x) for x in obj] if isinstance(obj, (tuple, list)) else obj


def _tuple(obj: Any) -> Any:
    return tuple(_tuple(x) for x in obj) if isinstance(obj, list) else obj


def discard(ckpt: Path) -> None:
    """Remove a checkpoint (after result.json is written, or when it is for another job)."""
    ckpt = Path(ckpt)
    shutil.rmtree(ckpt, ignore_errors=True)
    shutil.rmtree(ckpt.parent / _OLD, ignore_errors=True)


def _tidy(ckpt: Path) -> None:
    """Remove half-written temporaries; restore the previous checkpoint if a crash hit between
    renaming it aside and renaming the new one in (it is complete: it was in place before)."""
    parent = ckpt.parent
    if not parent.is_dir():
        return
    for p in parent.glob(_TMP_PREFIX + "*"):
        shutil.rmtree(p, ignore_errors=True)
    old = parent / _OLD
    if old.is_dir():
        if ckpt.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, ckpt)


def read_manifest(ckpt: Path) -> dict[str, Any]:
    path = Path(ckpt) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint manifest ({exc}); delete {ckpt} to "
                              "start the job over") from exc
    if not isinstance(manifest, dict) or not {"identity", "files", "step"} <= set(manifest):
        raise CheckpointError(f"{path}: not a reclaim checkpoint manifest; delete {ckpt} to start over")
    return manifest


def verify(ckpt: Path, manifest: dict[str, Any]) -> None:
    """Check every file against its sha256 in the manifest; raise naming the first mismatch."""
    for name in ("trainable.safetensors", "optimizer.pt", "state.json"):
        if name not in manifest["files"]:
            raise CheckpointError(f"{Path(ckpt) / MANIFEST}: lists no {name}; delete {ckpt} to start over")
    for name, want in sorted(manifest["files"].items()):
        path = Path(ckpt) / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the checkpoint (listed in {MANIFEST}); "
                                  f"delete {ckpt} to start the job over")
        got = sha256_file(path)
        if got != want:
            raise CheckpointError(f"{path}: sha256 {got[:12]}... does not match {MANIFEST} "
                                  f"({want[:12]}...): corrupt checkpoint; delete {ckpt} to start over")


def optimized(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The parameters the optimizer holds, by name: what training changes. Not the ones
    with ``requires_grad`` now: LISA freezes blocks it trained in earlier intervals."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return {n: p for n, p in model.named_parameters() if id(p) in held}


def load(ckpt: Path, ident: str, job_id: str, model: nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: Any, adapter: Any, params: Any) -> TrainState | None:
    """Restore training state from ``ckpt`` if it is this job's; None when there is nothing to
    resume (no checkpoint, or one for another spec, which is removed with a log line)."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    ckpt = Path(ckpt)
    _tidy(ckpt)
    if not ckpt.exists():
        return None
    manifest = read_manifest(ckpt)
    if manifest["identity"] != ident or manifest.get("format") != FORMAT:
        log(f"discarding {ckpt}: written for a different spec, data or code "
            f"(job {manifest.get('job_id')}, step {manifest['step']}); starting from step 0")
        discard(ckpt)
        return None
    if not getattr(adapter, "resumable", True):
        log(f"discarding {ckpt}: adapter {type(adapter).__name__} cannot resume exactly; "
            "starting from step 0")
        discard(ckpt)
        return None
    verify(ckpt, manifest)

    saved = load_file(str(ckpt / "trainable.safetensors"))
    trainable = optimized(model, optimizer)
    if set(saved) != set(trainable):
        diff = sorted(set(saved) ^ set(trainable))
        raise CheckpointError(f"{ckpt / 'trainable.safetensors'}: parameters do not match the model "
                              f"({len(diff)} differ, e.g. {diff[0]!r})")
    with torch.no_grad():
        for n, p in trainable.items():
            if saved[n].shape != p.shape:
                raise CheckpointError(f"{ckpt / 'trainable.safetensors'}: {n} has shape "
                                      f"{tuple(saved[n].shape)}, the model {tuple(p.shape)}")
            p.copy_(saved[n])
    blob = torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])

    body = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    tensors = load_file(str(ckpt / "adapter.safetensors")) if (ckpt / "adapter.safetensors").is_file() else {}
    adapter.load_checkpoint_state(model, params, tensors, body.pop("adapter_meta"))

    np_state = body.pop("numpy_rng")
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
    random.setstate(_tuple(body.pop("python_rng")))
    torch.set_rng_state(blob["rng"]["torch"])
    if "cuda" in blob["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["rng"]["cuda"])
    state = TrainState(**body)
    if state.step != manifest["step"] or len(state.losses) != state.step:
        raise CheckpointError(f"{ckpt / 'state.json'}: step {state.step} with {len(state.losses)} "
                              f"losses disagrees with {MANIFEST} (step {manifest['step']})")
    return state
