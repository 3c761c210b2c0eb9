"""params.yaml: load, validate, fail early.

Every problem is reported as ``<file>: <key path>: <what is wrong>`` before Snakemake
schedules a job: the JSON schema (workflow/schemas/params.schema.yaml) closes every object
so a typo'd key is caught, and cross-references (methods named by claims, adapters, each
adapter's own parameter dataclass, models, tasks, aggregators) are checked here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "params.schema.yaml"
SCALES = ("smoke", "small", "paper")


class ConfigError(ValueError):
    pass


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc)
        # The parser notices some errors only on a later line (an unclosed bracket): say
        # where the construct it was parsing began, too.
        ctx, ctx_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if ctx and ctx_mark is not None and (mark is None or ctx_mark.line != mark.line):
            problem += f" ({ctx} at line {ctx_mark.line + 1}, column {ctx_mark.column + 1})"
        raise ConfigError(f"{path}: not valid YAML at {where}: {problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def validate(cfg: dict[str, Any], source: str = "params.yaml") -> dict[str, Any]:
    """Return the validated config; raise ConfigError naming the first offending key."""
    import jsonschema

    schema = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        msg = err.message
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            if extra:
                where = _path([*err.absolute_path, extra[0]])
                allowed = ", ".join(sorted(err.schema.get("properties", {})))
                raise ConfigError(f"{source}: {where}: unknown key {extra[0]!r} (allowed here: {allowed})")
        raise ConfigError(f"{source}: {_path(err.absolute_path)}: {msg}")
    _check_references(cfg, source)
    return cfg


def _check_references(cfg: dict[str, Any], source: str) -> None:
    from reclaim import adapters, claims
    from reclaim.data.glue import TASKS

    for name, m in cfg["methods"].items():
        if m["adapter"] not in adapters.names():
            raise ConfigError(f"{source}: methods.{name}.adapter: unknown adapter {m['adapter']!r} "
                              f"(known: {', '.join(adapters.names())})")
        try:
            adapters.get(m["adapter"]).make_params(m.get("params"))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: methods.{name}.params: {exc}") from None
    for cname, c in cfg["claims"].items():
        where = f"{source}: claims.{cname}"
        for i, meth in enumerate(c["methods"]):
            if meth not in cfg["methods"]:
                raise ConfigError(f"{where}.methods[{i}]: unknown method {meth!r} "
                                  f"(defined under methods: {', '.join(cfg['methods'])})")
        if c["aggregator"] not in claims.names():
            raise ConfigError(f"{where}.aggregator: unknown aggregator {c['aggregator']!r} "
                              f"(known: {', '.join(claims.names())})")
        for meth in c.get("paper_results", {}):
            if meth not in cfg["methods"]:
                raise ConfigError(f"{where}.paper_results.{meth}: unknown method {meth!r}")
        for sname, s in c["scales"].items():
            for i, model in enumerate(s["models"]):
                if model not in cfg["models"]:
                    raise ConfigError(f"{where}.scales.{sname}.models[{i}]: unknown model {model!r}")
            for i, task in enumerate(s["tasks"]):
                if task not in TASKS:
                    raise ConfigError(f"{where}.scales.{sname}.tasks[{i}]: unknown task {task!r} "
                                      f"(known: {', '.join(TASKS)})")
        if cfg["scale"] not in c["scales"]:
            raise ConfigError(f"{where}.scales: no settings for the selected scale {cfg['scale']!r}")
        claims.get(c["aggregator"]).check_config(c, f"{where}")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge (override wins), as Snakemake merges --configfile/--config."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = load_yaml(path)
    if overrides:
        cfg = merge(cfg, overrides)
    return validate(cfg, str(path))
