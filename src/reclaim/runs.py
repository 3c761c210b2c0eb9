"""MLflow runs by the commit that produced them, and two commits side by side.

Every training run is tagged ``git_commit`` (and ``git_dirty``) when it starts, so the runs
of a commit are one ``search_runs`` filter away. A job that Snakemake did not rerun at a
later commit keeps its earlier run: comparing two commits therefore lists the jobs that ran
at both, and says which ran at only one.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


class RunsError(ValueError):
    pass


def full_commit(repo: str | Path, rev: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunsError(f"unknown revision {rev!r} in {repo}")
    return proc.stdout.strip()


def search(uri: str, experiment: str, commit: str, claim: str | None = None) -> list[dict[str, Any]]:
    """Training runs tagged with ``commit``: one dict per run (job, status, eval metrics)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise RunsError(f"no MLflow experiment {experiment!r} at {uri}")
    query = f"tags.git_commit = '{commit}' and tags.`reclaim.rule` = 'train'"
    if claim:
        query += f" and tags.`claim.{claim}` = 'true'"
    out = []
    for run in client.search_runs([exp.experiment_id], query, max_results=50000,
                                  order_by=["attributes.start_time ASC"]):
        t = run.data.tags
        out.append({
            "job_id": t.get("reclaim.job_id", run.info.run_name), "run_id": run.info.run_id,
            "slot": "/".join([t.get("reclaim.model", "?"), t.get("reclaim.task", "?"),
                              t.get("reclaim.method", "?"), f"seed{t.get('reclaim.seed', '?')}"]),
            "cfg": t.get("reclaim.cfg", ""),
            "status": run.info.status, "scale": t.get("reclaim.scale", ""),
            "dirty": t.get("git_dirty", ""), "claim": t.get("claim", ""),
            "metrics": {k[5:]: v for k, v in run.data.metrics.items() if k.startswith("eval_")},
        })
    return out


def latest_by_slot(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last FINISHED run per (model, task, method, seed): the same slot across commits
    even when a hyperparameter change gave the job a new config hash."""
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        if r["status"] == "FINISHED":
            out[r["slot"]] = r
    return out


def render_runs(commit: str, runs: list[dict[str, Any]]) -> str:
    lines = [f"{len(runs)} training run(s) at {commit[:12]}"]
    for r in runs:
        m = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["metrics"].items()))
        lines.append(f"  {r['job_id']}  {r['status']}  {r['scale']}  {m}  run {r['run_id'][:8]}")
    return "\n".join(lines)


def render_compare(a: str, b: str, runs_a: list[dict[str, Any]], runs_b: list[dict[str, Any]]) -> str:
    la, lb = latest_by_slot(runs_a), latest_by_slot(runs_b)
    lines = [f"runs at {a[:12]} vs {b[:12]}"]
    both = sorted(set(la) & set(lb))
    for job in both:
        ma, mb = la[job]["metrics"], lb[job]["metrics"]
        parts = []
        for k in sorted(set(ma) | set(mb)):
            x, y = ma.get(k), mb.get(k)
            d = f" ({y - x:+.2f})" if x is not None and y is not None else ""
            parts.append(f"{k} {x if x is None else round(x, 2)} -> {y if y is None else round(y, 2)}{d}")
        cfgs = la[job]["cfg"] if la[job]["cfg"] == lb[job]["cfg"] else f"{la[job]['cfg']} -> {lb[job]['cfg']}"
        lines.append(f"  {job} [{cfgs}]: " + "; ".join(parts))
    for label, only in ((a, sorted(set(la) - set(lb))), (b, sorted(set(lb) - set(la)))):
        for job in only:
            lines.append(f"  {job}: ran only at {label[:12]}")
    if len(lines) == 1:
        lines.append("  no finished runs at either commit")
    return "\n".join(lines)
