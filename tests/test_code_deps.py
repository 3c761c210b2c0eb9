"""The code-input closure is parsed once per file and per process, and still sees edits."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from reclaim import code_deps
from reclaim.jobs import code_closure


@pytest.fixture
def tree(tmp_path: Path):
    """A miniature ``reclaim`` source tree and a module_file for it."""
    pkg = tmp_path / "reclaim"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from reclaim import b\n")
    (pkg / "b.py").write_text("import os\n")
    (pkg / "c.py").write_text("def f():\n    from reclaim.sub import d\n")
    (pkg / "sub" / "d.py").write_text("")

    def module_file(module: str) -> Path:
        base = tmp_path.joinpath(*module.split("."))
        return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")

    code_deps.clear()
    yield pkg, module_file
    code_deps.clear()


def _names(files: list[str], pkg: Path) -> set[str]:
    return {Path(f).relative_to(pkg.parent).as_posix() for f in files}


def test_closure_follows_imports_and_parses_each_file_once(tree, monkeypatch) -> None:
    pkg, module_file = tree
    parsed: list[str] = []
    real_parse = ast.parse

    def counting_parse(source, filename="<unknown>", *args, **kwargs):  # type: ignore[no-untyped-def]
        parsed.append(filename)
        return real_parse(source, filename, *args, **kwargs)

    monkeypatch.setattr(code_deps.ast, "parse", counting_parse)
    want = {"reclaim/__init__.py", "reclaim/a.py", "reclaim/b.py"}
    for _ in range(100):
        assert _names(code_deps.closure(["reclaim.a"], module_file), pkg) == want
    assert len(parsed) == 3
    assert _names(code_deps.closure(["reclaim.c"], module_file), pkg) == {
        "reclaim/__init__.py", "reclaim/c.py", "reclaim/sub/__init__.py", "reclaim/sub/d.py"}
    assert len(parsed) == 6  # c, sub/__init__, sub/d: __init__ was parsed already


def test_an_edit_is_seen_at_the_next_call(tree) -> None:
    pkg, module_file = tree
    assert "reclaim/c.py" not in _names(code_deps.closure(["reclaim.a"], module_file), pkg)
    b = pkg / "b.py"
    st = b.stat()
    b.write_text("import os\nfrom reclaim import c\n")
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: the size still differs
    assert "reclaim/c.py" in _names(code_deps.closure(["reclaim.a"], module_file), pkg)
    b.unlink()
    assert _names(code_deps.closure(["reclaim.a"], module_file), pkg) == {
        "reclaim/__init__.py", "reclaim/a.py"}


def test_results_are_copies() -> None:
    first = code_closure(["reclaim.reports"])
    first.append("mutated")
    assert "mutated" not in code_closure(["reclaim.reports"])


def test_stamp_is_rewritten_only_when_a_closure_file_changes(tree, tmp_path: Path, monkeypatch) -> None:
    pkg, module_file = tree
    monkeypatch.setattr(code_deps, "RECHECK_S", 0.0)  # re-check on every call (edits below are immediate)
    stamps = tmp_path / "stamps"
    path = Path(code_deps.stamp(["reclaim.a"], module_file, tmp_path, str(stamps)))
    assert path == stamps / "a" / "sha256"
    lines = path.read_text().splitlines()
    assert [ln.split("  ")[1] for ln in lines] == ["reclaim/__init__.py", "reclaim/a.py", "reclaim/b.py"]
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # an old stamp: a rewrite would show

    # a touch without a change (and a fresh process: no memo) rewrites nothing
    os.utime(pkg / "b.py")
    code_deps.clear()
    assert code_deps.stamp(["reclaim.a"], module_file, tmp_path, str(stamps)) == str(path)
    assert path.stat().st_mtime_ns == 1_000_000_000

    # a file outside the closure changes: nothing
    (pkg / "c.py").write_text("x = 1\n")
    code_deps.stamp(["reclaim.a"], module_file, tmp_path, str(stamps))
    assert path.stat().st_mtime_ns == 1_000_000_000

    # an edit inside the closure (same process, memo warm) rewrites it with the new digest
    (pkg / "b.py").write_text("import os\nimport sys\n")
    code_deps.stamp(["reclaim.a"], module_file, tmp_path, str(stamps))
    assert path.stat().st_mtime_ns == (pkg / "b.py").stat().st_mtime_ns  # the newest file's
    assert path.read_text() != "\n".join(lines) + "\n"

    # a new import grows the closure and the stamp
    (pkg / "a.py").write_text("from reclaim import b\nfrom reclaim import c\n")
    code_deps.stamp(["reclaim.a"], module_file, tmp_path, str(stamps))
    assert "reclaim/c.py" in path.read_text()


def test_stamp_label_does_not_depend_on_entry_order(tree, tmp_path: Path) -> None:
    pkg, module_file = tree
    one = code_deps.stamp(["reclaim.c", "reclaim.a"], module_file, tmp_path, str(tmp_path / "s"))
    two = code_deps.stamp(["reclaim.a", "reclaim.c"], module_file, tmp_path, str(tmp_path / "s"))
    assert one == two and Path(one).parent.name == "a+c"


def test_stamp_is_not_rechecked_within_the_recheck_window(tree, tmp_path: Path, monkeypatch) -> None:
    pkg, module_file = tree
    monkeypatch.setattr(code_deps, "RECHECK_S", 3600.0)
    path = Path(code_deps.stamp(["reclaim.a"], module_file, tmp_path, str(tmp_path / "s")))
    before = path.read_text()
    (pkg / "b.py").write_text("import os\nimport json\n")
    code_deps.stamp(["reclaim.a"], module_file, tmp_path, str(tmp_path / "s"))
    assert path.read_text() == before  # within one DAG build: taken as is
    monkeypatch.setattr(code_deps, "RECHECK_S", 0.0)
    code_deps.stamp(["reclaim.a"], module_file, tmp_path, str(tmp_path / "s"))
    assert path.read_text() != before
