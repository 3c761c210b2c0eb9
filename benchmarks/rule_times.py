"""Where a claim's wall time went: Snakemake ``benchmark:`` files summed by rule and method.

For every job the claim needs at a scale, reads ``results/benchmarks/<rule>/...tsv`` (wall
seconds, CPU seconds, peak RSS that Snakemake measured around the job) and, for training
jobs, the ``timings`` block of ``result.json`` (what the job spent inside Python: model
load, adapter init, training, evaluation). The difference between the two is the per-job
fixed cost outside reclaim's code: interpreter start and imports.

    .venv/bin/python benchmarks/rule_times.py --claim lora_ga_glue --scale smoke
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from reclaim.config import load  # noqa: E402
from reclaim.jobs import claim_jobs  # noqa: E402

BENCH = Path("results/benchmarks")


def _tsv(path: Path) -> dict[str, float] | None:
    if not path.is_file():
        return None
    rows = list(csv.DictReader(path.open(), delimiter="\t"))
    return {k: float(v) for k, v in rows[-1].items() if k != "h:m:s" and v not in ("", "NA")} if rows else None


def collect(claim: str, scale: str, params: Path) -> dict[str, object]:
    cfg = load(params, {"scale": scale})
    groups: dict[str, list[dict[str, float]]] = defaultdict(list)
    missing = 0
    for spec in claim_jobs(cfg, claim):
        bench = _tsv(BENCH / "train" / f"{spec['job_id']}.tsv")
        result = Path("results/runs") / spec["job_id"] / "result.json"
        if bench is None or not result.is_file():
            missing += 1
            continue
        t = json.loads(result.read_text())["timings"]
        row = {"wall_s": bench["s"], "cpu_s": bench.get("cpu_time", float("nan")),
               "rss_mb": bench.get("max_rss", float("nan")), "job_s": t["job_s"],
               "load_s": t["load_s"], "init_s": t["init_s"], "train_s": t["train_s"],
               "eval_s": t["eval_s"], "outside_s": bench["s"] - t["job_s"]}
        groups[f"train[{spec['method']['name']}]"].append(row)
        groups["train"].append(row)
    for rule, pattern in (("prepare_glue", "prepare_glue/*/*.tsv"), ("claim_table", f"claim_table/{claim}.tsv")):
        for path in sorted(BENCH.glob(pattern)):
            b = _tsv(path)
            if b:
                groups[rule].append({"wall_s": b["s"], "cpu_s": b.get("cpu_time", float("nan")),
                                     "rss_mb": b.get("max_rss", float("nan"))})
    table = []
    order = sorted(groups, key=lambda n: (n != "train", not n.startswith("train"), n))
    for name in order:
        rows = groups[name]
        entry: dict[str, object] = {"group": name, "jobs": len(rows)}
        for key in rows[0]:
            vals = [r[key] for r in rows]
            entry[f"{key}_sum"] = round(sum(vals), 2)
            entry[f"{key}_median"] = round(statistics.median(vals), 2)
        table.append(entry)
    return {"claim": claim, "scale": scale, "train_jobs_without_benchmark": missing, "groups": table}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--claim", default="lora_ga_glue")
    p.add_argument("--scale", default="smoke")
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    p.add_argument("--out", type=Path, help="also write the summary as JSON")
    a = p.parse_args(argv)
    report = collect(a.claim, a.scale, a.params)
    cols = ["wall_s", "cpu_s", "job_s", "load_s", "init_s", "train_s", "eval_s", "outside_s"]
    print(f"{'group':<22}{'jobs':>5}" + "".join(f"{c + ' sum':>14}" for c in cols) + f"{'rss_mb med':>12}")
    for g in report["groups"]:
        cells = "".join(f"{g.get(c + '_sum', ''):>14}" for c in cols)
        print(f"{g['group']:<22}{g['jobs']:>5}{cells}{g['rss_mb_median']:>12}")
    for g in report["groups"]:
        if g["group"] == "train":
            print(f"per training job, median: wall {g['wall_s_median']} s, of which outside reclaim's "
                  f"code (interpreter start, imports) {g['outside_s_median']} s, model load "
                  f"{g['load_s_median']} s, adapter init {g['init_s_median']} s")
    if report["train_jobs_without_benchmark"]:
        print(f"({report['train_jobs_without_benchmark']} training jobs have no benchmark/result yet)")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
