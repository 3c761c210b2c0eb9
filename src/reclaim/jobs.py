"""Job identity and the DAG's job lists.

A training job is identified by what it computes: model, task, data limits, resolved
training hyperparameters, method (adapter + resolved parameters) and seed. The hash of that
spec (without the seed) names its directory, so two claims that need the same run share one
job, and changing one method's parameter changes only that method's job paths.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from reclaim import adapters, reweight

SRC_DIR = Path(__file__).resolve().parents[1]  # .../src
RUNS_DIR = "results/runs"


def glue_dir(cfg: dict[str, Any]) -> str | None:
    """The local GLUE directory, absolute and normalized so that spelling the same place
    differently (``../shared/data/glue`` vs its absolute path) does not rerun jobs."""
    path = os.environ.get("GLUE_DIR") or cfg["data"].get("glue_dir")
    return os.path.realpath(os.path.expanduser(path)) if path else None


def scale_settings(cfg: dict[str, Any], claim: str, scale: str | None = None,
                   task: str | None = None) -> dict[str, Any]:
    """A claim's settings at a scale; for ``task``, its ``per_task.<task>`` keys replace the
    scale's keys of the same name (an image task's own model, data size and training)."""
    s = cfg["claims"][claim]["scales"][scale or cfg["scale"]]
    override = s.get("per_task", {}).get(task) if task else None
    return {**s, **override} if override else s


def model_identity(cfg: dict[str, Any], model: str) -> dict[str, Any]:
    entry = cfg["models"][model]
    ident = {"name": model, "framing": entry["framing"]}
    for key in ("hub_id", "gguf_file", "from_scratch"):
        if entry.get(key):
            ident[key] = entry[key]
    if entry.get("package"):
        pkg = entry["package"]
        ident["package"] = f"{pkg['name']}=={pkg['version']}"
    return ident


def make_spec(cfg: dict[str, Any], claim: str, model: str, task: str, method: str, seed: int,
              scale: str | None = None, selection: dict[str, Any] | None = None,
              reweighting: dict[str, Any] | None = None, init: dict[str, Any] | None = None) -> dict[str, Any]:
    """``selection``: {"id": subset job id, "weight_mode"} when the arm trains on a selection;
    ``reweighting``: the train step's {strategy, r, burn_in} (reclaim.reweight); ``init``:
    {"pretrain": job id, "model_dir"} when the weights come from an earlier step of the arm
    instead of the model's own checkpoint. Each enters the spec (and so the hash) only when
    present, so plain jobs keep their ids."""
    s = scale_settings(cfg, claim, scale, task)
    m = cfg["methods"][method]
    # defaults < the scale's < the method's own < the scale's for this method (method_train)
    train = {**cfg["train_defaults"], **s.get("train", {}), **m.get("train", {}),
             **s.get("method_train", {}).get(method, {})}
    params = adapters.get(m["adapter"]).make_params(m.get("params"))
    spec: dict[str, Any] = {
        "model": model_identity(cfg, model),
        "task": task,
        "data": {
            "max_train_examples": s.get("max_train_examples"),
            "max_eval_examples": s.get("max_eval_examples"),
            "subsample_seed": 0,
        },
        "train": train,
        "method": {"name": method, "adapter": m["adapter"], "params": _plain(dataclasses.asdict(params))},
        "seed": int(seed),
    }
    if m.get("optimizer"):  # a training strategy (reclaim.optim); only then, so other ids stay
        spec["method"]["optimizer"] = resolve_optimizer(m["optimizer"])
    if selection is not None:
        spec["selection"] = dict(selection)
    if reweighting is not None:
        spec["reweighting"] = reweight.resolve(reweighting)
    if init is not None:
        spec["init"] = dict(init)
    spec["cfg"] = spec_hash(spec)
    spec["job_id"] = f"{model}/{task}/{method}/{spec['cfg']}/seed{seed}"
    return spec


def resolve_optimizer(entry: dict[str, Any]) -> dict[str, Any]:
    """``{name, params}`` of a method's training strategy with its params validated and filled."""
    from reclaim import optim

    strategy = optim.get(entry["name"])
    return {"name": entry["name"], "params": _plain(dataclasses.asdict(strategy.make_params(entry.get("params"))))}


def _plain(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def spec_hash(spec: dict[str, Any]) -> str:
    body = {k: v for k, v in spec.items() if k not in ("seed", "cfg", "job_id")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]


def saves_model(cfg: dict[str, Any], method: str) -> bool:
    """Whether a method's train job writes the whole model (``adapter/``, transformers layout),
    which a later compress step can take as its input."""
    m = cfg["methods"][method]
    return m["adapter"] == "full_ft" and bool((m.get("params") or {}).get("save_model"))


def result_path(spec: dict[str, Any]) -> str:
    return f"{RUNS_DIR}/{spec['job_id']}/result.json"


def claim_jobs(cfg: dict[str, Any], claim: str, tasks: list[str] | None = None,
               scale: str | None = None) -> list[dict[str, Any]]:
    s = scale_settings(cfg, claim, scale)
    return [
        make_spec(cfg, claim, model, task, method, seed, scale)
        for model, task in contexts(s, tasks if tasks is not None else s["tasks"])
        for method in cfg["claims"][claim]["methods"]
        for seed in s["seeds"]
    ]


def contexts(s: dict[str, Any], tasks: list[str]) -> list[tuple[str, str]]:
    """(model, task) pairs of a scale: the scale's models x its tasks (models outer, as always),
    then each task with its own ``per_task`` models."""
    own = s.get("per_task", {})
    return ([(m, t) for m in s.get("models", []) for t in tasks if "models" not in own.get(t, {})]
            + [(m, t) for t in tasks if "models" in own.get(t, {}) for m in own[t]["models"]])


def module_file(module: str) -> Path:
    base = SRC_DIR.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def code_closure(entry_modules: list[str]) -> list[str]:
    """Source files of ``entry_modules`` and every reclaim module they import (function-level
    imports included), found by reading the AST: the files a rule declares as inputs so that
    editing one reruns exactly the jobs that execute it."""
    # Rules call this once per job: each file is parsed once per process and each closure
    # reused until one of its files changes (mtime, size, inode), see reclaim.code_deps.
    from reclaim import code_deps

    return code_deps.closure(entry_modules, module_file)


CODE_STAMP_DIR = ".reclaim/code"


def code_stamp(entry_modules: list[str]) -> str:
    """The one input that stands for ``code_closure(entry_modules)`` in a rule: a file under
    ``.reclaim/code/`` (relative to the workflow directory) holding the sha256 of each file of
    the closure, rewritten only when one of them changes (reclaim.code_deps.stamp)."""
    from reclaim import code_deps

    return code_deps.stamp(entry_modules, module_file, SRC_DIR, CODE_STAMP_DIR)


def train_modules(spec: dict[str, Any]) -> list[str]:
    from reclaim import optim

    strategy = [f"reclaim.reweight.{spec['reweighting']['strategy']}"] if spec.get("reweighting") else []
    opt = (spec["method"].get("optimizer") or {}).get("name", optim.DEFAULT)
    return ["reclaim.train", f"reclaim.adapters.{spec['method']['adapter']}",
            f"reclaim.framings.{spec['model']['framing']}", f"reclaim.optim.{opt}", *strategy]


def train_code(spec: dict[str, Any]) -> list[str]:
    return code_closure(train_modules(spec))
