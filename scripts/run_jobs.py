"""Run the jobs listed by `reclaim jobs` on a machine without Snakemake (an offline GPU
box, say), several at a time, each through the same `python -m reclaim train` entry point
the Snakemake rule calls. Results land at the same paths, so copying results/runs back
lets Snakemake aggregate them.

    python -m reclaim jobs --claim lora_ga_glue --scale small > jobs.jsonl
    python scripts/run_jobs.py jobs.jsonl --parallel 6 --device cuda
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path


def run_one(job: dict, device: str, threads: int, tracking_uri: str) -> tuple[str, int, float]:
    out = Path(job["out"])
    if out.is_file():
        return job["job_id"], 0, 0.0
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "reclaim", "train", "--spec", json.dumps(job["spec"]),
           "--model", json.dumps(job["model"]), "--train", job["train"], "--dev", job["dev"],
           "--out", str(out), "--scale", job["scale"], "--threads", str(threads),
           "--device", device, "--tracking-uri", tracking_uri, "--no-progress"]
    t0 = time.perf_counter()
    with open(out.parent / "train.log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    return job["job_id"], rc, time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("jobs", help="JSON lines from `reclaim jobs`")
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--tracking-uri", default="", help="empty: no MLflow (result.json keeps everything)")
    a = p.parse_args()
    jobs = [json.loads(line) for line in open(a.jobs) if line.strip()]
    t0 = time.perf_counter()
    failed = 0
    with ThreadPoolExecutor(max_workers=a.parallel) as pool:
        futures = [pool.submit(run_one, j, a.device, a.threads, a.tracking_uri) for j in jobs]
        for i, fut in enumerate(as_completed(futures), 1):
            job_id, rc, secs = fut.result()
            failed += rc != 0
            print(f"[{i}/{len(jobs)}] {'ok ' if rc == 0 else 'FAIL'} {job_id} {secs:.1f}s", flush=True)
    print(f"{len(jobs) - failed} ok, {failed} failed, wall {time.perf_counter() - t0:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
