# Validate the config, resolve models and data, and build the job index, all before any
# job is scheduled (a bad params.yaml fails here, naming the key).
from reclaim.config import ConfigError, validate
from reclaim.data.glue import missing_files
from reclaim.jobs import claim_jobs, code_closure, glue_dir, result_path, train_code
from reclaim.models import ModelNotAvailable, resolve
from reclaim.tracking import tracking_uri

try:
    validate(config, "params.yaml (with --config/--configfile overrides)")
except ConfigError as exc:
    sys.exit(f"reclaim: {exc}")

PY = sys.executable
SCALE = config["scale"]
GLUE_DIR = glue_dir(config) or ""
TRACKING_URI = tracking_uri(config["tracking"]["uri"])
EXPERIMENT = config["tracking"]["experiment"]


def _missing_tasks(claim):
    """Tasks whose GLUE files are absent: skipped with one line each, marked in the result."""
    if not GLUE_DIR:
        return {}
    out = {}
    for task in config["claims"][claim]["scales"][SCALE]["tasks"]:
        absent = missing_files(GLUE_DIR, task)
        if absent:
            out[task] = f"{absent[0]} not found"
    return out


MISSING = {claim: _missing_tasks(claim) for claim in config["claims"]}
for _claim, _tasks in MISSING.items():
    for _task, _why in _tasks.items():
        print(f"reclaim: {_claim}: skipping task {_task} ({_why})", file=sys.stderr)

CLAIM_TASKS = {c: config["claims"][c]["scales"][SCALE]["tasks"] for c in config["claims"]}
CLAIM_JOBS = {
    c: claim_jobs(config, c, tasks=[t for t in CLAIM_TASKS[c] if t not in MISSING[c]])
    for c in config["claims"]
}
JOBS = {spec["job_id"]: spec for specs in CLAIM_JOBS.values() for spec in specs}
JOB_CLAIM = {spec["job_id"]: c for c, specs in CLAIM_JOBS.items() for spec in specs}

try:
    MODELS = {
        name: resolve(name, config["models"][name])
        for name in sorted({s["model"]["name"] for s in JOBS.values()})
    }
except ModelNotAvailable as exc:
    sys.exit(f"reclaim: {exc}")


def job(wildcards):
    key = f"{wildcards.model}/{wildcards.task}/{wildcards.method}/{wildcards.cfg}/seed{wildcards.seed}"
    if key not in JOBS:
        raise ValueError(f"no job {key} at scale {SCALE}: the spec hash does not match params.yaml")
    return JOBS[key]


def scale_resources(wildcards, key, default):
    claim = JOB_CLAIM[job(wildcards)["job_id"]]
    return config["claims"][claim]["scales"][SCALE].get("resources", {}).get(key, default)


onstart:
    shell(f"{PY} -m reclaim init-tracking --uri '{TRACKING_URI}' --experiment '{EXPERIMENT}'")
