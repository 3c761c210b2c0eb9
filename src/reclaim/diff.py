"""What moved between two commits: every claim's metrics and verdicts, side by side.

A claim's measured state lives in ``results/<claim>.json`` (committed to git; DVC tracks it
as a metrics file), so two revisions are compared by reading that file at each revision
with ``git show``. ``WORKTREE`` stands for the files on disk. Flipped verdicts come first
because they are what a reader of the table acts on; a change of scale between the two
revisions is reported with them, since a verdict never hides which scale produced it.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reclaim.reports import markdown_table, text_table

WORKTREE = "workspace"
RESULTS_DIR = "results"
VERDICT_NUMBERS = ("estimate", "se", "lower", "upper")


class DiffError(ValueError):
    """An unknown revision or claim: reported in one line, exit code 2."""


@dataclass
class ClaimState:
    claim: str
    rev: str
    result: dict[str, Any] | None  # None: no results at this revision


@dataclass
class Change:
    claim: str
    key: str
    before: Any
    after: Any
    change: float | None = None
    kind: str = "metric"  # metric | verdict | scale | results


@dataclass
class ClaimDiff:
    rev_a: str
    rev_b: str
    commit_a: str
    commit_b: str
    claims: list[str]
    verdict_flips: list[Change] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0
    missing: dict[str, list[str]] = field(default_factory=dict)  # claim -> revisions without results

    def to_json(self) -> dict[str, Any]:
        return {"rev_a": self.rev_a, "rev_b": self.rev_b, "commit_a": self.commit_a,
                "commit_b": self.commit_b, "claims": self.claims,
                "verdict_flips": [asdict(c) for c in self.verdict_flips],
                "changes": [asdict(c) for c in self.changes], "unchanged": self.unchanged,
                "missing": self.missing}


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def resolve_rev(repo: Path, rev: str) -> str:
    """Full commit id of ``rev``, or ``WORKTREE``; DiffError for anything git does not know."""
    if rev == WORKTREE:
        return WORKTREE
    proc = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if proc.returncode != 0:
        raise DiffError(f"unknown revision {rev!r} in {repo}")
    return proc.stdout.strip()


def read_at(repo: Path, rev: str, path: str) -> str | None:
    """Text of ``path`` (relative to the repo root) at ``rev``; None when absent there."""
    if rev == WORKTREE:
        p = repo / path
        return p.read_text(encoding="utf-8") if p.is_file() else None
    proc = _git(repo, "show", f"{rev}:{path}")
    return proc.stdout if proc.returncode == 0 else None


def claims_at(repo: Path, rev: str) -> list[str]:
    """Claims named in params.yaml at ``rev`` plus claims with a results file there."""
    names: list[str] = []
    text = read_at(repo, rev, "params.yaml")
    if text:
        try:
            names.extend((yaml.safe_load(text) or {}).get("claims", {}) or {})
        except yaml.YAMLError:
            pass
    if rev == WORKTREE:
        files = [p.name for p in (repo / RESULTS_DIR).glob("*.json")]
    else:
        proc = _git(repo, "ls-tree", "--name-only", f"{rev}:{RESULTS_DIR}")
        files = proc.stdout.split() if proc.returncode == 0 else []
    for f in files:
        stem = f[:-5] if f.endswith(".json") else ""
        if stem and stem not in names and _looks_like_claim(read_at(repo, rev, f"{RESULTS_DIR}/{f}")):
            names.append(stem)
    return names


def _looks_like_claim(text: str | None) -> bool:
    try:
        d = json.loads(text or "")
    except json.JSONDecodeError:
        return False
    return isinstance(d, dict) and "claim" in d and "metrics" in d


def load_state(repo: Path, rev: str, claim: str) -> ClaimState:
    text = read_at(repo, rev, f"{RESULTS_DIR}/{claim}.json")
    if text is None:
        return ClaimState(claim, rev, None)
    try:
        return ClaimState(claim, rev, json.loads(text))
    except json.JSONDecodeError as exc:
        raise DiffError(f"{RESULTS_DIR}/{claim}.json at {rev}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc


def numbers(result: dict[str, Any]) -> dict[str, float]:
    """The comparable numbers of a claim result: its flat metrics and each verdict's
    estimate and interval, keyed ``<model>/verdict/<name>/<field>``."""
    out = {k: float(v) for k, v in result.get("metrics", {}).items() if isinstance(v, (int, float))}
    for model, vs in result.get("verdicts", {}).items():
        for name, v in vs.items():
            for f in VERDICT_NUMBERS:
                if isinstance(v.get(f), (int, float)):
                    out[f"{model}/verdict/{name}/{f}"] = float(v[f])
    return out


def verdict_words(result: dict[str, Any]) -> dict[str, str]:
    return {f"{model}/verdict/{name}": v.get("verdict", "?")
            for model, vs in result.get("verdicts", {}).items() for name, v in vs.items()}


def _same(a: float | None, b: float | None, tol: float) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) and math.isnan(b):
        return True
    return abs(a - b) <= tol


def diff(repo: str | Path, rev_a: str = "HEAD~1", rev_b: str = WORKTREE, claim: str | None = None,
         tol: float = 1e-9) -> ClaimDiff:
    repo = Path(repo).resolve()
    if _git(repo, "rev-parse", "--git-dir").returncode != 0:
        raise DiffError(f"{repo} is not a git repository")
    commit_a, commit_b = resolve_rev(repo, rev_a), resolve_rev(repo, rev_b)
    known = list(dict.fromkeys(claims_at(repo, commit_a) + claims_at(repo, commit_b)))
    if claim is not None and claim not in known:
        raise DiffError(f"unknown claim {claim!r} (known at {rev_a} or {rev_b}: {', '.join(known) or 'none'})")
    names = [claim] if claim else known
    out = ClaimDiff(rev_a, rev_b, commit_a, commit_b, names)
    for name in names:
        a, b = load_state(repo, commit_a, name), load_state(repo, commit_b, name)
        missing = [r for r, s in ((rev_a, a), (rev_b, b)) if s.result is None]
        if missing:
            out.missing[name] = missing
            if len(missing) == 1:
                out.changes.append(Change(name, "results", "none" if a.result is None else "present",
                                          "none" if b.result is None else "present", kind="results"))
            continue
        assert a.result is not None and b.result is not None
        if a.result.get("scale") != b.result.get("scale"):
            out.verdict_flips.append(Change(name, "scale", a.result.get("scale"), b.result.get("scale"),
                                            kind="scale"))
        wa, wb = verdict_words(a.result), verdict_words(b.result)
        for key in sorted(set(wa) | set(wb)):
            if wa.get(key) != wb.get(key):
                out.verdict_flips.append(Change(name, key, wa.get(key, "absent"), wb.get(key, "absent"),
                                                kind="verdict"))
        na, nb = numbers(a.result), numbers(b.result)
        for key in sorted(set(na) | set(nb)):
            x, y = na.get(key), nb.get(key)
            if _same(x, y, tol):
                out.unchanged += 1
                continue
            delta = y - x if x is not None and y is not None else None
            out.changes.append(Change(name, key, x, y, delta))
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _short(rev: str, commit: str) -> str:
    return rev if commit == WORKTREE else f"{rev} ({commit[:8]})"


def render(d: ClaimDiff, markdown: bool = False) -> str:
    rows = [(c.claim, c.key, _fmt(c.before), _fmt(c.after),
             "FLIPPED" if c.kind == "verdict" else "CHANGED" if c.kind == "scale" else "")
            for c in d.verdict_flips]
    rows += [(c.claim, c.key, _fmt(c.before), _fmt(c.after),
              ("+" if (c.change or 0) > 0 else "") + _fmt(c.change) if c.change is not None else "")
             for c in d.changes]
    head = ("claim", "metric", "before", "after", "change")
    title = f"reclaim diff: {_short(d.rev_a, d.commit_a)} -> {_short(d.rev_b, d.commit_b)}"
    lines = [f"**{title}**", ""] if markdown else [title]
    if rows or markdown:
        lines.append((markdown_table if markdown else text_table)(head, rows).rstrip("\n"))
    if not rows:
        lines.append("nothing moved" if not d.missing else "no comparable results")
    for claim, revs in d.missing.items():
        lines.append(f"{claim}: no results at {' and '.join(revs)}")
    flips = sum(1 for c in d.verdict_flips if c.kind == "verdict")
    moved = sum(1 for c in d.changes if c.kind == "metric")
    lines.append(f"{moved} number(s) changed, {flips} verdict(s) flipped, "
                 f"{d.unchanged} unchanged")
    return "\n".join(lines)
