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
import hashlib
import os
import time
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
    """Forget every parsed file, closure and stamp."""
    _IMPORTS.clear()
    _CLOSURES.clear()
    _STAMPS.clear()
    _DIGESTS.clear()


# (root, sorted entry modules) -> (closure files when written, the stamp's text, when checked)
_STAMPS: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, ...], str, float]] = {}
# A stamp whose files were checked less than this many seconds ago is taken as is: building a
# DAG asks for the same stamp once per job (thousands of times a second), and sources do not
# change in the middle of one DAG build.
RECHECK_S = 2.0
_DIGESTS: dict[str, tuple[Stamp | None, str]] = {}


def _sha256(path: str) -> str:
    import hashlib

    st = _stamp(path)
    hit = _DIGESTS.get(path)
    if hit is not None and st is not None and hit[0] == st:
        return hit[1]
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    _DIGESTS[path] = (st, digest)
    return digest


def stamp(entry_modules: Iterable[str], module_file: Callable[[str], Path], src_root: Path,
          stamp_dir: str) -> str:
    """One file standing for a closure's source: ``<stamp_dir>/<label>/sha256`` lists the
    sha256 of every file of the closure and is rewritten only when that list changes, taking
    the newest of those files' mtime.

    Why: a job that declared each of its ~20 source files as inputs cost Snakemake ~20 file
    checks per job (``snakemake -n`` over 10,000 jobs spent most of its time there); one
    stamp input per job keeps the rerun semantics (an edit that changes a file's content
    gives the stamp a new mtime, so exactly the jobs whose closure holds the file rerun; a
    touch without a change rewrites nothing) at one file check per job. The stamp is written
    here, while the DAG is built, so it has no producing job and never appears in a plan.
    """
    from reclaim.io import write_text

    entries = tuple(sorted(set(entry_modules)))
    key = (str(src_root), entries)
    label = "+".join(m.removeprefix("reclaim.") for m in entries)
    if len(label) > 120:  # a file-name component holds 255 bytes: long module lists get a digest
        label = f"{label[:80]}+{len(entries)}-{hashlib.sha256(label.encode()).hexdigest()[:16]}"
    # One directory per stamp: Snakemake lists a directory's files once, the first time it
    # checks one of them, and takes files created after that as missing; a stamp is created
    # before its first check, so its own directory is always listed with it inside.
    path = os.path.join(stamp_dir, label, "sha256")
    hit = _STAMPS.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[2] < RECHECK_S:
        return path
    # Otherwise a hit costs one os.stat per closure file: unchanged files mean an unchanged
    # closure (an added import changes the importing file), hence an unchanged stamp.
    if hit is not None and all(_DIGESTS.get(f, (None,))[0] == _stamp(f) for f in hit[0]) \
            and os.path.isfile(path):
        _STAMPS[key] = (hit[0], hit[1], now)
        return path
    files = tuple(closure(entries, module_file))
    text = "".join(f"{_sha256(f)}  {Path(f).relative_to(src_root).as_posix()}\n" for f in files)
    try:
        current = Path(path).read_text(encoding="utf-8")
    except OSError:
        current = None
    if current != text:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_text(path, text)
        # The stamp takes the newest source file's mtime, so it orders against outputs exactly
        # as the files themselves did (a fresh clone plus `dvc pull` of results is up to date).
        newest = max((st[0] for st in map(_stamp, files) if st is not None), default=None)
        if newest is not None:
            os.utime(path, ns=(newest, newest))
    _STAMPS[key] = (files, text, time.monotonic())
    return path
