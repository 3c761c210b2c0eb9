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
