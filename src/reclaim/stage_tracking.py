"""MLflow records for the non-training stage jobs (pools, scores, subsets, evaluations):
one run per job with its spec as params, counts and timings as metrics, and the tags
training runs carry (rule, job id, scale, git commit)."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def tracked(a: argparse.Namespace, rule: str, job_id: str, spec: dict[str, Any]) -> Iterator[dict[str, float]]:
    """Yield a dict the job fills with metrics; logged as one MLflow run when a store is set."""
    metrics: dict[str, float] = {}
    t0 = time.perf_counter()
    yield metrics
    metrics["time_job_s"] = time.perf_counter() - t0
    uri = getattr(a, "tracking_uri", "")
    if not uri:
        return
    from reclaim.tracking import Tracker, git_state, tracking_uri

    tags = {"reclaim.rule": rule, "reclaim.job_id": job_id, "reclaim.scale": getattr(a, "scale", ""),
            **git_state()}
    tr = Tracker(tracking_uri(uri), a.experiment, run_name=f"{rule}/{job_id}", tags=tags, params=spec)
    tr.finish({k: v for k, v in metrics.items() if isinstance(v, (int, float))})


