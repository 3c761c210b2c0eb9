"""The reclaim source files a job executes, found by following imports, memoised.

Rules declare these files as inputs (``reclaim.jobs.code_closure``), and Snakemake calls the
rules' input functions once per job, so building the DAG asks for the same few closures
thousands of times. Parsing every source file again for each job made ``snakemake -n``
cost about 0.2 s per job; here each file is parsed once per process and each closure is
computed once, then reused while none of its files has changed.

"Changed" is judged by ``os.stat``: (mtime_ns, size, inode). An edited, replaced or deleted
file invalidates the closures that contain it and is parsed again, so a process (or a test)
that edits a source file between two calls sees the edit.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable, Iterable
from pathlib import Path

Stamp = tuple[int, int, int]

# file -> (stamp when parsed, the reclaim modules it imports)
_IMPORTS: dict[str, tuple[Stamp, tuple[str, ...]]] = {}
# (module_file, entry modules) -> ((file, stamp) of every file in the closure, the sorted files)
_CLOSURES: dict[tuple[object, tuple[str, ...]],
                tuple[tuple[tuple[str, Stamp | None], ...], tuple[str, ...]]] = {}


def _stamp(path: str) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _is_reclaim(module: str) -> bool:
    return module.split(".")[0] == "reclaim"


_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")


def _statements(tree: ast.AST) -> list[ast.AST]:
    """Every statement, at any depth (function and class bodies, if/try/with/match blocks):
    imports are statements, so this finds the same imports as ``ast.walk`` without visiting
    every expression node (a tenth of the time)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        for name in _BLOCKS:
            block = getattr(node, name, None)
            if block:
                stack.extend(block)
    return out


def imports_of(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Every reclaim module ``path`` may import, function-level imports included
    (``from reclaim.a import b`` counts ``reclaim.a`` and ``reclaim.a.b``)."""
    path = os.fspath(path)
    stamp = _stamp(path)
    hit = _IMPORTS.get(path)
    if hit is not None and stamp is not None and hit[0] == stamp:
        return hit[1]
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    found: list[str] = []
    for node in _statements(tree):
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if _is_reclaim(a.name))
        elif isinstance(node, ast.ImportFrom) and node.module and _is_reclaim(node.module):
            found.append(node.module)
            found.extend(f"{node.module}.{a.name}" for a in node.names)
    mods = tuple(dict.fromkeys(found))
    if stamp is not None:
        _IMPORTS[path] = (stamp, mods)
    return mods


def _walk(entry_modules: Iterable[str], module_file: Callable[[str], Path]) -> tuple[str, ...]:
    seen: dict[str, str] = {}  # module -> its file
    todo = list(entry_modules)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        path = module_file(mod)
        if not path.is_file():
            continue
        seen[mod] = str(path)
        parts = mod.split(".")
        for i in range(1, len(parts)):  # importing a.b.c runs a/__init__ and a/b/__init__
            todo.append(".".join(parts[:i]))
        todo.extend(imports_of(path))
    return tuple(sorted(seen.values()))


def closure(entry_modules: Iterable[str], module_file: Callable[[str], Path]) -> list[str]:
    """Sorted source files of ``entry_modules`` and every reclaim module they import,
    ``module_file`` mapping a module name to its file. Memoised per entry list; a hit costs
    one ``os.stat`` per file in the closure."""
    entries = tuple(entry_modules)
    key = (module_file, entries)
    hit = _CLOSURES.get(key)
    if hit is not None and all(_stamp(f) == s for f, s in hit[0]):
        return list(hit[1])
    files = _walk(entries, module_file)
    _CLOSURES[key] = (tuple((f, _stamp(f)) for f in files), files)
    return list(files)


def clear() -> None:
    """Forget every parsed file and closure."""
    _IMPORTS.clear()
    _CLOSURES.clear()
