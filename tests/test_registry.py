"""Registries by file: a new module is a new method; an unknown name is a clear error."""

from __future__ import annotations

import sys

import pytest

from reclaim import adapters, claims, framings
from reclaim.registry import ModuleRegistry


def test_the_three_registries_list_their_files() -> None:
    assert {"full_ft", "lora", "lora_ga", "lora_ga_peft", "pissa", "adalora"} <= set(adapters.names())
    assert framings.names() == ["causal_lm", "causal_lm_head", "encoder_cls", "image_cls", "seq2seq"]
    assert "lora_ga_glue" in claims.names()
    assert adapters.get("lora_ga") is adapters.module("lora_ga").ADAPTER


def test_adding_a_file_adds_an_entry(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "myplugins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_private.py").write_text("THING = 0\n")
    (pkg / "alpha.py").write_text("THING = 'a'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = ModuleRegistry("myplugins", pkg, "THING", "plugin")
    assert reg.names() == ["alpha"]
    (pkg / "beta.py").write_text("THING = 'b'\n")
    assert reg.names() == ["alpha", "beta"] and reg.get("beta") == "b"
    with pytest.raises(KeyError, match=r"unknown plugin 'gamma'; known: alpha, beta"):
        reg.get("gamma")
    for name in [m for m in sys.modules if m.split(".")[0] == "myplugins"]:
        sys.modules.pop(name)


def test_unknown_adapter_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown adapter 'lorra'.*lora_ga"):
        adapters.get("lorra")
