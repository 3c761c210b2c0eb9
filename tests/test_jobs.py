"""Job identity: what a job computes names it; code inputs are exactly what it runs."""

from __future__ import annotations

import copy
from pathlib import Path

from reclaim.config import REPO_ROOT, load_yaml
from reclaim.jobs import claim_jobs, code_closure, glue_dir, make_spec, train_code

PARAMS = load_yaml(REPO_ROOT / "params.yaml")


def _ids(cfg) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {f"{s['method']['name']}/{s['task']}/{s['seed']}": s["job_id"] for s in claim_jobs(cfg, "lora_ga_glue")}


def test_same_spec_same_id_across_claims() -> None:
    cfg = copy.deepcopy(PARAMS)
    cfg["claims"]["other_claim"] = copy.deepcopy(cfg["claims"]["lora_ga_glue"])
    cfg["claims"]["other_claim"]["methods"] = ["lora"]
    a = make_spec(cfg, "lora_ga_glue", "minilm", "sst2", "lora", 0)
    b = make_spec(cfg, "other_claim", "minilm", "sst2", "lora", 0)
    assert a["job_id"] == b["job_id"]


def test_changing_one_method_param_changes_only_that_methods_jobs() -> None:
    before = _ids(PARAMS)
    cfg = copy.deepcopy(PARAMS)
    cfg["methods"]["lora_ga"]["params"]["gamma"] = 32
    after = _ids(cfg)
    changed = {k for k in before if before[k] != after[k]}
    assert changed and all(k.startswith("lora_ga/") for k in changed)
    assert len(changed) == len([k for k in before if k.startswith("lora_ga/")])


def test_defaults_are_part_of_the_identity() -> None:
    """Writing a default explicitly does not create a new job."""
    cfg = copy.deepcopy(PARAMS)
    cfg["methods"]["lora"]["params"]["dropout"] = 0.0
    assert _ids(cfg) == _ids(PARAMS)


def test_seed_is_in_the_path_not_the_hash() -> None:
    a = make_spec(PARAMS, "lora_ga_glue", "minilm", "sst2", "lora", 0)
    b = make_spec(PARAMS, "lora_ga_glue", "minilm", "sst2", "lora", 1)
    assert a["cfg"] == b["cfg"] and a["job_id"] != b["job_id"]


def test_code_inputs_follow_imports() -> None:
    spec = make_spec(PARAMS, "lora_ga_glue", "minilm", "sst2", "lora_ga", 0)
    files = {Path(f).relative_to(REPO_ROOT / "src").as_posix() for f in train_code(spec)}
    assert {"reclaim/train.py", "reclaim/adapters/lora_ga.py", "reclaim/adapters/_lora.py",
            "reclaim/framings/encoder_cls.py", "reclaim/models.py"} <= files
    assert "reclaim/adapters/lora.py" not in files and "reclaim/adapters/pissa.py" not in files
    lora = make_spec(PARAMS, "lora_ga_glue", "minilm", "sst2", "lora", 0)
    assert not any(f.endswith("lora_ga.py") for f in train_code(lora))
    peft_ga = make_spec(PARAMS, "lora_ga_glue", "minilm", "sst2", "lora_ga_peft", 0)
    assert any(f.endswith("lora_ga.py") for f in train_code(peft_ga))  # it imports its params
    agg = code_closure(["reclaim.claims.lora_ga_glue"])
    assert any(f.endswith("verdicts.py") for f in agg) and not any(f.endswith("train.py") for f in agg)


def test_glue_dir_is_one_spelling_per_place(tmp_path, monkeypatch) -> None:
    (tmp_path / "glue").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GLUE_DIR", "./glue/")
    relative = glue_dir(PARAMS)
    monkeypatch.setenv("GLUE_DIR", str(tmp_path / "glue"))
    assert relative == glue_dir(PARAMS) == str((tmp_path / "glue").resolve())
    monkeypatch.delenv("GLUE_DIR")
    assert glue_dir({"data": {"glue_dir": None}}) is None
