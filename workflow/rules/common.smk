# Validate the config, resolve models and data, and build the plan (every job of every claim
# with its composed identity, reclaim.plan), all before any job is scheduled: a bad
# params.yaml fails here, naming the key.
from reclaim import plan as reclaim_plan
from reclaim.config import ConfigError, validate
from reclaim.data.glue import TASKS as GLUE_TASKS, missing_files, task_file
from reclaim.data.tasks import split_path
from reclaim.jobs import code_stamp, glue_dir, result_path, train_modules
from reclaim.models import ModelNotAvailable, resolve
from reclaim.tracking import tracking_uri

try:
    validate(config, "params.yaml (with --config/--configfile overrides)")
except ConfigError as exc:
    sys.exit(f"reclaim: {exc}")

PY = sys.executable
SCALE = config["scale"]
GLUE_DIR = glue_dir(config) or ""
WIKITEXT_DIR = os.path.realpath(os.path.expanduser(
    os.environ.get("WIKITEXT_DIR") or config["data"].get("wikitext_dir") or "")) if (
    os.environ.get("WIKITEXT_DIR") or config["data"].get("wikitext_dir")) else ""
TRACKING_URI = tracking_uri(config["tracking"]["uri"])
EXPERIMENT = config["tracking"]["experiment"]


def _missing_tasks(claim):
    """Tasks whose GLUE files are absent: skipped with one line each, marked in the result."""
    if not GLUE_DIR:
        return {}
    out = {}
    for task in config["claims"][claim]["scales"][SCALE].get("tasks", []):
        if task not in GLUE_TASKS:  # image tasks: their prepare rule names a missing source
            continue
        absent = missing_files(GLUE_DIR, task)
        if absent:
            out[task] = f"{absent[0]} not found"
    return out


MISSING = {claim: _missing_tasks(claim) for claim in config["claims"]}
for _claim, _tasks in MISSING.items():
    for _task, _why in _tasks.items():
        print(f"reclaim: {_claim}: skipping task {_task} ({_why})", file=sys.stderr)

CLAIM_TASKS = {c: config["claims"][c]["scales"][SCALE].get("tasks", []) for c in config["claims"]}
try:
    PLAN = reclaim_plan.build(
        config, tasks_by_claim={c: [t for t in CLAIM_TASKS[c] if t not in MISSING[c]] for c in config["claims"]})
except (KeyError, ValueError) as exc:
    sys.exit(f"reclaim: {exc}")

# Data a pool is built from must exist: a missing source is reported when a target needs the
# pool (build_pool's input function raises while the DAG is built, before any job starts),
# so claims that do not use the pool still run.
POOL_PROBLEMS = {}
for _key, _job in PLAN.jobs.get("build_pool", {}).items():
    for _ref in _job.inputs:
        _task, _split = _ref.split(":", 1)[1].split("/")
        if GLUE_DIR and not task_file(GLUE_DIR, _task, _split).is_file():
            POOL_PROBLEMS.setdefault(_key, f"pools.{_job.spec['name']}: {task_file(GLUE_DIR, _task, _split)} not found")
    for _split in _job.spec["wikitext_splits"]:
        if WIKITEXT_DIR and not os.path.isfile(os.path.join(WIKITEXT_DIR, f"{_split}.txt")):
            POOL_PROBLEMS.setdefault(_key, f"pools.{_job.spec['name']}: {WIKITEXT_DIR}/{_split}.txt not found")

JOBS = {key: job.spec for key, job in PLAN.jobs.get("train", {}).items()}
JOB_CLAIMS = {}  # (rule, key) -> every claim that needs the job (identical jobs are shared)
for _claim, _runs in PLAN.runs.items():
    for _run in _runs:
        for _job in _run.jobs:
            _claims = JOB_CLAIMS.setdefault((_job.rule, _job.key), [])
            if _claim not in _claims:
                _claims.append(_claim)

class _Models(dict):
    """Models resolved on first use, i.e. only for the jobs the requested targets need (a
    claim whose model is absent does not block the others); still before any job starts,
    since rule params are evaluated while the DAG is built."""

    def __missing__(self, name):
        try:
            self[name] = resolve(name, config["models"][name])
        except ModelNotAvailable as exc:
            raise ValueError(f"reclaim: {exc}") from None
        return self[name]


MODELS = _Models()


def job(wildcards):
    key = f"{wildcards.model}/{wildcards.task}/{wildcards.method}/{wildcards.cfg}/seed{wildcards.seed}"
    if key not in JOBS:
        raise ValueError(f"no job {key} at scale {SCALE}: the spec hash does not match params.yaml")
    return JOBS[key]


def plan_job(rule, key):
    return PLAN.get(rule, key)


def scale_resources(wildcards, key, default, rule="train", job_key=None):
    if job_key is None:
        job_key = job(wildcards)["job_id"]
    # a job several claims share gets the most any of them asks for (threads, memory, time, GPUs)
    asked = [config["claims"][c]["scales"][SCALE].get("resources", {}).get(key)
             for c in JOB_CLAIMS[(rule, job_key)]]
    asked = [a for a in asked if a is not None]
    return max(asked) if asked else default


onstart:
    shell(f"{PY} -m reclaim init-tracking --uri '{TRACKING_URI}' --experiment '{EXPERIMENT}'")
