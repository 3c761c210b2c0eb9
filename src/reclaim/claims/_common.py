"""Helpers every claim aggregator shares."""

from __future__ import annotations

from typing import Any


def verdict_config(claim: dict[str, Any], defaults: dict[str, Any], where: str) -> dict[str, Any]:
    """The claim's ``verdict:`` block over the aggregator's defaults; an unknown key is an
    error naming it (checked before any job starts)."""
    v = claim.get("verdict", {})
    unknown = sorted(set(v) - set(defaults))
    if unknown:
        raise ValueError(f"{where}.verdict: unknown key {unknown[0]!r} (allowed: {', '.join(defaults)})")
    return {**defaults, **v}


def csv_cell(v: Any, digits: int = 4) -> Any:
    """A claim-table CSV cell: floats rounded, NaN and None empty."""
    import math

    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else round(v, digits)
    return v


def save_figure(fig: Any, path: Any, dpi: int = 110) -> None:
    """Lay out, write atomically as PNG (a killed job leaves no plot that counts as done), close."""
    import matplotlib.pyplot as plt

    from reclaim.io import atomic_path

    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def write_csv(path: Any, fields: list[str], rows: list[dict[str, Any]]) -> None:
    """A claim table, written atomically (temp file + rename)."""
    import csv

    from reclaim.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def headline_verdicts(group: dict[str, Any]) -> list[dict[str, Any]]:
    """One group's verdicts as ``headline`` rows list them (results/claims.md), in key order."""
    return [{"id": key.split("_", 1)[0], "key": key, "claim": x.get("claim", ""), "verdict": x["verdict"],
             "estimate": x.get("estimate")} for key, x in sorted(group.items())]
