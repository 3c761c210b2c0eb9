"""How long ``snakemake -n`` takes as the DAG grows: reclaim's workflow against a bare
Snakemake workflow with the same number of jobs, plus a no-op dry run over every claim.

For each target size N:

- reclaim: a throwaway copy of the workflow (``reclaim.testing.copy_workflow``) with a
  ``--configfile`` override that gives the flagship claim as many seeds as it takes to reach
  about N jobs (jobs per seed are measured, not assumed, so added stages just change the
  seed count), on tiny local models and a generated GLUE directory (nothing from the Hub);
  timed: ``python -m snakemake -n results/<claim>.csv``.
- bare: a generated Snakefile with no reclaim code: one ``train``-like rule with the same
  wildcards, a JSON-spec param, log, benchmark and resource functions, plus an ``all``
  target, sized to the same job count as the reclaim DAG; timed: ``python -m snakemake -n``.
- bare-like (``--no-bare-like`` skips it): the same, shaped like reclaim's train rule: as
  many input files per job (the code files from an input function), two upstream data files
  from a ``prepare`` rule, as many input/param/resource functions. The difference between it
  and reclaim is what reclaim's own code (config, plan, lookups) costs; the difference
  between it and bare is what Snakemake spends on the richer rule.

Both are whole processes (interpreter start, Snakemake import, parse, DAG, the dry-run
listing), run alternately, ``--repeats`` times each; the job count is read from Snakemake's
own "Job stats" table. The no-op measurement builds every output of the default target
(every claim at smoke scale, tiny models) as placeholder files and times ``snakemake -n``,
which must answer "Nothing to be done".

    .venv/bin/python benchmarks/plan_scaling.py                       # 100, 1000, 10000 jobs
    .venv/bin/python benchmarks/plan_scaling.py --sizes 100 1000 --repeats 1 --out /tmp/p.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC_DIR = REPO_ROOT / "src"
if str(SRC_DIR) not in sys.path:
    sys.path.insert(0, str(SRC_DIR))

from reclaim.testing import (  # noqa: E402
    GLUE_FIXTURE_TASKS,
    copy_workflow,
    tiny_claim_params,
    workflow_env,
    write_glue_fixture,
    write_tiny_model,
)

CLAIM = "lora_ga_glue"  # the claim tiny_claim_params overrides; N grows through its seeds
TASK = "sst2"
BARE_METHODS = ("full_ft", "lora", "lora_ga")
FRAMING_KIND = {"encoder_cls": "bert", "causal_lm": "gpt2", "seq2seq": "t5"}
TOTAL_RE = re.compile(r"^total\s+(\d+)\s*$", re.M)
OUTPUT_RE = re.compile(r"^\s+output: (.+)$", re.M)
NOTHING = "Nothing to be done"


# ---------------------------------------------------------------------------------------------
# Running Snakemake
# ---------------------------------------------------------------------------------------------


class Timed:
    def __init__(self, wall: float, cpu: float, proc: subprocess.CompletedProcess[str]) -> None:
        self.wall, self.cpu, self.proc = wall, cpu, proc


def _snakemake(work: Path, *args: str, env: dict[str, str], snakefile: str = "Snakefile",
               timeout: int = 3600) -> Timed:
    """Wall time and CPU time (user + system of the process and its children)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(work / snakefile), "-d", str(work), *args]
    # Bytecode caching on, as in a normal shell (the warm-up runs write the workflow copy's
    # .pyc files): otherwise every run would recompile reclaim's modules and not the bare side's.
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return Timed(wall, cpu, proc)


def _jobs(proc: subprocess.CompletedProcess[str]) -> int:
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake failed (exit {proc.returncode}):\n{out[-3000:]}")
    if NOTHING in out:
        return 0
    m = TOTAL_RE.findall(out)
    if not m:
        raise RuntimeError(f"no 'total N' line in snakemake's output:\n{out[-3000:]}")
    return int(m[-1])


# ---------------------------------------------------------------------------------------------
# The reclaim side
# ---------------------------------------------------------------------------------------------


class Reclaim:
    """A workflow copy whose flagship claim is sized through its seed list."""

    def __init__(self, root: Path, models: dict[str, Path], glue: Path) -> None:
        shutil.rmtree(root / "reclaim", ignore_errors=True)
        self.work = copy_workflow(root / "reclaim")
        self.env = workflow_env(self.work, glue)
        self.models = models
        self.target = f"results/{CLAIM}.csv"
        params = yaml.safe_load((self.work / "params.yaml").read_text())
        self.methods = params["claims"][CLAIM]["methods"]  # all of them: paper_results refers to them
        self.model_overrides = _model_overrides(self.work / "params.yaml", models)

    def configfile(self, seeds: int) -> str:
        name = f"plan_{seeds}.yaml"
        path = self.work / name
        if not path.exists():
            # only the flagship claim grows; the other claims keep the fixtures' one seed
            params = tiny_claim_params(self.models, models=["tiny-bert"], methods=self.methods,
                                       tasks=[TASK], seeds=[0])
            params["claims"][CLAIM]["scales"]["smoke"]["seeds"] = list(range(seeds))
            params["models"] = {**self.model_overrides, **params["models"]}
            path.write_text(yaml.safe_dump(params))
        return name

    def dry_run(self, seeds: int) -> tuple[Timed, int]:
        t = _snakemake(self.work, "-n", self.target, "--configfile",
                       str(self.work / self.configfile(seeds)), env=self.env)
        return t, _jobs(t.proc)

    def seeds_for(self, n: int, per_seed: int, fixed: int) -> int:
        return max(1, math.ceil((n - fixed) / per_seed))


def _model_overrides(params_yaml: Path, models: dict[str, Path]) -> dict[str, Any]:
    """Every model in params.yaml pointed at a tiny local model of its framing, so the DAG
    resolves offline whichever claims params.yaml has (-n never loads the weights)."""
    cfg = yaml.safe_load(params_yaml.read_text())
    return {name: {"local_dir": str(models[FRAMING_KIND.get(entry.get("framing"), "bert")])}
            for name, entry in cfg.get("models", {}).items()}


# ---------------------------------------------------------------------------------------------
# The bare side: no reclaim code at all
# ---------------------------------------------------------------------------------------------

BARE_SNAKEFILE = '''\
import json

SPECS = json.load(open(os.path.join(workflow.basedir, "specs.json")))


def spec(wc):
    return SPECS[f"{wc.model}/{wc.task}/{wc.method}/{wc.cfg}/seed{wc.seed}"]


rule all:
    input:
        [f"results/runs/{key}/result.json" for key in SPECS],


rule train:
    input:
        train="data/train.jsonl",
        code="code.py",
    output:
        result="results/runs/{model}/{task}/{method}/{cfg}/seed{seed}/result.json",
    log:
        "results/runs/{model}/{task}/{method}/{cfg}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/train/{model}/{task}/{method}/{cfg}/seed{seed}.tsv"
    params:
        spec=lambda wc: json.dumps(spec(wc), sort_keys=True),
        scale="smoke",
    wildcard_constraints:
        seed=r"\\d+",
    threads: lambda wc: spec(wc)["resources"]["threads"]
    resources:
        mem_mb=lambda wc: spec(wc)["resources"]["mem_mb"],
        runtime=lambda wc: spec(wc)["resources"]["runtime"],
    shell:
        "python -c pass --spec {params.spec:q} --train {input.train:q} > {output.result:q} 2> {log:q}"
'''


# The same, shaped like reclaim's train rule: two upstream data files made by a `prepare`
# rule, the code files as inputs (as many as a reclaim train job declares, from an input
# function), and as many input/param/resource functions. Still no reclaim code.
BARE_LIKE_SNAKEFILE = '''\
import json

SPECS = json.load(open(os.path.join(workflow.basedir, "specs.json")))
CODE = sorted(os.path.join(workflow.basedir, "code", f) for f in os.listdir(os.path.join(workflow.basedir, "code")))


def spec(wc):
    return SPECS[f"{wc.model}/{wc.task}/{wc.method}/{wc.cfg}/seed{wc.seed}"]


rule all:
    input:
        [f"results/runs/{key}/result.json" for key in SPECS],


rule prepare:
    input:
        code=CODE[:5],
    output:
        "data/{split}.jsonl",
    wildcard_constraints:
        split="train|dev",
    shell:
        "touch {output:q}"


rule train:
    input:
        train="data/train.jsonl",
        dev="data/dev.jsonl",
        subset=lambda wc: [],
        code=lambda wc: CODE,
    output:
        result="results/runs/{model}/{task}/{method}/{cfg}/seed{seed}/result.json",
    log:
        "results/runs/{model}/{task}/{method}/{cfg}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/train/{model}/{task}/{method}/{cfg}/seed{seed}.tsv"
    params:
        spec=lambda wc: json.dumps(spec(wc), sort_keys=True),
        model=lambda wc: json.dumps(spec(wc)["model"], sort_keys=True),
        scale="smoke",
    wildcard_constraints:
        seed=r"\\d+",
    threads: lambda wc: spec(wc)["resources"]["threads"]
    resources:
        mem_mb=lambda wc: spec(wc)["resources"]["mem_mb"],
        runtime=lambda wc: spec(wc)["resources"]["runtime"],
        gpu=lambda wc: 0,
        checkpoint_every=0,
    shell:
        "python -c pass --spec {params.spec:q} --train {input.train:q} > {output.result:q} 2> {log:q}"
'''


def _bare_spec(i: int) -> dict[str, Any]:
    """A spec of about the size and shape of a reclaim train spec."""
    method = BARE_METHODS[i % len(BARE_METHODS)]
    seed = i // len(BARE_METHODS)
    cfg = f"{(1 + i % len(BARE_METHODS)) * 2654435761 % 16**10:010x}"
    return {
        "model": {"name": "tiny-bert", "framing": "encoder_cls"}, "task": TASK,
        "data": {"max_train_examples": 32, "max_eval_examples": 16, "subsample_seed": 0},
        "train": {"batch_size": 8, "lr": 2e-3, "max_length": 64, "epochs": 1, "warmup_ratio": 0.03,
                  "weight_decay": 0.0, "scheduler": "cosine", "max_grad_norm": 1.0,
                  "optimizer": "adamw", "eval_batch_size": 64},
        "method": {"name": method, "adapter": method, "params": {"r": 8, "alpha": 16, "dropout": 0.0,
                                                                  "target_modules": "all-linear"}},
        "seed": seed, "cfg": cfg, "job_id": f"tiny-bert/{TASK}/{method}/{cfg}/seed{seed}",
        "resources": {"threads": 1, "mem_mb": 4000, "runtime": 30},
    }


class Bare:
    """One generated workflow per job count, under ``root/<name>/<jobs>/``. ``code_files``:
    None for the minimal workflow, else the reclaim-shaped one with that many code inputs."""

    def __init__(self, root: Path, code_files: int | None = None) -> None:
        self.code_files = code_files
        self.root = root / ("bare" if code_files is None else "bare_like")
        shutil.rmtree(self.root, ignore_errors=True)
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def dry_run(self, jobs: int) -> tuple[Timed, int]:
        """``jobs`` in all: the ``all`` target, the two ``prepare`` jobs (reclaim-shaped only)
        and as many train jobs as that leaves."""
        work = self.root / str(jobs)
        if not (work / "Snakefile").exists():
            (work / "data").mkdir(parents=True, exist_ok=True)
            if self.code_files is None:
                (work / "data/train.jsonl").write_text("{}\n")
                (work / "code.py").write_text("pass\n")
                n_train, text = jobs - 1, BARE_SNAKEFILE
            else:
                (work / "code").mkdir(exist_ok=True)
                for i in range(self.code_files):
                    (work / "code" / f"m{i:03d}.py").write_text("pass\n")
                n_train, text = jobs - 3, BARE_LIKE_SNAKEFILE
            specs = {s["job_id"]: s for s in (_bare_spec(i) for i in range(n_train))}
            (work / "specs.json").write_text(json.dumps(specs))
            (work / "Snakefile").write_text(text)
        t = _snakemake(work, "-n", env=self.env)
        return t, _jobs(t.proc)


def _train_inputs(out: str) -> int:
    """How many input files the first ``train`` job of a dry-run listing declares."""
    m = re.search(r"^rule train:\n\s+input: (.+)$", out, re.M)
    if not m:
        raise RuntimeError("no train job in the reclaim dry run")
    return len(m.group(1).split(", "))


# ---------------------------------------------------------------------------------------------
# No-op over every claim
# ---------------------------------------------------------------------------------------------


def noop(root: Path, models: dict[str, Path], glue: Path, repeats: int) -> dict[str, Any]:
    """Every claim at smoke scale (params.yaml as it is, models pointed at tiny ones), every
    output of the default target present: time ``snakemake -n``."""
    shutil.rmtree(root / "noop", ignore_errors=True)
    work = copy_workflow(root / "noop")
    env = workflow_env(work, glue)
    (work / "noop.yaml").write_text(yaml.safe_dump(
        {"models": _model_overrides(work / "params.yaml", models), "scale": "smoke"}))
    cf = ["--configfile", str(work / "noop.yaml")]
    first = _snakemake(work, "-n", *cf, env=env)
    planned = _jobs(first.proc)
    outputs = sorted({f.strip() for line in OUTPUT_RE.findall(first.proc.stdout + first.proc.stderr)
                      for f in line.split(", ")})
    stamp = time.time()
    for rel in outputs:  # placeholders, all with one mtime: no output is older than its input
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        os.utime(path, (stamp, stamp))
    runs, cpu, left = [], [], []
    for _ in range(repeats):
        t = _snakemake(work, "-n", *cf, env=env)
        runs.append(round(t.wall, 3))
        cpu.append(round(t.cpu, 3))
        left.append(_jobs(t.proc))
    return {"claims": sorted(yaml.safe_load((work / "params.yaml").read_text())["claims"]),
            "jobs_when_nothing_built": planned, "dry_run_when_nothing_built_s": round(first.wall, 3),
            "outputs_created": len(outputs), "jobs_left": left[-1],
            "noop_s": round(statistics.median(runs), 3), "noop_cpu_s": round(statistics.median(cpu), 3),
            "runs_s": runs, "runs_cpu_s": cpu}


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import snakemake

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "snakemake": getattr(snakemake, "__version__", "?"), "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000],
                   help="target job counts (reclaim gets the nearest count its seeds allow)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per workflow and size (median)")
    p.add_argument("--skip-noop", action="store_true", help="skip the no-op dry run over every claim")
    p.add_argument("--no-bare-like", action="store_true",
                   help="skip the reclaim-shaped bare workflow (same inputs and functions per job)")
    p.add_argument("--workdir", type=Path, help="keep the generated workflows here (default: a temp dir)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "results/benchmarks/plan_scaling.json")
    a = p.parse_args(argv)

    load_start = os.getloadavg()
    root = Path(a.workdir or tempfile.mkdtemp(prefix="reclaim-plan-"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        models = {kind: write_tiny_model(root / "models" / kind, kind) for kind in ("bert", "gpt2", "t5")}
        glue = write_glue_fixture(root / "glue", tasks=GLUE_FIXTURE_TASKS, n_train=16, n_dev=8)
        reclaim = Reclaim(root, models, glue)

        # Jobs per seed and fixed jobs, from the DAG itself (warms the copy's bytecode too).
        t1, j1 = reclaim.dry_run(1)
        _, j2 = reclaim.dry_run(2)
        per_seed, fixed = j2 - j1, j1 - (j2 - j1)
        train_inputs = _train_inputs(t1.proc.stdout + t1.proc.stderr)
        bares = {"bare": Bare(root)}
        if not a.no_bare_like:
            bares["bare_like"] = Bare(root, code_files=train_inputs - 2)
        print(f"reclaim: {per_seed} jobs per seed + {fixed} fixed, {train_inputs} inputs per train "
              f"job; warm-up {', '.join(bares)}", file=sys.stderr)
        for b in bares.values():
            b.dry_run(j1)

        rows = []
        for n in a.sizes:
            seeds = reclaim.seeds_for(n, per_seed, fixed)
            runs: dict[str, list[float]] = {}
            jobs = 0
            for _ in range(a.repeats):
                t, jobs = reclaim.dry_run(seeds)
                runs.setdefault("reclaim", []).append(round(t.wall, 3))
                runs.setdefault("reclaim_cpu", []).append(round(t.cpu, 3))
                for name, b in bares.items():
                    t, bjobs = b.dry_run(jobs)
                    if bjobs != jobs:
                        raise RuntimeError(f"{name} workflow has {bjobs} jobs, reclaim {jobs}")
                    runs.setdefault(name, []).append(round(t.wall, 3))
                    runs.setdefault(f"{name}_cpu", []).append(round(t.cpu, 3))
            row: dict[str, Any] = {"n_target": n, "seeds": seeds, "jobs": jobs}
            row["reclaim_s"] = round(statistics.median(runs["reclaim"]), 3)
            row["reclaim_cpu_s"] = round(statistics.median(runs["reclaim_cpu"]), 3)
            for name in bares:
                # Each reclaim run is paired with the bare runs right after it (about the same
                # machine load): a ratio is the median of the pairs' ratios.
                row[f"{name}_s"] = round(statistics.median(runs[name]), 3)
                row[f"{name}_cpu_s"] = round(statistics.median(runs[f"{name}_cpu"]), 3)
                suffix = "" if name == "bare" else "_like"
                row[f"ratio{suffix}"] = round(statistics.median(
                    r / b for r, b in zip(runs["reclaim"], runs[name], strict=True)), 2)
                row[f"cpu_ratio{suffix}"] = round(statistics.median(
                    r / b for r, b in zip(runs["reclaim_cpu"], runs[f"{name}_cpu"], strict=True)), 2)
            row["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
            row["runs"] = runs
            rows.append(row)
            print(f"  N={n}: {jobs} jobs, reclaim {row['reclaim_s']:.2f} s, bare {row['bare_s']:.2f} s",
                  file=sys.stderr)

        noop_result = None if a.skip_noop else noop(root, models, glue, a.repeats)
    finally:
        if a.workdir is None:
            shutil.rmtree(root, ignore_errors=True)

    report = {"benchmark": "plan_scaling", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": _machine(), "load_avg_at_start": [round(x, 2) for x in load_start],
              "load_avg_at_end": [round(x, 2) for x in os.getloadavg()], "claim": CLAIM, "repeats": a.repeats,
              "jobs_per_seed": per_seed, "fixed_jobs": fixed, "train_job_inputs": train_inputs,
              "sizes": rows, "noop_every_claim": noop_result,
              "timed": ("whole `python -m snakemake -n` processes, reclaim and bare alternating; *_s: "
                        "median wall clock, *_cpu_s: median user+system CPU of the process; ratio, "
                        "cpu_ratio: median over the (reclaim, bare) pairs of reclaim / bare")}
    like = not a.no_bare_like
    head = f"\n{'N':>7} {'jobs':>7} {'reclaim s':>10} {'bare s':>8} {'ratio':>6} {'cpu ratio':>9}"
    print(head + (f"   {'bare-like s':>11} {'ratio':>6} {'cpu ratio':>9}" if like else ""))
    for row in rows:
        line = (f"{row['n_target']:>7} {row['jobs']:>7} {row['reclaim_s']:>10.2f} {row['bare_s']:>8.2f} "
                f"{row['ratio']:>6.2f} {row['cpu_ratio']:>9.2f}")
        if like:
            line += f"   {row['bare_like_s']:>11.2f} {row['ratio_like']:>6.2f} {row['cpu_ratio_like']:>9.2f}"
        print(line)
    if noop_result:
        print(f"\nno-op `snakemake -n` over every claim ({', '.join(noop_result['claims'])}, smoke): "
              f"{noop_result['noop_s']:.2f} s wall, {noop_result['noop_cpu_s']:.2f} s CPU, "
              f"{noop_result['jobs_left']} jobs left")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
