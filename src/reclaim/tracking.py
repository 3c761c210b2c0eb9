"""MLflow tracking: one run per job, step losses flushed in batches while training.

The default store is sqlite (``mlflow.db``); ``MLFLOW_TRACKING_URI`` overrides the
configured URI. A fresh sqlite store must be created once before parallel jobs start
(concurrent first-time schema migrations race), which ``init_store`` does from the
Snakefile's ``onstart``. Client calls retry briefly on sqlite lock contention.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
SRC_ROOT = Path(__file__).resolve().parents[2]


def tracking_uri(configured: str) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or configured


def git_state(root: Path = SRC_ROOT) -> dict[str, str]:
    """Commit and dirty flag of the code that ran (the reclaim checkout)."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True).stdout
        return {"git_commit": commit, "git_dirty": str(bool(status.strip())).lower()}
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}


def _retry(fn: Callable[[], T], attempts: int = 8) -> T:
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:  # sqlite 'database is locked' surfaces as several types
            if "locked" not in str(exc).lower() or i == attempts - 1:
                raise
            time.sleep(0.2 * 2**i)
    raise AssertionError("unreachable")


def init_store(uri: str, experiment: str) -> str:
    """Create the store and experiment once; returns the experiment id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(experiment)
    except Exception:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise
        return exp.experiment_id


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:6000]
    return out


class Tracker:
    """A job's MLflow run; metrics are buffered and written with log_batch."""

    def __init__(self, uri: str, experiment: str, run_name: str, tags: dict[str, str],
                 params: dict[str, Any], log_every: int = 10) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        exp_id = _retry(lambda: init_store(uri, experiment))
        run = _retry(lambda: self.client.create_run(exp_id, run_name=run_name, tags=tags))
        self.run_id = run.info.run_id
        self.log_every = log_every
        self._buffer: list[Any] = []
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            _retry(lambda chunk=items[i:i + 100]: self.client.log_batch(self.run_id, params=chunk))

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), ts, step) for k, v in metrics.items())
        if step % self.log_every == 0:
            self.flush()

    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:1000], self._buffer[1000:]
            _retry(lambda c=chunk: self.client.log_batch(self.run_id, metrics=c))

    def finish(self, metrics: dict[str, float], status: str = "FINISHED") -> None:
        self._buffer.extend(_metric(k, v) for k, v in metrics.items())
        self.flush()
        _retry(lambda: self.client.set_terminated(self.run_id, status=status))


def _metric(key: str, value: float) -> Any:
    from mlflow.entities import Metric

    return Metric(key, float(value), int(time.time() * 1000), 0)


def tag_runs(uri: str, experiment: str, job_ids: list[str], claim: str) -> int:
    """Mark the runs that produced ``job_ids`` as used by ``claim`` (a run shared by two
    claims carries both). Returns the number of runs tagged."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return 0
    wanted = set(job_ids)
    n = 0
    for run in client.search_runs([exp.experiment_id], "tags.`reclaim.rule` = 'train'", max_results=50000):
        if run.data.tags.get("reclaim.job_id") not in wanted:
            continue
        claims = set(filter(None, run.data.tags.get("claim", "").split(",")))
        _retry(lambda r=run: client.set_tag(r.info.run_id, f"claim.{claim}", "true"))
        _retry(lambda r=run, c=claims: client.set_tag(r.info.run_id, "claim", ",".join(sorted(c | {claim}))))
        n += 1
    return n
