"""Crash safety of a training job: killed mid-run (SIGKILL, SIGTERM), it leaves no
result.json, and a rerun resumes from its checkpoint to exactly the losses and metrics of
an uninterrupted run (CPU, same seed); a tampered checkpoint is refused, naming the file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reclaim import adapters
from reclaim.config import REPO_ROOT, load_yaml
from reclaim.data.glue import read_classic
from reclaim.io import write_jsonl
from reclaim.jobs import make_spec
from reclaim.models import resolve
from reclaim.testing import distinct_methods
from reclaim.train import run_job

PARAMS = load_yaml(REPO_ROOT / "params.yaml")
EVERY = 3  # checkpoint interval (optimizer steps) in the subprocess tests


def _cfg(tiny_models: dict[str, Path], batch_size: int, epochs: int, max_train: int) -> dict:
    cfg = json.loads(json.dumps(PARAMS))
    cfg["models"] = {"tiny-bert": {"framing": "encoder_cls", "local_dir": str(tiny_models["bert"])}}
    scale = cfg["claims"]["lora_ga_glue"]["scales"]["smoke"]
    scale.update(models=["tiny-bert"], max_train_examples=max_train, max_eval_examples=16)
    scale["train"] = {"batch_size": batch_size, "lr": 1e-3, "max_length": 32, "epochs": epochs}
    for m in cfg["methods"].values():
        m.pop("train", None)  # the test's schedule, not a method's own (ZO's longer runs)
        if "r" in m.get("params", {}):
            m["params"]["r"] = 4
    cfg["methods"]["adalora"]["params"].update(init_r=6, target_r=4, delta_t=3)
    return cfg


@pytest.fixture(scope="module")
def data(glue_fixture, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("crash_data")
    for split in ("train", "dev"):
        write_jsonl(out / f"{split}.jsonl", read_classic(glue_fixture, "sst2", split))
    return out


@pytest.fixture(scope="module")
def long_job(tiny_models, data):
    """A lora job of 240 optimizer steps (48 examples, batch 2, 10 epochs): long enough to
    be killed after its first checkpoint, and its uninterrupted reference result."""
    cfg = _cfg(tiny_models, batch_size=2, epochs=10, max_train=48)
    spec = make_spec(cfg, "lora_ga_glue", "tiny-bert", "sst2", "lora", 0)
    model = resolve("tiny-bert", cfg["models"]["tiny-bert"])
    job = {"spec": spec, "model": model.__dict__, "data": data}
    ref = subprocess.run(_cmd(job, data / "ref" / "result.json", every=0), capture_output=True,
                         text=True, env=_env(), timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    job["ref"] = json.loads((data / "ref" / "result.json").read_text())
    assert job["ref"]["steps"] == 240
    return job


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "HF_HUB_OFFLINE": "1"}


def _cmd(job: dict, out: Path, every: int, tracking_uri: str = "") -> list[str]:
    cmd = [sys.executable, "-m", "reclaim", "train", "--spec", json.dumps(job["spec"]),
           "--model", json.dumps(job["model"]), "--train", str(job["data"] / "train.jsonl"),
           "--dev", str(job["data"] / "dev.jsonl"), "--out", str(out), "--threads", "1",
           "--no-progress", "--checkpoint-every", str(every), "--log-every", "5"]
    if tracking_uri:
        cmd += ["--tracking-uri", tracking_uri, "--experiment", "crash"]
    return cmd


def _start_and_wait_for_checkpoint(cmd: list[str], out: Path) -> subprocess.Popen:
    """Start the job; return once its first checkpoint is in place, while it still runs."""
    log = open(out.parent.parent / f"{out.parent.name}.log", "w")  # noqa: SIM115 (closed below)
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env())
    log.close()
    manifest = out.parent / "checkpoint" / "manifest.json"
    deadline = time.monotonic() + 300
    while not manifest.exists():
        if proc.poll() is not None:
            pytest.fail(f"job exited ({proc.returncode}) before its first checkpoint")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint within 300 s")
        time.sleep(0.01)
    assert proc.poll() is None, "the job finished before it could be killed: make it longer"
    return proc


def _rerun(job: dict, out: Path, tracking_uri: str = "") -> subprocess.CompletedProcess:
    proc = subprocess.run(_cmd(job, out, EVERY, tracking_uri), capture_output=True, text=True,
                          env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _assert_same_as_reference(job: dict, out: Path, resumed_from: int) -> None:
    got, ref = json.loads(out.read_text()), job["ref"]
    assert got["resumed_from_step"] == resumed_from > 0
    assert got["steps"] == ref["steps"] and got["examples_seen"] == ref["examples_seen"]
    assert got["losses"] == ref["losses"]  # every step, bit for bit
    assert got["metrics"] == ref["metrics"]
    assert not (out.parent / "checkpoint").exists(), "checkpoint must go once result.json is in place"


def test_sigkill_mid_run_then_resume_matches_uninterrupted(long_job, tmp_path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "job" / "result.json"
    proc = _start_and_wait_for_checkpoint(_cmd(long_job, out, EVERY, uri), out)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL
    assert not out.exists()
    manifest = json.loads((out.parent / "checkpoint" / "manifest.json").read_text())
    k = manifest["step"]
    assert k % EVERY == 0 and 0 < k < 240
    assert manifest["job_id"] == long_job["spec"]["job_id"]

    rerun = _rerun(long_job, out, uri)
    assert f"resuming from step {k} of 240" in rerun.stderr
    _assert_same_as_reference(long_job, out, k)

    # MLflow: the killed run is closed as KILLED; the resumed run is tagged and holds the
    # whole loss curve, each step once.
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("crash")
    runs = {r.info.status: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"KILLED", "FINISHED"}
    done = runs["FINISHED"]
    assert done.data.tags["reclaim.resumed_from_step"] == str(k)
    assert done.data.tags["reclaim.resumed_from_run"] == runs["KILLED"].info.run_id
    hist = sorted(client.get_metric_history(done.info.run_id, "train_loss"), key=lambda m: m.step)
    assert [m.step for m in hist] == list(range(1, 241))
    assert [m.value for m in hist] == pytest.approx(long_job["ref"]["losses"], rel=1e-6)
    assert json.loads(out.read_text())["mlflow_run_id"] == done.info.run_id


def test_sigterm_writes_checkpoint_then_resume_matches(long_job, tmp_path) -> None:
    out = tmp_path / "job" / "result.json"
    proc = _start_and_wait_for_checkpoint(_cmd(long_job, out, EVERY), out)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 143
    log = (tmp_path / "job.log").read_text()
    assert "SIGTERM at step" in log and "checkpoint written" in log
    assert not out.exists()
    k = json.loads((out.parent / "checkpoint" / "manifest.json").read_text())["step"]
    assert f"SIGTERM at step {k};" in log  # the checkpoint is of the step it stopped at

    # The same checkpoint, tampered with, in another copy of the job: refused, naming the file.
    bad = tmp_path / "tampered" / "result.json"
    shutil.copytree(out.parent / "checkpoint", bad.parent / "checkpoint")
    target = bad.parent / "checkpoint" / "trainable.safetensors"
    blob = bytearray(target.read_bytes())
    blob[-1] ^= 0x01
    target.write_bytes(bytes(blob))
    proc = subprocess.run(_cmd(long_job, bad, EVERY), capture_output=True, text=True, env=_env(),
                          timeout=600)
    assert proc.returncode == 2
    assert f"{target}: sha256" in proc.stderr and "corrupt checkpoint" in proc.stderr
    assert not bad.exists() and target.exists()  # neither used nor silently deleted

    rerun = _rerun(long_job, out)
    assert f"resuming from step {k} of 240" in rerun.stderr
    _assert_same_as_reference(long_job, out, k)


def test_checkpoint_of_another_spec_is_discarded(tiny_models, data, tmp_path) -> None:
    cfg = _cfg(tiny_models, batch_size=8, epochs=1, max_train=24)
    spec = make_spec(cfg, "lora_ga_glue", "tiny-bert", "sst2", "lora", 0)
    loc = resolve("tiny-bert", cfg["models"]["tiny-bert"])
    a = tmp_path / "a" / "result.json"
    with pytest.raises(RuntimeError, match="injected crash"):
        _crash_at(spec, loc, data, a, crash_step=2, every=1)
    assert (a.parent / "checkpoint").is_dir()
    other = make_spec(cfg, "lora_ga_glue", "tiny-bert", "sst2", "lora", 1)  # another seed
    b = tmp_path / "b" / "result.json"
    shutil.copytree(a.parent / "checkpoint", b.parent / "checkpoint")
    r = run_job(other, data / "train.jsonl", data / "dev.jsonl", b, loc, progress=False)
    assert r["resumed_from_step"] is None and r["steps"] == 3
    assert not (b.parent / "checkpoint").exists()


@contextlib.contextmanager
def _after_step(adapter: Any, hook: Callable[[Any, Any, int], None]) -> Iterator[None]:
    """Run ``hook(model, params, step)`` after the adapter's own step-end hook."""
    original = adapter.on_step_end

    def wrapped(model, params, step):  # type: ignore[no-untyped-def]
        original(model, params, step)
        hook(model, params, step)

    adapter.on_step_end = wrapped
    try:
        yield
    finally:
        del adapter.on_step_end  # back to the class's method


def _crash_at(spec: dict, loc, data: Path, out: Path, crash_step: int, every: int) -> None:  # type: ignore[no-untyped-def]
    """Run the job in-process and raise at the end of ``crash_step`` (a crash mid-run)."""

    def crash(model, params, step):  # type: ignore[no-untyped-def]
        if step == crash_step:
            raise RuntimeError(f"injected crash at step {step}")

    with _after_step(adapters.get(spec["method"]["adapter"]), crash):
        run_job(spec, data / "train.jsonl", data / "dev.jsonl", out, loc, progress=False,
                checkpoint_every=every)


def _run_capturing(spec: dict, loc, data: Path, out: Path, step: int, **kw: Any) -> tuple[dict, Any]:  # type: ignore[no-untyped-def]
    """Run the job; also return the adapter's own state (AdaLoRA's importance scores) at ``step``."""
    adapter = adapters.get(spec["method"]["adapter"])
    seen: dict[str, Any] = {}

    def capture(model, params, s):  # type: ignore[no-untyped-def]
        if s == step:
            tensors, meta = adapter.checkpoint_state(model, params)
            seen["state"] = ({k: v.clone() for k, v in tensors.items()}, json.dumps(meta))

    with _after_step(adapter, capture):
        result = run_job(spec, data / "train.jsonl", data / "dev.jsonl", out, loc, progress=False, **kw)
    return result, seen["state"]


@pytest.mark.parametrize("method", distinct_methods(PARAMS["methods"]))
def test_every_adapter_resumes_exactly(method, tiny_models, data, tmp_path) -> None:
    """A crash at step 11 of 18, checkpoints every 4 steps: the resumed run (from step 8)
    matches an uninterrupted one, including AdaLoRA's rank allocator state."""
    import torch

    cfg = _cfg(tiny_models, batch_size=4, epochs=3, max_train=24)
    spec = make_spec(cfg, "lora_ga_glue", "tiny-bert", "sst2", method, 0)
    loc = resolve("tiny-bert", cfg["models"]["tiny-bert"])
    ref, ref_state = _run_capturing(spec, loc, data, tmp_path / "ref" / "result.json", step=9)
    out = tmp_path / "job" / "result.json"
    with pytest.raises(RuntimeError, match="injected crash"):
        _crash_at(spec, loc, data, out, crash_step=11, every=4)
    assert not out.exists()
    got, got_state = _run_capturing(spec, loc, data, out, step=9, checkpoint_every=4)
    assert got["resumed_from_step"] == 8 and ref["steps"] == got["steps"] == 18
    assert got["losses"] == ref["losses"]
    assert got["metrics"] == ref["metrics"]
    # the adapter's own state one step after the resume point
    assert sorted(got_state[0]) == sorted(ref_state[0]) and got_state[1] == ref_state[1]
    assert all(torch.equal(got_state[0][k], ref_state[0][k]) for k in ref_state[0])
    if method == "adalora":
        assert ref_state[0], "AdaLoRA should have importance scores at step 9"


def test_lisa_resumes_exactly_across_block_switches(tiny_models, data, tmp_path) -> None:
    """LISA switches blocks every 5 steps; a crash at step 11 resumes from step 8 (mid
    interval 1) with the same blocks, the blocks' optimizer state as it was, and every
    parameter LISA has trained so far, including blocks frozen now."""
    cfg = _cfg(tiny_models, batch_size=4, epochs=3, max_train=24)
    cfg["methods"]["lisa_g1"]["optimizer"]["params"]["interval"] = 5
    spec = make_spec(cfg, "lora_ga_glue", "tiny-bert", "sst2", "lisa_g1", 0)
    loc = resolve("tiny-bert", cfg["models"]["tiny-bert"])
    ref, _ = _run_capturing(spec, loc, data, tmp_path / "ref" / "result.json", step=9)
    out = tmp_path / "job" / "result.json"
    with pytest.raises(RuntimeError, match="injected crash"):
        _crash_at(spec, loc, data, out, crash_step=11, every=4)
    got, _ = _run_capturing(spec, loc, data, out, step=9, checkpoint_every=4)
    assert got["resumed_from_step"] == 8 and got["steps"] == 18
    assert got["losses"] == ref["losses"] and got["metrics"] == ref["metrics"]
    assert got["optimizer"] == ref["optimizer"] and ref["optimizer"]["name"] == "lisa"
