"""The plan: claims -> arms -> chains of steps -> jobs with composed identities.

A claim is a set of arms; an arm is a chain of steps, each naming one stage
(``select``, ``pretrain``, ``compress``, ``train``, ``probe`` (the memory of one training
step), ``evaluate``). Every step becomes a job whose id hashes its own spec together with the
ids of the jobs it reads, so

- two arms or two claims that need the same step share one job (same spec, same inputs);
- changing a step's parameter changes its id and the ids of everything downstream of it,
  and nothing else;
- a job's output path carries its id, so Snakemake's "does the output exist" is "was this
  exact computation done".

Claims that list ``methods:`` (the fine-tuning claims) are arms of one ``train`` step each;
their train jobs keep the ids they always had (reclaim.jobs.make_spec).

See docs/architecture.md for the artifact contracts and walk-throughs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from reclaim import jobs as train_jobs
from reclaim.data.tasks import data_family, split_path

POOLS_DIR = "data/pools"
SELECT_DIR = "results/select"
PRETRAIN_DIR = "results/pretrain"
COMPRESS_DIR = "results/compress"
EVAL_DIR = "results/evaluate"
MEMORY_DIR = "results/memory"


def step_id(kind: str, body: dict[str, Any]) -> str:
    payload = json.dumps({"kind": kind, **body}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


@dataclass
class Job:
    rule: str                     # the Snakemake rule that runs it
    key: str                      # its wildcard path, unique within the rule
    id: str
    spec: dict[str, Any]          # everything it computes from (input ids included)
    inputs: dict[str, str] = field(default_factory=dict)  # named input files
    output: str = ""              # the primary output (its existence means "done")


@dataclass
class ArmRun:
    """One (arm, model, task, seed) of a claim and the job whose output ends its chain."""

    arm: str
    seed: int
    model: str | None
    task: str | None
    terminal: Job
    jobs: list[Job]


@dataclass
class Plan:
    jobs: dict[str, dict[str, Job]] = field(default_factory=dict)   # rule -> key -> job
    runs: dict[str, list[ArmRun]] = field(default_factory=dict)     # claim -> arm runs

    def add(self, job: Job) -> Job:
        have = self.jobs.setdefault(job.rule, {}).get(job.key)
        if have is not None:
            return have  # shared: same id, same inputs, one job
        self.jobs[job.rule][job.key] = job
        return job

    def get(self, rule: str, key: str) -> Job:
        try:
            return self.jobs[rule][key]
        except KeyError:
            raise ValueError(f"no {rule} job {key} in the plan: its id does not match params.yaml") from None


# --- data: pools ---------------------------------------------------------------------------


def pool_job(cfg: dict[str, Any], name: str) -> Job:
    from reclaim.data import pools

    entry = cfg["pools"][name]
    builder = pools.get(entry["builder"])
    params = builder.Params(**entry.get("params", {}))
    spec = {"builder": entry["builder"], "params": _plain(params.__dict__),
            "wikitext_splits": builder.wikitext_splits(params), "outputs": list(builder.outputs)}
    pid = step_id("pool", spec)
    inputs = {f"glue:{task}/{split}": f"data/glue/{task}/{split}.jsonl"
              for task, split in builder.glue_sources(params)}
    key = f"{name}/{pid}"
    return Job("build_pool", key, pid, {"name": name, **spec}, inputs, f"{POOLS_DIR}/{key}/pool.jsonl")


def pool_files(job: Job) -> dict[str, str]:
    """The files the pool's builder provides (pool, and target/heldout for targeted pools)."""
    base = job.output.rsplit("/", 1)[0]
    return {name: f"{base}/{name}.jsonl" for name in job.spec["outputs"]}


# --- stage 1: select -------------------------------------------------------------------------


def select_jobs(cfg: dict[str, Any], step: dict[str, Any], source: dict[str, Any], seed: int) -> tuple[Job, Job]:
    """The score job (shared by every subset of the same scores) and the subset job.

    ``source``: {"id", "pool", "target" (path or None), "limit", "model", "task"}. A
    ``needs_model`` selector scores with the model of the arm's (model, task) context: the
    model's identity and the task enter its score id (only then, so other ids are unchanged).
    """
    from reclaim import select
    from reclaim.select.subsets import SubsetParams

    name = step["selector"]
    entry = cfg["selectors"][name]
    sel = select.get(entry["selector"])
    params = sel.make_params(entry.get("params"))
    body = {"selector": entry["selector"], "params": _plain(params.__dict__), "data": source["id"],
            "limit": source.get("limit"), "seed": seed if sel.seeded else None}
    if sel.needs_model:
        if not source.get("model"):
            raise ValueError(f"selector {name!r} scores with a model: use it in an arm that trains "
                             "(the arm's (model, task) context gives the model), or give the scale "
                             "score_with: {model, task}")
        body.update(model=train_jobs.model_identity(cfg, source["model"]), task=source["task"])
    sid = step_id("score", body)
    inputs = {"pool": source["pool"], **({"target": source["target"]} if source.get("target") else {})}
    score = Job("score", f"{name}/{sid}", sid, {"name": name, **body}, inputs,
                f"{SELECT_DIR}/scores/{name}/{sid}/scores.tsv")
    sub = SubsetParams(kind=step["subset"], budget=step["budget"], offset=step.get("offset", 0.0),
                       stratify_by=step.get("stratify_by"))
    sbody = {"scores": sid, "subset": _plain(sub.__dict__), "seed": seed if sub.kind == "sample" else None}
    uid = step_id("subset", sbody)
    subset = Job("subset", f"{name}/{uid}", uid, {"name": name, **sbody},
                 {"scores": score.output, "pool": source["pool"]},
                 f"{SELECT_DIR}/subsets/{name}/{uid}/subset.tsv")
    return score, subset


# --- stage 3: continued pretraining ----------------------------------------------------------

STEP_KEYS = ("weight_mode", "reweighting", "pool", "lora")  # pretrain step keys that are not objective params


def pretrain_job(cfg: dict[str, Any], step: dict[str, Any], upstream: dict[str, Any], model: str,
                 seed: int, scale_overrides: dict[str, Any] | None = None) -> Job:
    """Continued pretraining of ``model`` on the pool text (the selection, after a select step).
    The id hashes the objective's params (the step's, then the scale's ``pretrain:`` keys), the
    model identity, the pool and subset ids and the seed, not the task: one pretraining serves
    every task the arm fine-tunes on."""
    from reclaim import reweight
    from reclaim.pretrain._base import resolve

    mode = step.get("weight_mode", "hard")
    params = resolve({**{k: v for k, v in step.items() if k not in STEP_KEYS}, **(scale_overrides or {})})
    body = {"params": _plain(params.as_dict()), "model": train_jobs.model_identity(cfg, model),
            "data": upstream["ids"].get("pool"), "subset": upstream["ids"].get("subset"),
            "weight_mode": mode if upstream["ids"].get("subset") else None, "seed": seed}
    if step.get("reweighting"):  # only then, so unweighted pretraining keeps its id
        body["reweighting"] = reweight.resolve(step["reweighting"])
    inputs = {"pool": upstream["files"]["pool"],
              **({"subset": upstream["files"]["subset"]} if "subset" in upstream["files"] else {}),
              **({"heldout": upstream["files"]["heldout"]} if "heldout" in upstream["files"] else {})}
    # After a compress step: train that model (LoRA on the frozen compressed base, reclaim.pretrain._lora);
    # these keys enter only then, so pretraining a packaged model keeps its id.
    init: dict[str, str] = {}
    artifact = _model_artifact(upstream)
    if artifact:
        body["base"] = artifact[2]
        inputs["base"] = artifact[0]
        init = {"init_dir": artifact[1]}
    if step.get("lora") is not None:
        from reclaim.pretrain._lora import resolve as resolve_lora

        lora = resolve_lora(step["lora"])
        body["lora"] = lora.as_dict()
        if lora.init == "compensation":
            comp = upstream.get("compensation")
            if not comp:
                raise ValueError("pretrain lora.init compensation: needs a compensation step (compress: eora or "
                                 "svd_comp) right before it")
            if comp["rank"] != lora.r:
                raise ValueError(f"pretrain lora.r: {lora.r} differs from the rank {comp['rank']} of the "
                                 "compensation step it starts from")
            inputs["uncompensated"] = comp["base_marker"]
            init = {"init_dir": comp["base_dir"], "adapter_dir": artifact[1] + "/adapter"}
    pid = step_id("pretrain", body)
    return Job("pretrain", pid, pid, {"id": pid, "model_name": model, **body, **init}, inputs,
               f"{PRETRAIN_DIR}/{pid}/pretrain.json")


# --- stage 2: compress ------------------------------------------------------------------------


def compress_params(step: dict[str, Any], scale_overrides: dict[str, Any] | None) -> dict[str, Any]:
    """A compress step's raw params: the step's keys (all but ``method``), then the scale's
    ``compress:`` keys, where a key naming a method holds that method's own overrides and the
    others apply to every method whose params have that field."""
    from reclaim import compress

    method = step["method"]
    fields = set(compress.get(method).Params.__dataclass_fields__)
    raw = {k: v for k, v in step.items() if k != "method"}
    methods = set(compress.names())
    for key, value in (scale_overrides or {}).items():
        if key in methods:
            if key == method:
                raw.update(value)
        elif key in fields:
            raw[key] = value
    return raw


def compress_job(cfg: dict[str, Any], step: dict[str, Any], upstream: dict[str, Any], model: str, seed: int,
                 s: dict[str, Any], task: str | None = None) -> Job:
    """Compress the arm's model, or the model directory an earlier step wrote. The id hashes the
    method's resolved params, the model identity, the earlier step's id when it compresses an
    artifact, and the calibration (split, windows, seqlen and the seed that draws them) for a
    method that calibrates; a calibration-free method (RTN) is one job for every seed."""
    from reclaim import compress
    from reclaim.compress._base import Calibration
    from reclaim.data.lm_text import prepared_path

    comp = compress.get(step["method"])
    params = comp.make_params(compress_params(step, s.get("compress")))
    artifact = _model_artifact(upstream)
    body: dict[str, Any] = {"method": step["method"], "params": _plain(params.__dict__),
                            "model": train_jobs.model_identity(cfg, model),
                            "base": artifact[2] if artifact else None}
    inputs: dict[str, str] = {}
    if comp.needs_calibration:
        cal = Calibration(**s.get("calibration", {}))
        body.update(calibration=_plain(cal.__dict__), seed=seed)
        if cal.source == "task":  # the arm's task's training split (a fine-tuned classifier)
            if "train_split" not in upstream["files"]:
                raise ValueError(f"compress {step['method']}: calibration source 'task' needs a train step "
                                 "before it (the task's training split)")
            inputs["calibration"] = upstream["files"]["train_split"]
            body.update(task=task, calibration_data=upstream["ids"].get("pool"))
        else:
            inputs["calibration"] = prepared_path(cal.split)
    if artifact:
        inputs["base"] = artifact[0]
    cid = step_id("compress", body)
    return Job("compress", f"{step['method']}/{cid}", cid,
               {"id": cid, "model_name": model, "framing": cfg["models"][model]["framing"], **body,
                "base_dir": artifact[1] if artifact else ""}, inputs,
               f"{COMPRESS_DIR}/{step['method']}/{cid}/compress.json")


def _model_artifact(upstream: dict[str, Any]) -> tuple[str, str, str] | None:
    """(marker file, model directory, id) of the latest model an earlier step wrote."""
    for marker, kind in (("compressed", "compress"), ("pretrained", "pretrain"), ("trained", "train")):
        if marker in upstream.get("latest_model", ()):
            return upstream["files"][marker], upstream["files"]["model_dir"], f"{kind}/{upstream['ids'][kind]}"
    return None


# --- stage 3: memory probe ------------------------------------------------------------------


def probe_job(cfg: dict[str, Any], claim: str, scale: str, step: dict[str, Any], model: str, task: str,
              seed: int, s: dict[str, Any]) -> Job:
    """The memory of one training step of ``step["method"]`` in the arm's (model, task)
    context (reclaim.probe): the train spec the quality run would have (its hash, not its
    outputs: the probe never waits for training), the probe's batch, and the seed."""
    from reclaim import probe

    spec = train_jobs.make_spec(cfg, claim, model, task, step["method"], seed, scale)
    params = probe.resolve({**{k: v for k, v in step.items() if k != "method"}, **(s.get("probe") or {})})
    body = {"train": spec["cfg"], "seed": seed, "probe": _plain(params.__dict__)}
    pid = step_id("probe", body)
    key = f"{step['method']}/{pid}"
    return Job("memory_probe", key, pid,
               {"id": pid, "train_spec": spec, "probe": _plain(params.__dict__)},
               {"train": split_path(task, "train")}, f"{MEMORY_DIR}/{key}/memory.json")


# --- stage 4: evaluate ---------------------------------------------------------------------


def evaluate_job(step: dict[str, Any], upstream: dict[str, Any], seed: int | None = None,
                 context: dict[str, Any] | None = None, scale_overrides: dict[str, Any] | None = None) -> Job:
    """``seed`` enters the id only for a seeded evaluator (a simulation that reads no inputs,
    whose seed is its only source of variation), so other evaluations keep their ids.
    ``context`` ({"model": identity, "task"}) enters it only for a ``needs_model`` evaluator
    (one that embeds with the arm's model, like a ``needs_model`` selector)."""
    from reclaim import evaluate

    ev = evaluate.get(step["evaluator"])
    # the scale's ``evaluate: {evaluator: {...}}`` replaces params at that scale (windows at smoke)
    params = ev.make_params({**(step.get("params") or {}), **(scale_overrides or {}).get(step["evaluator"], {})})
    missing = [k for k in ev.inputs if k not in upstream["files"]]
    if missing:
        raise ValueError(f"evaluator {step['evaluator']!r} needs {', '.join(missing)} from the steps before it")
    body = {"evaluator": step["evaluator"], "params": _plain(params.__dict__),
            "inputs": upstream["ids"]}
    files = {k: upstream["files"][k] for k in ev.inputs}
    # a model the step before wrote (compressed, pretrained) when the evaluator scores models
    files.update({k: upstream["files"][k] for k in getattr(ev, "optional_inputs", ())
                  if k in upstream.get("latest_model", ())})
    if hasattr(ev, "data_inputs"):  # prepared data it reads (e.g. data/wikitext/test.txt)
        files.update(ev.data_inputs(params))
    if getattr(ev, "seeded", False):
        body["seed"] = seed
    if getattr(ev, "needs_model", False):
        if not (context or {}).get("model"):
            raise ValueError(f"evaluator {step['evaluator']!r} embeds with a model: use it in an arm that trains, "
                             "or give the scale score_with: {model, task}")
        body.update(model=context["model"], task=context["task"])
    eid = step_id("evaluate", body)
    return Job("evaluate", f"{step['evaluator']}/{eid}", eid, body, files,
               f"{EVAL_DIR}/{step['evaluator']}/{eid}/metrics.json")


# --- arms ------------------------------------------------------------------------------------


def arms_of(claim: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The claim's arms; ``methods: [m, ...]`` is shorthand for arms ``m: [{train: {method: m}}]``."""
    if "arms" in claim:
        return claim["arms"]
    return {m: [{"train": {"method": m}}] for m in claim["methods"]}


def step_stage(step: dict[str, Any]) -> str:
    (stage,) = step.keys()
    return stage


def build(cfg: dict[str, Any], tasks_by_claim: dict[str, list[str]] | None = None,
          scale: str | None = None) -> Plan:
    """Every job of every claim at the selected scale, deduplicated by identity."""
    plan = Plan()
    scale = scale or cfg["scale"]
    for cname, claim in cfg["claims"].items():
        s = claim["scales"][scale]
        tasks = (tasks_by_claim or {}).get(cname, s.get("tasks", []))
        runs: list[ArmRun] = []
        arms = arms_of(claim)
        if s.get("arms"):  # the arms this scale runs (e.g. no W4 arms on a Q4-grid subject)
            arms = {a: arms[a] for a in s["arms"]}
        # arms that train (or probe a training step) run per (model, task) context
        trained = {a: any(step_stage(st) in ("train", "probe") for st in steps) for a, steps in arms.items()}
        seeds = {a: s.get("seeds_by_arm", {}).get(a, s["seeds"]) for a in arms}  # cheap arms: more
        for model, task in train_jobs.contexts(s, tasks):
            for arm, steps in arms.items():
                if trained[arm]:
                    runs += [_arm_run(plan, cfg, cname, scale, arm, steps, model, task, int(seed))
                             for seed in seeds[arm]]
        for arm, steps in arms.items():
            if not trained[arm]:
                runs += [_arm_run(plan, cfg, cname, scale, arm, steps, None, None, int(seed))
                         for seed in seeds[arm]]
        plan.runs[cname] = runs
    return plan


def _arm_run(plan: Plan, cfg: dict[str, Any], claim: str, scale: str, arm: str, steps: list[dict[str, Any]],
             model: str | None, task: str | None, seed: int) -> ArmRun:
    from reclaim import compress

    s = train_jobs.scale_settings(cfg, claim, scale, task)
    made: list[Job] = []
    upstream: dict[str, Any] = {"files": {}, "ids": {}}
    if s.get("pool"):
        pj = plan.add(pool_job(cfg, s["pool"]))
        made.append(pj)
        upstream = {"files": pool_files(pj), "ids": {"pool": pj.id}}
    elif task:  # the training split, subsampled exactly as the train job subsamples it
        limit = s.get("max_train_examples")
        upstream = {"files": {"pool": split_path(task, "train")},
                    "ids": {"pool": f"{data_family(task)}/{task}/train@{limit}"}, "limit": limit}
    # Arms that do not train score model-based selectors in the scale's ``score_with``
    # context (a pool has no (model, task) of its own).
    # ``subject`` names the model of arms that compress and evaluate a model without a task.
    score_ctx = ({"model": model, "task": task} if model
                 else dict(s.get("score_with") or ({"model": s["subject"], "task": None} if s.get("subject") else {})))
    for step in steps:
        stage = step_stage(step)
        body = step[stage]
        if stage == "select":
            source = {"id": upstream["ids"].get("pool"), "pool": upstream["files"]["pool"],
                      "target": upstream["files"].get("target"), "limit": upstream.get("limit"),
                      "model": score_ctx.get("model"), "task": score_ctx.get("task")}
            score, subset = select_jobs(cfg, body, source, seed)
            made += [plan.add(score), plan.add(subset)]
            # the scores file is readable downstream; its id is already in the subset's
            upstream = {**upstream, "files": {**upstream["files"], "subset": subset.output, "scores": score.output},
                        "ids": {**upstream["ids"], "subset": subset.id}}
        elif stage == "train":
            selection = None
            if "subset" in upstream["ids"]:
                selection = {"id": upstream["ids"]["subset"], "weight_mode": body.get("weight_mode", "hard")}
            init = None
            if "pretrain" in upstream["ids"]:  # fine-tune the arm's pretrained weights
                init = {"pretrain": upstream["ids"]["pretrain"], "model_dir": upstream["files"]["model_dir"]}
                selection = None  # the selection shaped the pretraining text, not the task data
            spec = train_jobs.make_spec(cfg, claim, model, task, body["method"], seed, scale, selection=selection,
                                        reweighting=body.get("reweighting"), init=init)
            inputs = {"train": split_path(task, "train"), "dev": split_path(task, "dev")}
            if selection:
                inputs["subset"] = upstream["files"]["subset"]
            if init:
                inputs["pretrained"] = upstream["files"]["pretrained"]
            job = plan.add(Job("train", spec["job_id"], spec["cfg"], spec, inputs, train_jobs.result_path(spec)))
            made.append(job)
            upstream = {**upstream, "files": {**upstream["files"], "result": job.output,
                                              "train_split": inputs["train"], "dev_split": inputs["dev"]},
                        "ids": {**upstream["ids"], "train": f"{job.id}/seed{seed}"}}
            if train_jobs.saves_model(cfg, body["method"]):  # a model a later step can compress
                upstream.update(latest_model=("trained",), files={
                    **upstream["files"], "trained": job.output, "model_dir": job.output.rsplit("/", 1)[0] + "/adapter"})
        elif stage == "probe":
            job = plan.add(probe_job(cfg, claim, scale, body, model, task, seed, s))
            made.append(job)
            upstream = {**upstream, "files": {**upstream["files"], "memory": job.output},
                        "ids": {**upstream["ids"], "probe": job.id}}
        elif stage == "pretrain":
            if body.get("pool"):  # the step's own text (the arm has no pool of its own); a model an
                pj = plan.add(pool_job(cfg, body["pool"]))  # earlier step wrote stays the one trained
                made.append(pj)
                kept = {k: upstream["files"][k] for k in ("compressed", "pretrained", "trained", "model_dir")
                        if k in upstream["files"]}
                upstream = {**{k: upstream[k] for k in ("latest_model", "compensation") if k in upstream},
                            "files": {**pool_files(pj), **kept},
                            "ids": {"pool": pj.id, **{k: upstream["ids"][k] for k in ("compress", "pretrain")
                                                     if k in upstream["ids"]}}}
            job = plan.add(pretrain_job(cfg, body, upstream, score_ctx["model"], seed, s.get("pretrain")))
            made.append(job)
            upstream = {**upstream,
                        "files": {**upstream["files"], "pretrained": job.output,
                                  "model_dir": job.output.rsplit("/", 1)[0] + "/model"},
                        "ids": {**upstream["ids"], "pretrain": job.id}, "latest_model": ("pretrained",)}
        elif stage == "compress":
            job = plan.add(compress_job(cfg, body, upstream, score_ctx["model"], seed, s, score_ctx.get("task")))
            made.append(job)
            before = _model_artifact(upstream)
            compensation = None
            if before and "rank" in job.spec["params"] and compress.get(body["method"]).needs_original:
                compensation = {"rank": job.spec["params"]["rank"], "base_marker": before[0], "base_dir": before[1]}
            upstream = {**{k: v for k, v in upstream.items() if k != "compensation"},
                        "files": {**upstream["files"], "compressed": job.output,
                                  "model_dir": job.output.rsplit("/", 1)[0] + "/model"},
                        "ids": {**upstream["ids"], "compress": job.id}, "latest_model": ("compressed",)}
            if compensation:  # a LoRA step right after may start from these factors on that base
                upstream["compensation"] = compensation
        elif stage == "evaluate":
            ctx = ({"model": train_jobs.model_identity(cfg, score_ctx["model"]), "task": score_ctx.get("task")}
                   if score_ctx.get("model") else None)
            job = plan.add(evaluate_job(body, upstream, seed, ctx, s.get("evaluate")))
            made.append(job)
            upstream = {**upstream, "files": {**upstream["files"], "metrics": job.output},
                        "ids": {**upstream["ids"], "evaluate": job.id}}
        else:
            raise ValueError(f"claims.{claim}.arms.{arm}: unknown stage {stage!r}")
    return ArmRun(arm, seed, model, task, made[-1], made)


def _plain(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj
