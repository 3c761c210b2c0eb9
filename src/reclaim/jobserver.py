"""A warm interpreter for many short jobs: ``reclaim serve-jobs --socket PATH``.

Why: a smoke-scale job on a tiny model computes for about a second and spends 6-9 s
importing torch, transformers, PEFT and MLflow. A workflow of a hundred such jobs (the test
suite runs several hundred) spends most of its time importing. The server imports those
libraries once; each job then runs in a ``fork`` of it.

Opt-in and transparent to Snakemake: with ``RECLAIM_JOBSERVER=PATH`` in a job's environment,
``python -m reclaim ...`` (the same shell command every rule runs) hands its argv, working
directory, environment and stdin/stdout/stderr to the server and waits for the forked job's
exit status, which it returns as its own. What keeps a forked job equal to a fresh process:

- the ``reclaim`` package is never kept in the server: the child drops every ``reclaim*``
  module and rebuilds ``sys.path`` from the job's own ``PYTHONPATH`` and working directory,
  so a job imports reclaim from where a fresh interpreter would (a workflow copy's ``src``);
- the server computes nothing (no torch op, no thread pool, no RNG draw) before forking;
- environment variables that libraries read at import time (``HF_*``, ``TRANSFORMERS_*``,
  ``TORCH*``, ``OMP_*``, ``CUDA_*``, ``MLFLOW_*``, ...) must be equal in the job and the
  server; otherwise the server refuses and the job runs as a plain process;
- signals: the client forwards SIGTERM/SIGINT/SIGHUP/SIGUSR1/SIGUSR2 to the job, and a job
  killed by a signal makes the client die of the same signal; if the client itself is killed
  (SIGKILL, the OOM killer), the server kills the job at once, and the job dies with the
  server (``PR_SET_PDEATHSIG``).

If the socket is absent or refuses, the job runs in the client's own interpreter, as without
the server. GPU jobs work (CUDA is first initialised in the child), but the point is the
many-small-jobs case: smoke scale and the test suite.

This module imports nothing from reclaim at top level: the server must not hold a reclaim
module that a job would then inherit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import threading
from pathlib import Path

ENV = "RECLAIM_JOBSERVER"
# Read by libraries when they are imported (in the server, before any fork): must match.
IMPORT_TIME_ENV = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH", "PYTORCH_", "OMP_", "MKL_", "CUDA_",
                   "MLFLOW_", "TOKENIZERS_", "PYTHONHASHSEED", "MPLBACKEND", "KMP_", "OPENBLAS_",
                   "NVIDIA_", "SAFETENSORS_", "TQDM_")
PRELOAD = ("torch", "numpy", "transformers", "transformers.modeling_utils", "transformers.models.auto",
           "transformers.models.llama.modeling_llama", "transformers.models.bert.modeling_bert",
           "transformers.models.gpt2.modeling_gpt2", "transformers.models.t5.modeling_t5",
           "peft", "safetensors.torch", "mlflow", "mlflow.tracking",
           "mlflow.store.tracking.sqlalchemy_store", "tqdm", "yaml", "matplotlib", "matplotlib.pyplot")
# Set per job by Snakemake (= the job's threads); applied in the child instead of compared.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_HEADER = struct.Struct("!I")


def _relevant(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_ENV) and k not in THREAD_ENV}


def _apply_thread_env(env: dict[str, str]) -> None:
    """What OMP_NUM_THREADS / MKL_NUM_THREADS / OPENBLAS_NUM_THREADS do in a fresh process,
    where the libraries read them when they load (before the fork, here)."""
    def _n(name: str) -> int | None:
        v = env.get(name, "")
        return int(v) if v.isdigit() and int(v) > 0 else None

    omp, blas = _n("OMP_NUM_THREADS"), _n("OPENBLAS_NUM_THREADS") or _n("MKL_NUM_THREADS")
    if omp is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(omp)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    if omp is not None:
        threadpool_limits(limits=omp, user_api="openmp")
    if blas is not None:
        threadpool_limits(limits=blas, user_api="blas")


def env_mismatch(server: dict[str, str], job: dict[str, str]) -> list[str]:
    """Import-time variables that differ between the server and a job (sorted names)."""
    a, b = _relevant(server), _relevant(job)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("client closed the connection mid-request")
        buf += chunk
    return buf


# --- client: python -m reclaim, with RECLAIM_JOBSERVER set ------------------------------------------


def run_via_server(argv: list[str]) -> int | None:
    """Run ``reclaim argv`` in the server named by $RECLAIM_JOBSERVER; its exit status, or
    None when there is no server to take it (the caller then runs the job itself)."""
    path = os.environ.get(ENV)
    if not path:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    with conn:
        req = json.dumps({"argv": list(sys.argv), "args": list(argv), "cwd": os.getcwd(),
                          "env": dict(os.environ)}).encode()
        socket.send_fds(conn, [_HEADER.pack(len(req))], [0, 1, 2])
        conn.sendall(req)
        reader = conn.makefile("r", encoding="utf-8")
        first = reader.readline().rstrip("\n").split(" ", 1)
        if first[0] != "PID":  # refused (e.g. environment mismatch) or the server went away
            why = first[1] if first[0] == "REFUSE" and len(first) > 1 else "no answer"
            print(f"reclaim: job server {path}: {why}; running the job here", file=sys.stderr)
            return None
        pid = int(first[1])
        previous = {s: signal.signal(s, lambda signum, _frame: _forward(pid, signum)) for s in FORWARDED}
        try:
            line = reader.readline().split(" ", 1)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if line[0] != "EXIT":
            print(f"reclaim: the job server ({path}) closed without an exit status for job pid {pid}",
                  file=sys.stderr)
            return 1
        code = int(line[1])
    if code < 0:  # killed by a signal: die of it too, so the caller sees what a plain job shows
        if -code not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


# --- server -------------------------------------------------------------------------------------------


def preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import the heavy libraries once (failures are skipped: a job imports what it needs)."""
    import importlib

    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:  # noqa: BLE001 (an optional or broken library: the job will say so)
            pass
    return loaded


def _base_path() -> list[str]:
    """The server's sys.path after its script directory and its PYTHONPATH entries: what every
    interpreter of this venv has after those (stdlib, site-packages, .pth entries)."""
    own = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return sys.path[1 + len(own):]


def _child(req: dict, fds: list[int], close: list[socket.socket], base_path: list[str]) -> None:
    """In the forked process: become the job, run it, never return."""
    code = 1
    try:
        for s in close:
            s.close()
        try:  # die with the server
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        signal.set_wakeup_fd(-1)
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as Python sets it at start-up
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        _apply_thread_env(req["env"])
        job_pythonpath = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:] = [req["cwd"], *job_pythonpath, *base_path]
        for name in [n for n in sys.modules if n == "reclaim" or n.startswith("reclaim.")]:
            del sys.modules[name]
        import importlib

        importlib.invalidate_caches()
        sys.argv = list(req["argv"])
        try:
            from reclaim.cli import main

            code = int(main(list(req["args"])) or 0)
        except SystemExit as exc:
            c = exc.code
            code = c if isinstance(c, int) else (0 if c is None else 1)
            if c is not None and not isinstance(c, int):
                print(c, file=sys.stderr)
        except KeyboardInterrupt:
            code = 128 + signal.SIGINT
        except BaseException:  # noqa: BLE001 (as the interpreter would: traceback, exit 1)
            import traceback

            traceback.print_exc()
            code = 1
        try:
            import atexit

            atexit._run_exitfuncs()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


class _Job:
    """One forked job: reaps it and reports its status; kills it if the client goes away."""

    def __init__(self, conn: socket.socket, pid: int) -> None:
        self.conn, self.pid = conn, pid
        self.lock = threading.Lock()
        self.alive = True
        threading.Thread(target=self._reap, daemon=True).start()
        threading.Thread(target=self._watch_client, daemon=True).start()

    def _reap(self) -> None:
        _, status = os.waitpid(self.pid, 0)
        with self.lock:
            self.alive = False
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        try:
            self.conn.sendall(f"EXIT {code}\n".encode())
        except OSError:
            pass
        finally:
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.conn.close()

    def _watch_client(self) -> None:
        try:
            while self.conn.recv(64):
                pass
        except OSError:
            pass
        with self.lock:  # the client is gone (killed, or done after EXIT)
            if self.alive:
                _forward(self.pid, signal.SIGKILL)


def serve(path: Path, ready: Path | None = None, exit_with: int = 0) -> None:
    """Preload, listen on ``path``, and fork a job per connection until SIGTERM/SIGINT (or,
    with ``exit_with``, until that process is gone: a test session that dies unannounced)."""
    own_env = dict(os.environ)  # before the imports: some set variables (TORCHINDUCTOR_CACHE_DIR)
    loaded = preload()
    # what the imports added to the environment, as a fresh interpreter's imports would add it
    added = {k: v for k, v in os.environ.items() if k not in own_env}
    base_path = _base_path()
    path = Path(path)
    if path.exists():
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()
        listener.close()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if exit_with:
        def _watch_owner() -> None:
            while not stop.wait(2.0):
                try:
                    os.kill(exit_with, 0)
                except ProcessLookupError:
                    os.kill(os.getpid(), signal.SIGTERM)
                    return

        threading.Thread(target=_watch_owner, daemon=True).start()
    print(f"reclaim serve-jobs: {path} ready ({len(loaded)} libraries preloaded)", file=sys.stderr, flush=True)
    if ready is not None:
        ready.write_text(str(os.getpid()))
    open_conns: list[socket.socket] = []
    try:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                break
            try:
                head, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
                if len(head) < _HEADER.size:
                    head += _recv_exact(conn, _HEADER.size - len(head))
                req = json.loads(_recv_exact(conn, _HEADER.unpack(head)[0]))
            except (OSError, ValueError, ConnectionError):
                conn.close()
                continue
            bad = env_mismatch(own_env, req["env"])
            if bad or len(fds) != 3:
                why = f"environment differs from the server's in {', '.join(bad)}" if bad else "no stdio"
                try:
                    conn.sendall(f"REFUSE {why}\n".encode())
                finally:
                    for fd in fds:
                        os.close(fd)
                    conn.close()
                continue
            open_conns = [c for c in open_conns if c.fileno() != -1]
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child({**req, "env": {**added, **req["env"]}}, fds, [listener, conn, *open_conns], base_path)
            for fd in fds:
                os.close(fd)
            conn.sendall(f"PID {pid}\n".encode())
            open_conns.append(conn)
            _Job(conn, pid)
    finally:
        listener.close()
        if path.exists():
            path.unlink()
