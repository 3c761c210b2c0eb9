"""Registries by file: a package whose public modules (file name = key) each define one
object under a fixed attribute. Adapters, framings and claim aggregators use it, and so
will the data-selection, compression and training-method stages: adding a method is adding
a file, never editing a switch."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


class ModuleRegistry:
    def __init__(self, package: str, directory: Path, attribute: str, kind: str) -> None:
        self.package, self.directory, self.attribute, self.kind = package, directory, attribute, kind
        self._names: tuple[int, list[str]] | None = None

    def names(self) -> list[str]:
        # Planning asks once per job; list the directory again only when it changed (a file
        # added, removed or renamed changes its mtime).
        stamp = os.stat(self.directory).st_mtime_ns
        if self._names is None or self._names[0] != stamp:
            self._names = (stamp, sorted(p.stem for p in self.directory.glob("*.py") if not p.stem.startswith("_")))
        return list(self._names[1])

    def module(self, name: str) -> ModuleType:
        # Already imported: no directory listing (the DAG asks once per job).
        loaded = sys.modules.get(f"{self.package}.{name}")
        if loaded is not None and not name.startswith("_") and "." not in name:
            return loaded
        if name not in self.names():
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return importlib.import_module(f"{self.package}.{name}")

    def get(self, name: str) -> Any:
        return getattr(self.module(name), self.attribute)


def make_params(params_cls: type, raw: dict[str, Any] | None) -> Any:
    """Validate a method's raw params (from params.yaml) into its Params dataclass: an
    unknown key is an error naming it; the dataclass's own checks name out-of-range fields."""
    import dataclasses

    raw = dict(raw or {})
    fields = {f.name for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise ValueError(f"unknown parameter {unknown[0]!r} (known: {known})")
    return params_cls(**raw)
