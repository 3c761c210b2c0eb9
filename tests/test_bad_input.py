"""Corrupt, truncated or malformed input fails early with an error naming the file and the
line or key; and the source never loads pickles or remote code implicitly."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reclaim.config import REPO_ROOT, ConfigError, load, load_yaml
from reclaim.data.glue import read_classic
from reclaim.io import read_jsonl
from reclaim.testing import copy_workflow, write_glue_fixture


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reclaim", *args], capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(REPO_ROOT / "src"), "PATH": "/usr/bin:/bin",
                                            "HF_HUB_OFFLINE": "1"})


@pytest.fixture()
def glue(tmp_path: Path) -> Path:
    return write_glue_fixture(tmp_path / "glue", tasks=("sst2", "mrpc"), n_train=16, n_dev=8)


# --- GLUE TSV -----------------------------------------------------------------------------

def test_truncated_last_row_names_file_and_line(glue: Path) -> None:
    path = glue / "MRPC" / "train.tsv"
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    cut = "\t".join(lines[-1].split("\t")[:3])[:-2]  # a write interrupted in column 3
    path.write_text("\n".join([*lines[:-1], cut]), encoding="utf-8")
    with pytest.raises(ValueError) as err:
        read_classic(glue, "mrpc", "train")
    assert f"{path}:{len(lines)}: malformed mrpc row: expected 5 tab-separated columns, got 3" in str(err.value)
    # the same through the CLI the prepare_glue rule runs: exit 2, one clear line
    proc = _cli("prepare-glue", "--task", "mrpc", "--split", "train", "--glue-dir", str(glue),
                "--out", str(glue / "out.jsonl"))
    assert proc.returncode == 2 and f"{path}:{len(lines)}: malformed mrpc row" in proc.stderr
    assert "Traceback" not in proc.stderr and not (glue / "out.jsonl").exists()


def test_bad_label_names_file_and_line(glue: Path) -> None:
    path = glue / "SST-2" / "dev.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4].rsplit("\t", 1)[0] + "\t2"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:5: malformed sst2 row \(bad label '2' \(expected one of 0, 1\)\)"):
        read_classic(glue, "sst2", "dev")


def test_label_cut_off_names_file_and_line(glue: Path) -> None:
    path = glue / "SST-2" / "train.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines) + "\n" + "a very good film\t", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:{len(lines) + 1}: malformed sst2 row \(bad label ''"):
        read_classic(glue, "sst2", "train")


def test_file_cut_inside_a_character_names_file_and_line(glue: Path) -> None:
    path = glue / "SST-2" / "train.tsv"
    raw = path.read_bytes()
    path.write_bytes(raw + "the film is caf\u00e9".encode()[:-1])  # half of a 2-byte character
    line = raw.count(b"\n") + 1
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:{line}: not valid UTF-8"):
        read_classic(glue, "sst2", "train")


# --- JSONL --------------------------------------------------------------------------------

def test_truncated_jsonl_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"idx": 0, "text_a": "good", "text_b": null, "label": 1}\n{"idx": 1, "text_a": "ba')
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:2: not valid JSON"):
        read_jsonl(path)


def test_jsonl_row_missing_a_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "dev.jsonl"
    path.write_text('{"idx": 0, "text_a": "good", "text_b": null, "label": 1}\n\n'
                    '{"idx": 1, "text_a": "bad", "text_b": null}\n')
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:3: missing key 'label'"):
        read_jsonl(path, required=("text_a", "text_b", "label"))
    path.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:1: expected a JSON object, got list"):
        read_jsonl(path)


# --- params.yaml --------------------------------------------------------------------------

def _broken_params(tmp_path: Path) -> tuple[Path, int]:
    """params.yaml with an unclosed bracket on the experiment line (a half-finished edit)."""
    text = (REPO_ROOT / "params.yaml").read_text()
    lines = text.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("  experiment:"))
    lines[i] = lines[i].replace("experiment: ", "experiment: [")
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path, i + 1


def test_params_not_yaml_names_file_and_line(tmp_path: Path) -> None:
    path, line = _broken_params(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: not valid YAML at line ")
    assert f"while parsing a flow sequence at line {line}," in msg
    proc = _cli("validate", "--params", str(path))
    assert proc.returncode == 2 and f"{path}: not valid YAML" in proc.stderr


def test_params_tab_indent_names_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("scale: smoke\ntracking:\n\turi: x\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: not valid YAML at line 3, column 1: .*'\\t'"):
        load_yaml(path)


def test_snakemake_with_broken_params_names_file_and_line(tmp_path: Path) -> None:
    """Snakemake's own message for a bad configfile names neither file nor line; the Snakefile
    parses params.yaml first, before any job is scheduled."""
    work = copy_workflow(tmp_path / "wf")
    _, line = _broken_params(work)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(work / "Snakefile"),
                           "-d", str(work)], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(work / "src"), "PATH": "/usr/bin:/bin",
                               "HF_HUB_OFFLINE": "1"})
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"reclaim: {work / 'params.yaml'}: not valid YAML at line" in out, out[-2000:]
    assert f"at line {line}," in out


def test_checkpoint_interval_is_validated(tmp_path: Path) -> None:
    cfg = load_yaml(REPO_ROOT / "params.yaml")
    assert cfg["checkpoint"]["every_steps"] >= 0
    cfg["checkpoint"] = {"every_steps": -1}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: checkpoint.every_steps: -1 is less than the minimum of 0"):
        load(path)
    cfg["checkpoint"] = {"every_step": 5}
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"checkpoint.every_step: unknown key 'every_step'"):
        load(path)


# --- audit: no pickles, no remote code ----------------------------------------------------

def unsafe_calls(source: str, filename: str = "<src>") -> list[str]:
    """``torch.load`` without ``weights_only=True`` and ``trust_remote_code`` set to anything but
    a literal False, as 'file:line: what'."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Dict):  # kwargs built as a dict: {"trust_remote_code": ...}
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "trust_remote_code" and not (
                        isinstance(v, ast.Constant) and v.value is False):
                    found.append(f"{filename}:{node.lineno}: trust_remote_code is not literally False")
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        kw = {k.arg: k.value for k in node.keywords}
        if isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name) \
                and f.value.id == "torch":
            wo = kw.get("weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                found.append(f"{filename}:{node.lineno}: torch.load without weights_only=True")
        if "trust_remote_code" in kw:
            v = kw["trust_remote_code"]
            if not (isinstance(v, ast.Constant) and v.value is False):
                found.append(f"{filename}:{node.lineno}: trust_remote_code is not literally False")
    return found


def test_audit_finds_unsafe_calls() -> None:
    bad = ("import torch\nx = torch.load('a.pt')\ny = torch.load('b.pt', weights_only=False)\n"
           "m = M.from_pretrained('d', trust_remote_code=True)\nok = torch.load('c', weights_only=True)\n"
           "kw = {'trust_remote_code': flag}\n")
    assert unsafe_calls(bad, "f.py") == [
        "f.py:2: torch.load without weights_only=True",
        "f.py:3: torch.load without weights_only=True",
        "f.py:4: trust_remote_code is not literally False",
        "f.py:6: trust_remote_code is not literally False",
    ]


def test_src_loads_no_pickles_and_no_remote_code() -> None:
    problems = []
    files = sorted((REPO_ROOT / "src" / "reclaim").rglob("*.py"))
    assert len(files) > 20
    for path in files:
        text = path.read_text(encoding="utf-8")
        problems += unsafe_calls(text, str(path.relative_to(REPO_ROOT)))
        for n, line in enumerate(text.splitlines(), 1):
            if "trust_remote_code=True" in line.replace(" ", ""):
                problems.append(f"{path.relative_to(REPO_ROOT)}:{n}: trust_remote_code=True")
            if "pickle.load" in line:
                problems.append(f"{path.relative_to(REPO_ROOT)}:{n}: {line.strip()}")
    assert not problems, "\n".join(problems)
