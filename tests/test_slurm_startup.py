"""A local ``snakemake`` call answers at once on a machine whose Slurm client cannot reach a
controller, and the Slurm executor still asks Slurm what it needs.

snakemake-executor-plugin-slurm runs ``scontrol show config`` (10 s timeout) while it is
imported, and Snakemake imports every installed executor plugin at start-up, so without
reclaim's start-up hook (src/reclaim/slurm_startup.py, installed by scripts/setup.sh) every
snakemake call waited ~10 s there. These tests put a fake Slurm client on PATH: ``sinfo`` and
``squeue`` that exist, and an ``scontrol`` that hangs for 10 s (a controller that does not
answer) and logs each call. No cluster is needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reclaim.testing import copy_workflow, run_snakemake, tiny_claim_params, workflow_env

HANG_S = 30  # a stalled call would take at least this long
LIMIT_S = 15.0  # generous: a loaded 2-core machine, but far below HANG_S
PLUGIN = "snakemake_executor_plugin_slurm"


@pytest.fixture
def fake_slurm(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """(environment with the fake Slurm client first on PATH, its scontrol call log)."""
    bindir, log = tmp_path / "slurm-bin", tmp_path / "scontrol-calls.log"
    bindir.mkdir()
    (bindir / "scontrol").write_text(
        "#!/bin/sh\n"
        f'echo "scontrol $*" >> "{log}"\n'
        'if [ -n "$FAKE_MINJOBAGE" ]; then echo "MinJobAge               = $FAKE_MINJOBAGE sec"; fi\n'
        f'exec sleep "${{FAKE_SCONTROL_SLEEP:-{HANG_S}}}"\n'
    )
    for tool in ("sinfo", "squeue"):
        (bindir / tool).write_text("#!/bin/sh\nexit 0\n")
    for f in bindir.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RECLAIM_SLURM_IMPORT_PROBE", None)
    return env, log


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _python(code: str, env: dict[str, str], timeout: int = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_the_start_up_hook_is_installed_in_this_venv() -> None:
    proc = _python("import sys; print('reclaim_slurm_startup' in sys.modules)", dict(os.environ))
    assert proc.stdout.strip() == "True", (
        f"{sys.prefix} does not load src/reclaim/slurm_startup.py at start-up: run "
        f"`bash scripts/setup.sh` (it writes site-packages/reclaim_slurm_startup.pth)")


def test_without_the_hook_importing_the_plugin_asks_scontrol(fake_slurm) -> None:
    """The condition is real: the plugin's import runs ``scontrol show config``."""
    env, log = fake_slurm
    env = {**env, "RECLAIM_SLURM_IMPORT_PROBE": "1", "FAKE_SCONTROL_SLEEP": "0"}
    proc = _python(f"import {PLUGIN}", env)
    assert proc.returncode == 0, proc.stderr
    assert "scontrol show config" in _calls(log)


def test_typoed_key_is_refused_at_once(fake_slurm, tmp_path) -> None:
    env, log = fake_slurm
    work = copy_workflow(tmp_path / "wf")
    env = {**workflow_env(work, tmp_path / "glue"), "PATH": env["PATH"]}
    t0 = time.monotonic()
    proc = run_snakemake(work, "-n", "--config", "scael=small", env=env, configfile="", timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0
    assert "unknown key 'scael'" in proc.stderr, proc.stderr[-2000:]
    assert _calls(log) == []
    assert elapsed < LIMIT_S, f"refusal took {elapsed:.1f} s"


def test_local_dry_run_does_not_wait(fake_slurm, tmp_path) -> None:
    env, log = fake_slurm
    (tmp_path / "Snakefile").write_text('rule a:\n    output: "a.txt"\n    shell: "touch {output}"\n')
    exe = Path(sys.executable).with_name("snakemake")  # the console script, as users call it
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]
    t0 = time.monotonic()
    proc = subprocess.run([*cmd, "-n", "-c1", "-d", str(tmp_path), "-s", str(tmp_path / "Snakefile")],
                          capture_output=True, text=True, env=env, timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "a.txt" in proc.stdout + proc.stderr
    assert _calls(log) == []
    assert elapsed < LIMIT_S, f"snakemake -n took {elapsed:.1f} s"


def test_the_slurm_executor_still_asks_scontrol(fake_slurm) -> None:
    """After the import the plugin's own functions run: MinJobAge comes from scontrol for
    the status-command checks and queries of a real --executor slurm run."""
    env, log = fake_slurm
    env = {**env, "FAKE_SCONTROL_SLEEP": "0", "FAKE_MINJOBAGE": "300"}
    code = f"""
import json
from pathlib import Path
import {PLUGIN} as plugin
from {PLUGIN} import job_status_query, validation
log = Path({str(log)!r})
at_import = len(log.read_text().splitlines()) if log.exists() else 0
print(json.dumps({{
    "at_import": at_import,
    "executor": plugin.get_min_job_age(),
    "validation": validation.get_min_job_age(),
    "recommend_squeue": job_status_query.should_recommend_squeue_status_command(),
}}))
"""
    proc = _python(code, env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # (the plugin's default status command also depends on whether sacct answers, which
    # differs between a machine with a live test cluster and one without: not asserted)
    assert out == {"at_import": 0, "executor": 300, "validation": 300, "recommend_squeue": True}
    assert _calls(log) == ["scontrol show config"] * 3


@pytest.mark.slow
def test_slurm_profile_dry_run_still_parses(fake_slurm, tmp_path, tiny_models, glue_fixture) -> None:
    """workflow/profiles/slurm (executor slurm, its slurm-* settings) is accepted and plans
    the claim, without waiting on scontrol."""
    env, log = fake_slurm
    work = copy_workflow(tmp_path / "wf")
    methods = yaml.safe_load((work / "params.yaml").read_text())["claims"]["lora_ga_glue"]["methods"]
    params = tiny_claim_params(tiny_models, methods=methods, tasks=["sst2"])
    (work / "test_params.yaml").write_text(yaml.safe_dump(params))
    env = {**workflow_env(work, glue_fixture), "PATH": env["PATH"]}
    proc = run_snakemake(work, "--profile", str(work / "workflow/profiles/slurm"), "-n",
                         "results/lora_ga_glue.csv", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rule train:" in proc.stdout + proc.stderr
    assert _calls(log) == []
