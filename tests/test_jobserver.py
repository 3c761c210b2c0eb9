"""The warm job server (reclaim/jobserver.py): a job forked from it must behave as the same
command run as a fresh process: its own working directory, environment, sys.path and reclaim
sources, its stdio and exit status, signals in both directions; and it must refuse, so the
job runs as a plain process, when an import-time variable differs.

The jobs here run a stand-in ``reclaim`` package (the real ``__main__.py`` and
``jobserver.py``, a ``cli.py`` of test commands) from the job's PYTHONPATH, which also checks
that a job never runs the server's own reclaim. That real jobs give the same numbers either
way is checked by tests/test_slurm.py (local jobs through the server, Slurm's without, equal
bit for bit) and by every e2e workflow test, whose jobs go through the server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reclaim.config import REPO_ROOT
from reclaim.jobserver import env_mismatch

FAKE_CLI = '''
import json, os, signal, sys, time
from pathlib import Path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[0] == "report":
        import reclaim
        torch = sys.modules.get("torch")
        print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
                          "var": os.environ.get("JS_TEST_VAR"), "reclaim": reclaim.__file__,
                          "path": sys.path[:2], "torch_preloaded": torch is not None,
                          "torch_threads": torch.get_num_threads() if torch else None}))
        print("a line on stderr", file=sys.stderr)
        return int(argv[1])
    if argv[0] == "wait":
        def on_term(signum, frame):
            print("got SIGTERM", flush=True)
            raise SystemExit(143)
        signal.signal(signal.SIGTERM, on_term)
        Path(argv[1]).write_text(str(os.getpid()))
        time.sleep(120)
        return 0
    if argv[0] == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    return 9
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A job server started from the checkout's src, and a stand-in reclaim package for jobs."""
    root = tmp_path_factory.mktemp("js")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO_ROOT / "src")}
    env.pop("RECLAIM_JOBSERVER", None)
    sock, ready = root / "s.sock", root / "ready"
    log = open(root / "server.log", "w")  # noqa: SIM115 (closed at teardown)
    proc = subprocess.Popen([sys.executable, "-m", "reclaim", "serve-jobs", "--socket", str(sock), "--ready",
                             str(ready)], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while not ready.exists():
        assert proc.poll() is None, (root / "server.log").read_text()
        assert time.monotonic() < deadline, "the job server did not start within 180 s"
        time.sleep(0.1)
    fake = root / "fake" / "reclaim"
    fake.mkdir(parents=True)
    for name in ("__main__.py", "jobserver.py"):
        shutil.copy(REPO_ROOT / "src" / "reclaim" / name, fake / name)
    (fake / "__init__.py").write_text("")
    (fake / "cli.py").write_text(FAKE_CLI)
    job_env = {**env, "PYTHONPATH": str(fake.parent), "RECLAIM_JOBSERVER": str(sock)}
    yield {"pid": proc.pid, "env": job_env, "fake": fake, "root": root}
    proc.terminate()
    proc.wait(30)
    log.close()
    assert not sock.exists(), "the server must remove its socket when it stops"


def _job(server: dict, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reclaim", *args], cwd=cwd, env={**server["env"], **env},
                          capture_output=True, text=True, timeout=120)


def _start(server: dict, tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """A client whose job waits; returns it and the job's pid once the job runs."""
    pidfile = tmp_path / "job.pid"
    proc = subprocess.Popen([sys.executable, "-m", "reclaim", "wait", str(pidfile)], cwd=tmp_path,
                            env=server["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not pidfile.exists() or not pidfile.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.02)
    return proc, int(pidfile.read_text())


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def test_job_runs_in_a_fork_with_its_own_cwd_env_path_stdio_and_exit_status(server, tmp_path) -> None:
    proc = _job(server, "report", "3", cwd=tmp_path, JS_TEST_VAR="seen", OMP_NUM_THREADS="1")
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ppid"] == server["pid"]  # forked by the server, not run by the client
    assert out["torch_preloaded"]  # the server's imports, inherited
    assert out["torch_threads"] == 1  # OMP_NUM_THREADS applied as a fresh process would
    assert out["cwd"] == str(tmp_path) and out["var"] == "seen"
    assert out["path"] == [str(tmp_path), str(server["fake"].parent)]  # cwd, then PYTHONPATH
    assert out["reclaim"] == str(server["fake"] / "__init__.py")  # the job's reclaim, not the server's
    assert proc.stderr.strip() == "a line on stderr"


def test_a_differing_import_time_variable_is_refused_and_the_job_runs_here(server, tmp_path) -> None:
    proc = _job(server, "report", "0", cwd=tmp_path, HF_HOME=str(tmp_path / "hf"))
    assert proc.returncode == 0
    out = json.loads(proc.stdout)
    assert out["ppid"] != server["pid"] and not out["torch_preloaded"]
    assert "environment differs from the server's in HF_HOME; running the job here" in proc.stderr
    assert env_mismatch({"HF_HOME": "a", "PATH": "x"}, {"HF_HOME": "a", "PATH": "y"}) == []
    assert env_mismatch({"OMP_NUM_THREADS": "2"}, {"OMP_NUM_THREADS": "1", "TORCH_HOME": "t"}) == ["TORCH_HOME"]


def test_without_a_listening_server_the_job_runs_here(server, tmp_path) -> None:
    proc = _job(server, "report", "4", cwd=tmp_path, RECLAIM_JOBSERVER=str(tmp_path / "none.sock"))
    assert proc.returncode == 4 and json.loads(proc.stdout)["ppid"] != server["pid"]


def test_sigterm_reaches_the_job_and_its_exit_status_comes_back(server, tmp_path) -> None:
    proc, job = _start(server, tmp_path)
    assert job != proc.pid
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 143
    assert "got SIGTERM" in proc.stdout.read()
    assert _gone(job)


def test_killing_the_client_kills_the_job(server, tmp_path) -> None:
    """SIGKILL (the OOM killer, a scheduler) cannot be forwarded: the server sees the client
    go and kills the job, so nothing keeps writing after the job counts as failed."""
    proc, job = _start(server, tmp_path)
    proc.kill()
    assert proc.wait(30) == -signal.SIGKILL
    assert _gone(job)


def test_a_job_killed_by_a_signal_kills_the_client_with_it(server, tmp_path) -> None:
    proc = _job(server, "die", cwd=tmp_path)
    assert proc.returncode == -signal.SIGKILL
