"""Bad params fail before any job, naming the key."""

from __future__ import annotations

import copy
import subprocess
import sys
import time

import pytest
import yaml

from reclaim.config import REPO_ROOT, ConfigError, load, load_yaml, validate

PARAMS = load_yaml(REPO_ROOT / "params.yaml")


def _bad(mutate) -> str:  # type: ignore[no-untyped-def]
    cfg = copy.deepcopy(PARAMS)
    mutate(cfg)
    with pytest.raises(ConfigError) as exc:
        validate(cfg)
    return str(exc.value)


def test_shipped_params_are_valid() -> None:
    assert validate(copy.deepcopy(PARAMS))["scale"] in ("smoke", "small", "paper")


def test_typo_in_a_top_level_key() -> None:
    msg = _bad(lambda c: c.__setitem__("traking", c.pop("tracking")))
    assert "'traking'" in msg or "tracking" in msg


def test_typo_in_a_nested_key_names_the_path() -> None:
    msg = _bad(lambda c: c["train_defaults"].__setitem__("learning_rate", 1e-4))
    assert "train_defaults.learning_rate" in msg and "unknown key" in msg


def test_typo_in_an_adapter_parameter() -> None:
    msg = _bad(lambda c: c["methods"]["lora_ga"]["params"].__setitem__("gama", 16))
    assert "methods.lora_ga.params" in msg and "'gama'" in msg


def test_unknown_method_in_a_claim() -> None:
    msg = _bad(lambda c: c["claims"]["lora_ga_glue"]["methods"].append("lora_gaa"))
    assert "claims.lora_ga_glue.methods[9]" in msg and "lora_gaa" in msg


def test_unknown_adapter() -> None:
    msg = _bad(lambda c: c["methods"]["lora"].__setitem__("adapter", "qlora9"))
    assert "methods.lora.adapter" in msg and "qlora9" in msg


@pytest.mark.parametrize("method", ["lora", "lora_ga", "pissa"])
def test_negative_rank(method: str) -> None:
    msg = _bad(lambda c: c["methods"][method]["params"].__setitem__("r", -1))
    assert f"methods.{method}.params" in msg and "r must be" in msg and "-1" in msg


def test_wrong_type_and_range() -> None:
    assert "batch_size" in _bad(lambda c: c["train_defaults"].__setitem__("batch_size", 0))
    assert "scale" in _bad(lambda c: c.__setitem__("scale", "huge"))


def test_unknown_task_and_model() -> None:
    msg = _bad(lambda c: c["claims"]["lora_ga_glue"]["scales"]["smoke"]["tasks"].append("rte9"))
    assert "scales.smoke.tasks[3]" in msg
    msg = _bad(lambda c: c["claims"]["lora_ga_glue"]["scales"]["smoke"]["models"].append("gpt9"))
    assert "scales.smoke.models[1]" in msg


def test_not_yaml_names_file_and_line(tmp_path) -> None:
    p = tmp_path / "params.yaml"
    p.write_text("scale: smoke\ntracking: [unclosed\nmodels: {}\n")
    with pytest.raises(ConfigError, match=r"params.yaml: not valid YAML at line \d+"):
        load(p)


def _snakemake_dry(tmp_path, params: dict) -> tuple[subprocess.CompletedProcess, float]:
    cfg = tmp_path / "override.yaml"
    cfg.write_text(yaml.safe_dump(params))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO_ROOT / "Snakefile"), "-d", str(tmp_path),
         "-n", "--configfile", str(cfg)],
        capture_output=True, text=True, timeout=120,
    )
    return proc, time.perf_counter() - t0


@pytest.mark.parametrize(
    "override,key",
    [
        ({"methods": {"lora_ga": {"params": {"gama": 8}}}}, "gama"),
        ({"methods": {"lora": {"params": {"r": -1}}}}, "methods.lora.params"),
        ({"claims": {"lora_ga_glue": {"methods": ["lora", "lorra"]}}}, "lorra"),
    ],
)
def test_snakemake_fails_fast_before_any_job(tmp_path, override, key) -> None:
    proc, elapsed = _snakemake_dry(tmp_path, override)
    assert proc.returncode != 0
    assert key in proc.stderr + proc.stdout
    assert "rule train" not in proc.stdout
    assert elapsed < 10
