"""Stable example ids: a content hash, never a row number.

A selection (``example_id, weight``) must survive re-ordering, re-sharding and DVC caching
of the data it was computed on, so every canonical row carries
``example_id = blake2b(task | split | fields...)``. Exact duplicates (same text and label)
would collide; they are salted with their occurrence count in file order (``#1``, ``#2``),
so the first copy keeps the plain hash and the ids stay unique.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any


def content_id(namespace: Sequence[str], fields: Sequence[Any]) -> str:
    """16 hex digits of blake2b over the namespace (task, split) and the row's fields."""
    payload = json.dumps([*namespace, *fields], ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=8).hexdigest()


def assign_ids(rows: list[dict[str, Any]], namespace: Sequence[str], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Add ``example_id`` to every row (in place; returns ``rows``)."""
    seen: dict[str, int] = {}
    for row in rows:
        base = content_id(namespace, [row.get(k) for k in keys])
        n = seen.get(base, 0)
        seen[base] = n + 1
        row["example_id"] = base if n == 0 else content_id([base, f"#{n}"], [])
    return rows
