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


def _parse(text: str) -> Any:
    """libyaml's loader when PyYAML has it (8x faster on params.yaml: 45 vs 365 ms, paid on
    every Snakemake call); a document it refuses is parsed again by the Python loader, whose
    error marks and wording the messages below are written for."""
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is not None:
        try:
            return yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        data = _parse(text)
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
    from reclaim import adapters, claims, select
    from reclaim.data import pools
    from reclaim.data.glue import TASKS
    from reclaim.data.tasks import TASKS as ALL_TASKS

    _check_entries(cfg, "methods", "adapter", adapters, "adapter", source)
    _check_optimizers(cfg, source)
    _check_scratch_models(cfg, source)
    _check_entries(cfg, "selectors", "selector", select, "selector", source)
    for name, pool in cfg.get("pools", {}).items():
        if pool["builder"] not in pools.names():
            raise ConfigError(f"{source}: pools.{name}.builder: unknown pool builder {pool['builder']!r} "
                              f"(known: {', '.join(pools.names())})")
        builder = pools.get(pool["builder"])
        try:
            p = builder.Params(**pool["params"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: pools.{name}.params: {exc}") from None
        for task, split in builder.glue_sources(p):
            if task not in TASKS:
                raise ConfigError(f"{source}: pools.{name}.params: unknown task {task!r} in '{task}/{split}' "
                                  f"(known: {', '.join(TASKS)})")
            if split not in TASKS[task].files:
                raise ConfigError(f"{source}: pools.{name}.params: task {task} has no split {split!r} "
                                  f"(known: {', '.join(TASKS[task].files)})")
    for cname, c in cfg["claims"].items():
        where = f"{source}: claims.{cname}"
        _check_arms(cfg, cname, c, where)
        _check_strategies(cfg, cname, c, where)
        for i, meth in enumerate(c.get("methods", [])):
            if meth not in cfg["methods"]:
                raise ConfigError(f"{where}.methods[{i}]: unknown method {meth!r} "
                                  f"(defined under methods: {', '.join(cfg['methods'])})")
        if c["aggregator"] not in claims.names():
            raise ConfigError(f"{where}.aggregator: unknown aggregator {c['aggregator']!r} "
                              f"(known: {', '.join(claims.names())})")
        for meth in c.get("paper_results", {}):
            known = c["arms"] if "arms" in c else cfg["methods"]
            if meth not in known:
                raise ConfigError(f"{where}.paper_results.{meth}: unknown {'arm' if 'arms' in c else 'method'} "
                                  f"{meth!r}")
        for sname, s in c["scales"].items():
            for i, model in enumerate(s.get("models", [])):
                if model not in cfg["models"]:
                    raise ConfigError(f"{where}.scales.{sname}.models[{i}]: unknown model {model!r}")
            for i, arm in enumerate(s.get("arms", [])):
                if arm not in (c["arms"] if "arms" in c else c["methods"]):
                    raise ConfigError(f"{where}.scales.{sname}.arms[{i}]: {arm!r} is not an arm of the claim")
            if s.get("subject") and s["subject"] not in cfg["models"]:
                raise ConfigError(f"{where}.scales.{sname}.subject: unknown model {s['subject']!r} "
                                  f"(defined under models: {', '.join(cfg['models'])})")
            for meth in s.get("method_train", {}):
                if meth not in cfg["methods"]:
                    raise ConfigError(f"{where}.scales.{sname}.method_train.{meth}: unknown method {meth!r} "
                                      f"(defined under methods: {', '.join(cfg['methods'])})")
            for arm in s.get("seeds_by_arm", {}):
                if arm not in c.get("arms", {}):
                    raise ConfigError(f"{where}.scales.{sname}.seeds_by_arm.{arm}: not an arm of the claim "
                                      f"(arms: {', '.join(c.get('arms', {})) or 'none'})")
            _check_task_models(cfg, s, f"{where}.scales.{sname}")
            sw = s.get("score_with")
            if sw and sw["model"] not in cfg["models"]:
                raise ConfigError(f"{where}.scales.{sname}.score_with.model: unknown model {sw['model']!r}")
            if sw and sw["task"] not in ALL_TASKS:
                raise ConfigError(f"{where}.scales.{sname}.score_with.task: unknown task {sw['task']!r} "
                                  f"(known: {', '.join(ALL_TASKS)})")
            if s.get("pool") and s["pool"] not in cfg.get("pools", {}):
                raise ConfigError(f"{where}.scales.{sname}.pool: unknown pool {s['pool']!r} "
                                  f"(defined under pools: {', '.join(cfg.get('pools', {})) or 'none'})")
            for i, task in enumerate(s.get("tasks", [])):
                if task not in ALL_TASKS:
                    raise ConfigError(f"{where}.scales.{sname}.tasks[{i}]: unknown task {task!r} "
                                      f"(known: {', '.join(ALL_TASKS)})")
        if cfg["scale"] not in c["scales"]:
            raise ConfigError(f"{where}.scales: no settings for the selected scale {cfg['scale']!r}")
        try:
            claims.get(c["aggregator"]).check_config(c, f"{where}")
        except ValueError as exc:  # an aggregator's own check: reported like every other key
            raise ConfigError(str(exc)) from None


def _check_task_models(cfg: dict[str, Any], s: dict[str, Any], where: str) -> None:
    """``per_task`` names known tasks and models, and every (model, task) context
    pairs a framing with a task of its modality (an image task needs an image framing)."""
    from reclaim import framings
    from reclaim.data.tasks import modality
    from reclaim.jobs import contexts

    tasks = s.get("tasks", [])
    for task, own in s.get("per_task", {}).items():  # a task the scale does not list: unused
        if task not in _all_tasks():
            raise ConfigError(f"{where}.per_task.{task}: unknown task {task!r} (known: {', '.join(_all_tasks())})")
        for i, model in enumerate(own.get("models", [])):
            if model not in cfg["models"]:
                raise ConfigError(f"{where}.per_task.{task}.models[{i}]: unknown model {model!r}")
    for model, task in contexts(s, [t for t in tasks if t in _all_tasks()]):
        if model not in cfg["models"]:
            continue  # reported with its own key
        framing = framings.get(cfg["models"][model]["framing"])
        if framing.modality != modality(task):
            key = "per_task." + task + ".models" if model in s.get("per_task", {}).get(task, {}).get("models", []) else "models"
            raise ConfigError(f"{where}.{key}: model {model!r} ({framing.name}, {framing.modality}) cannot run "
                              f"{modality(task)} task {task!r}; give the task its own model under "
                              f"{where}.per_task.{task}.models")


def _check_scratch_models(cfg: dict[str, Any], source: str) -> None:
    """A framing that builds its network from scratch needs ``from_scratch: {arch}``, and only
    such a framing can use it (the others load pretrained weights)."""
    from reclaim import framings

    for name, entry in cfg["models"].items():
        if entry["framing"] not in framings.names():  # the registry, not a list in the schema
            raise ConfigError(f"{source}: models.{name}.framing: unknown framing {entry['framing']!r} "
                              f"(known: {', '.join(framings.names())})")
        scratch = getattr(framings.get(entry["framing"]), "from_scratch", False)
        if scratch and not entry.get("from_scratch"):
            raise ConfigError(f"{source}: models.{name}: framing {entry['framing']!r} trains from scratch; "
                              "give from_scratch: {arch: ...}")
        if entry.get("from_scratch") and not scratch:
            raise ConfigError(f"{source}: models.{name}.from_scratch: framing {entry['framing']!r} loads "
                              "pretrained weights; from_scratch needs a from-scratch framing (image_cls)")


def _all_tasks() -> dict[str, Any]:
    from reclaim.data.tasks import TASKS

    return TASKS


def _check_entries(cfg: dict[str, Any], section: str, key: str, registry: Any, kind: str, source: str) -> None:
    """Each ``<section>.<name>.<key>`` names a module of ``registry`` and its ``params`` fit
    that module's parameter dataclass."""
    for name, entry in cfg.get(section, {}).items():
        if entry[key] not in registry.names():
            raise ConfigError(f"{source}: {section}.{name}.{key}: unknown {kind} {entry[key]!r} "
                              f"(known: {', '.join(registry.names())})")
        try:
            registry.get(entry[key]).make_params(entry.get("params"))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {section}.{name}.params: {exc}") from None


def _check_optimizers(cfg: dict[str, Any], source: str) -> None:
    """A method's ``optimizer.name`` is a module of reclaim.optim and its params fit it."""
    from reclaim import optim

    for name, entry in cfg.get("methods", {}).items():
        opt = entry.get("optimizer")
        if not opt:
            continue
        if opt["name"] not in optim.names():
            raise ConfigError(f"{source}: methods.{name}.optimizer.name: unknown optimizer {opt['name']!r} "
                              f"(known: {', '.join(optim.names())})")
        try:
            optim.get(opt["name"]).make_params(opt.get("params"))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: methods.{name}.optimizer.params: {exc}") from None


def _check_arms(cfg: dict[str, Any], cname: str, c: dict[str, Any], where: str) -> None:
    """Every step names something that exists and has valid parameters, and every arm can
    get the data its steps need at every scale."""
    from reclaim import evaluate, select
    from reclaim.select.subsets import SubsetParams

    for arm, steps in c.get("arms", {}).items():
        stages = []
        for i, step in enumerate(steps):
            (stage, body), = step.items()
            at = f"{where}.arms.{arm}[{i}].{stage}"
            stages.append(stage)
            if stage == "select":
                name = body["selector"]
                if name not in cfg.get("selectors", {}):
                    raise ConfigError(f"{at}.selector: unknown selector {name!r} "
                                      f"(defined under selectors: {', '.join(cfg.get('selectors', {})) or 'none'})")
                try:
                    SubsetParams(kind=body["subset"], budget=body["budget"], offset=body.get("offset", 0.0),
                                 stratify_by=body.get("stratify_by"))
                except ValueError as exc:
                    raise ConfigError(f"{at}: {exc}") from None
                sel = select.get(cfg["selectors"][name]["selector"])
                for sname, s in c["scales"].items():
                    if not s.get("pool") and not s.get("tasks"):
                        raise ConfigError(f"{where}.scales.{sname}: arm {arm!r} selects data but the scale "
                                          "names neither a pool nor tasks to select from")
                    trains = any("train" in st for st in steps)
                    if sel.needs_model and not trains and not s.get("score_with"):
                        raise ConfigError(f"{at}.selector: {name!r} scores with a model and arm {arm!r} does not "
                                          f"train: give claims.{cname}.scales.{sname}.score_with: {{model, task}}")
                    if sel.needs_target and not s.get("pool"):
                        raise ConfigError(f"{at}.selector: {name!r} needs a target sample, which only a "
                                          f"pool provides (claims.{cname}.scales.{sname}.pool)")
            elif stage == "train":
                if body["method"] not in cfg["methods"]:
                    raise ConfigError(f"{at}.method: unknown method {body['method']!r} "
                                      f"(defined under methods: {', '.join(cfg['methods'])})")
                if "weight_mode" in body and "select" not in stages:
                    raise ConfigError(f"{at}.weight_mode: the arm has no select step before this train step, "
                                      "so there is no selection to weight")
                if body.get("weight_mode") == "loss" and "reweighting" in body:
                    raise ConfigError(f"{at}: weight_mode loss and reweighting both set the training loss; "
                                      "use one (or weight_mode sampler with reweighting)")
                if "reweighting" in body:
                    from reclaim import reweight

                    try:
                        reweight.resolve(body["reweighting"])
                    except (TypeError, ValueError) as exc:
                        raise ConfigError(f"{at}.reweighting: {exc}") from None
                for sname, s in c["scales"].items():
                    if not s.get("models") or not s.get("tasks"):
                        raise ConfigError(f"{where}.scales.{sname}: arm {arm!r} trains, so the scale needs "
                                          "models and tasks")
            elif stage == "probe":
                if body["method"] not in cfg["methods"]:
                    raise ConfigError(f"{at}.method: unknown method {body['method']!r} "
                                      f"(defined under methods: {', '.join(cfg['methods'])})")
                from reclaim.probe import resolve as resolve_probe

                for sname, s in c["scales"].items():
                    try:
                        resolve_probe({**{k: v for k, v in body.items() if k != "method"}, **(s.get("probe") or {})})
                    except (TypeError, ValueError) as exc:
                        raise ConfigError(f"{at} (at scale {sname}): {exc}") from None
                    if not s.get("models") or not s.get("tasks"):
                        raise ConfigError(f"{where}.scales.{sname}: arm {arm!r} probes a training step, so the "
                                          "scale needs models and tasks")
            elif stage == "pretrain":
                from reclaim.plan import STEP_KEYS
                from reclaim.pretrain._base import resolve as resolve_pretrain

                try:
                    resolve_pretrain({k: v for k, v in body.items() if k not in STEP_KEYS})
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{at}: {exc}") from None
                if "reweighting" in body:
                    from reclaim import reweight

                    try:
                        reweight.resolve(body["reweighting"])
                    except (TypeError, ValueError) as exc:
                        raise ConfigError(f"{at}.reweighting: {exc}") from None
                trains = any("train" in st for st in steps)
                if body.get("pool") and body["pool"] not in cfg.get("pools", {}):
                    raise ConfigError(f"{at}.pool: unknown pool {body['pool']!r} "
                                      f"(defined under pools: {', '.join(cfg.get('pools', {})) or 'none'})")
                for sname, s in c["scales"].items():
                    try:
                        resolve_pretrain({**{k: v for k, v in body.items() if k not in STEP_KEYS},
                                          **s.get("pretrain", {})})
                    except (TypeError, ValueError) as exc:
                        raise ConfigError(f"{where}.scales.{sname}.pretrain: {exc}") from None
                    if not s.get("pool") and not body.get("pool"):
                        raise ConfigError(f"{at}: arm {arm!r} pretrains on pool text, so the step or the "
                                          f"scale ({where}.scales.{sname}) needs a pool")
                    if not trains and not s.get("score_with") and not s.get("subject"):
                        raise ConfigError(f"{at}: arm {arm!r} does not train, so the model to pretrain comes "
                                          f"from claims.{cname}.scales.{sname}.score_with (or subject)")
                if "lora" in body:
                    _check_lora(body["lora"], steps[:i], at)
            elif stage == "compress":
                _check_compress(cfg, cname, c, arm, body, stages, at, where)
            elif stage == "evaluate":
                if body["evaluator"] not in evaluate.names():
                    raise ConfigError(f"{at}.evaluator: unknown evaluator {body['evaluator']!r} "
                                      f"(known: {', '.join(evaluate.names())})")
                try:
                    evaluate.get(body["evaluator"]).make_params(body.get("params"))
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{at}.params: {exc}") from None
                for sname, s in c["scales"].items():
                    try:
                        evaluate.get(body["evaluator"]).make_params(
                            {**(body.get("params") or {}), **(s.get("evaluate") or {}).get(body["evaluator"], {})})
                    except (TypeError, ValueError) as exc:
                        raise ConfigError(f"{where}.scales.{sname}.evaluate.{body['evaluator']}: {exc}") from None
                if getattr(evaluate.get(body["evaluator"]), "needs_model", False) and "train" not in stages:
                    for sname, s in c["scales"].items():
                        if not (s.get("score_with") or s.get("subject")):
                            raise ConfigError(f"{at}.evaluator: {body['evaluator']!r} embeds with a model and arm "
                                              f"{arm!r} does not train: give claims.{cname}.scales.{sname}"
                                              ".score_with: {model, task}")
        needs_model = [st["select"]["selector"] for st in steps if "select" in st
                       and select.get(cfg["selectors"][st["select"]["selector"]]["selector"]).needs_model]
        no_ctx = [sname for sname, s in c["scales"].items() if not s.get("score_with")]
        if needs_model and "train" not in stages and no_ctx:
            raise ConfigError(f"{where}.arms.{arm}: selector {needs_model[0]!r} scores with a model, so the "
                              "arm must train (its train step's (model, task) context gives the model) or "
                              f"claims.{cname}.scales.{no_ctx[0]} must give score_with: {{model, task}}")
        if "train" in stages and "select" in stages and stages.index("select") > stages.index("train"):
            raise ConfigError(f"{where}.arms.{arm}: a select step after train has nothing to select for")


def _check_strategies(cfg: dict[str, Any], cname: str, c: dict[str, Any], where: str) -> None:
    """A method's adapter and training strategy params fit every model the claim trains it on
    (LST's reduction factor against the widths, LISA's gamma against the block count), named by
    the method and the model."""
    from reclaim import adapters, optim
    from reclaim.plan import arms_of

    for arm, steps in arms_of(c).items():
        for step in steps:
            (stage, body), = step.items()
            if stage not in ("train", "probe"):
                continue
            method = cfg["methods"].get(body["method"], {})
            entry = method.get("optimizer")
            strategy = optim.get(entry["name"]) if entry else None
            params = strategy.make_params(entry.get("params")) if strategy else None
            adapter = adapters.get(method["adapter"]) if method.get("adapter") in adapters.names() else None
            aparams = adapter.make_params(method.get("params")) if adapter else None
            for sname, s in c["scales"].items():
                models = list(s.get("models", [])) + [m for t in s.get("per_task", {}).values()
                                                      for m in t.get("models", [])]
                for model in dict.fromkeys(models):
                    try:
                        shape = _shape(cfg, model)
                        if adapter:
                            adapter.check(aparams, shape, f"methods.{body['method']}.params")
                        if strategy:
                            strategy.check(params, shape, f"methods.{body['method']}.optimizer.params")
                    except ValueError as exc:
                        raise ConfigError(f"{where}.arms.{arm} (scale {sname}, model {model!r}): {exc}") from None


def _shape(cfg: dict[str, Any], model: str) -> dict[str, Any]:
    from reclaim.models import ModelNotAvailable, model_shape, resolve

    if model not in cfg["models"]:  # refused by name by the scales' check
        return {}
    try:
        shape = model_shape(resolve(model, cfg["models"][model])) or {}
    except ModelNotAvailable:
        return {}
    return {**shape.get("widths", {}), "blocks": shape.get("blocks")}


def _check_lora(raw: Any, before: list[dict[str, Any]], at: str) -> None:
    """LoRA on a compressed base (reclaim.pretrain._lora): valid params, and ``init:
    compensation`` only right after a compensation step of the same rank."""
    from reclaim import compress
    from reclaim.pretrain._lora import resolve as resolve_lora

    try:
        lora = resolve_lora(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{at}.lora: {exc}") from None
    if lora.init != "compensation":
        return
    prev = before[-1].get("compress") if before else None
    if not prev or not getattr(compress.get(prev["method"]), "needs_original", False):
        raise ConfigError(f"{at}.lora.init: 'compensation' starts from the factors of a compensation step "
                          "(compress: eora or svd_comp) right before this step; there is none")
    if prev.get("rank") != lora.r:
        raise ConfigError(f"{at}.lora.r: {lora.r} differs from the rank {prev.get('rank')} of the compensation "
                          "step it starts from")


def _check_compress(cfg: dict[str, Any], cname: str, c: dict[str, Any], arm: str, body: dict[str, Any],
                    stages: list[str], at: str, where: str) -> None:
    """The method exists, its params (with every scale's overrides) are valid, the calibration
    is valid, the model to compress exists, and a group size fits the subject's layers."""
    from reclaim import compress
    from reclaim.compress._base import Calibration
    from reclaim.plan import compress_params

    if body["method"] not in compress.names():
        raise ConfigError(f"{at}.method: unknown compression method {body['method']!r} "
                          f"(known: {', '.join(compress.names())})")
    comp = compress.get(body["method"])
    if getattr(comp, "needs_original", False) and "compress" not in stages[:-1]:
        raise ConfigError(f"{at}.method: {body['method']!r} compensates the error of an earlier compress step: "
                          f"put a compress step before it in arm {arm!r}")
    for sname, s in c["scales"].items():
        try:
            params = comp.make_params(compress_params(body, s.get("compress")))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{at} (at scale {sname}): {exc}") from None
        try:
            Calibration(**s.get("calibration", {}))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.scales.{sname}.calibration: {exc}") from None
        if s.get("arms") and arm not in s["arms"]:
            continue
        trains = "train" in stages
        subject = s.get("subject") or (s.get("score_with") or {}).get("model")
        models = s.get("models", []) if trains else [subject] if subject else []
        if not models:
            raise ConfigError(f"{at}: arm {arm!r} compresses a model: give claims.{cname}.scales.{sname}.subject "
                              "(a name under models:)")
        for model in models:
            if model not in cfg["models"]:
                raise ConfigError(f"{where}.scales.{sname}.subject: unknown model {model!r} "
                                  f"(defined under models: {', '.join(cfg['models'])})")
            if (any(st in ("pretrain", "compress") for st in stages[:-1])
                    and not getattr(comp, "needs_original", False)):  # compensation keeps the widths
                continue  # compresses an earlier step's output: checked by that job on the real layers
            problems = comp.widths_ok(params, _widths(cfg, model))
            if problems:
                hint = getattr(comp, "width_hint", None) or (
                    "groups never straddle rows: pick a group size that divides every layer width"
                    if comp.quantizes else "pick a pattern whose M divides every layer width")
                raise ConfigError(f"{at}: {problems[0]} of model {model!r} (scale {sname}); {hint}")


def _widths(cfg: dict[str, Any], model: str) -> dict[str, int]:
    from reclaim.models import ModelNotAvailable, linear_widths, resolve

    try:
        # sorted: the same order whether the widths were just read or came from the cache
        return dict(sorted((linear_widths(resolve(model, cfg["models"][model])) or {}).items()))
    except ModelNotAvailable:
        return {}  # not local here: the compress job checks the real layers, naming the layer


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
