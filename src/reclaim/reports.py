"""Claims for people: results/claims.md, `reclaim list`, `reclaim show`, and the HTML tables
the Snakemake report shows (its HTML viewer renders .html and images, but only offers CSV and
Markdown files for download).

Every number here is read from a claim's results/<claim>.json or recomputed from it and the
claim's params.yaml entry by the claim's aggregator (``headline``), never typed; a claim
without a results file is listed as "not run".
"""

from __future__ import annotations

import csv
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reclaim import claims
from reclaim.io import write_text

NOT_RUN = "not run"
SUMMARY_HEADERS = ["target", "claim", "measure", "paper's number", "reproduced number", "scale",
                   "device", "verdicts"]


# -- reading ---------------------------------------------------------------------------------
def target(claim: str) -> str:
    """The Snakemake target that builds a claim."""
    return f"results/{claim}.csv"


def load_result(path: str | Path) -> dict[str, Any] | None:
    """A claim's aggregate JSON, or None when it does not exist yet (the claim is not run)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or "verdicts" not in data:
        raise ValueError(f"{path}: not a claim result (no 'verdicts' key)")
    return data


def load_results(claims_cfg: Mapping[str, Any], results_dir: str | Path) -> dict[str, dict[str, Any] | None]:
    return {c: load_result(Path(results_dir) / f"{c}.json") for c in claims_cfg}


def headline(claim_cfg: Mapping[str, Any], result: Mapping[str, Any] | None) -> dict[str, Any]:
    """The aggregator's headline comparison; for a claim not run, the paper side only."""
    empty = {"tasks": [], "models": [], "metrics": {}, "verdicts": {}}
    return claims.get(claim_cfg["aggregator"]).headline(dict(result or empty), dict(claim_cfg))


# -- formatting ------------------------------------------------------------------------------
def num(x: float | None, signed: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def short_paper(text: str) -> str:
    """'Wang et al., arXiv 2407.05000' from a claim's paper citation."""
    first = re.split(r"[,.]", text.strip(), maxsplit=1)[0].strip()
    arxiv = re.search(r"arXiv[: ]\s*(\d{4}\.\d{4,5})", text)
    venue = f"arXiv {arxiv.group(1)}" if arxiv else text.strip()[:40]
    return f"{first} et al., {venue}" if first and first != text.strip() else venue


def paper_cell(h: Mapping[str, Any]) -> str:
    parts = []
    if h.get("tasks"):
        parts.append(f"{num(h.get('paper_same_tasks'))} on the run's {len(h['tasks'])} tasks")
    n_all = len(h.get("paper_all_task_names", []))
    if h.get("paper_all_tasks") is not None:
        parts.append(f"{num(h['paper_all_tasks'])} on all {n_all} reported tasks")
    return "; ".join(parts) or "n/a"


def reproduced_cell(h: Mapping[str, Any]) -> str:
    return "; ".join(f"{r['model']}: {num(r['reproduced'])}" for r in h["rows"]) or NOT_RUN


def verdicts_cell(h: Mapping[str, Any]) -> str:
    out = []
    for r in h["rows"]:
        words = ", ".join(f"({v['id']}) {v['verdict']}" for v in r["verdicts"])
        out.append(f"{r['model']}: {words}" if len(h["rows"]) > 1 else words)
    return "; ".join(out) or NOT_RUN


def summary_rows(claims_cfg: Mapping[str, Any], results: Mapping[str, Any]) -> list[list[str]]:
    """One row per claim, columns SUMMARY_HEADERS."""
    rows = []
    for name, c in claims_cfg.items():
        res = results.get(name)
        h = headline(c, res)
        tasks = f" over {', '.join(h['tasks'])}" if h.get("tasks") else ""
        rows.append([target(name), c["title"], h["quantity"] + tasks, paper_cell(h),
                     reproduced_cell(h) if res else NOT_RUN,
                     res.get("scale", "?") if res else NOT_RUN,
                     ", ".join(res.get("devices", [])) or "?" if res else NOT_RUN,
                     verdicts_cell(h) if res else NOT_RUN])
    return rows


def _md_cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_md_cell(x) for x in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned with spaces, for the terminal."""
    cells = [[str(x) for x in headers]] + [[str(x) for x in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>\n"
                   for r in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


_CSS = ("body{font-family:sans-serif;font-size:13px;margin:1em}"
        "table{border-collapse:collapse}th,td{border:1px solid #bbb;padding:2px 6px;text-align:left}"
        "th{background:#eee}tr:nth-child(even){background:#f7f7f7}")


def html_page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
            f"{body}</body></html>\n")


# -- claims.md -------------------------------------------------------------------------------
def _legend(claims_cfg: Mapping[str, Any], results: Mapping[str, Any]) -> list[str]:
    lines = []
    for name, c in claims_cfg.items():
        h = headline(c, results.get(name))
        if h["rows"]:
            seen = {v["id"]: v["claim"] for row in h["rows"] for v in row["verdicts"]}  # every group's
            keys = "; ".join(f"({i}) {text}" for i, text in sorted(seen.items()))
            lines.append(f"- `{name}` verdicts: {keys}.")
    return lines


_MD_NOTE = ("Numbers are differences in points. The paper's number is recomputed from the claim's "
            "`paper_results` in params.yaml: first on the tasks the run covered (the number the "
            "reproduced one is comparable with), then on every task the paper reports (a claim's "
            "title quotes the paper's own Average column, which can differ slightly from the "
            "mean of the per-task numbers).")


def claims_markdown(claims_cfg: Mapping[str, Any], results: Mapping[str, Any]) -> str:
    """results/claims.md: every claim in one table, with what each number is."""
    out = ["# Claims", "",
           "Generated by `snakemake results/claims.md` (rule `claims_summary`) from "
           "results/<claim>.json and params.yaml; do not edit by hand.", "",
           markdown_table(SUMMARY_HEADERS, summary_rows(claims_cfg, results)), _MD_NOTE, ""]
    legend = _legend(claims_cfg, results)
    return "\n".join(out + legend) + ("\n" if legend else "")


def claims_html(claims_cfg: Mapping[str, Any], results: Mapping[str, Any]) -> str:
    legend = "".join(f"<li>{html.escape(x[2:])}</li>" for x in _legend(claims_cfg, results))
    body = (html_table(SUMMARY_HEADERS, summary_rows(claims_cfg, results))
            + f"<p>{html.escape(_MD_NOTE)}</p>\n" + (f"<ul>{legend}</ul>\n" if legend else ""))
    return html_page("Claims", body)


def write_claims(claims_cfg: Mapping[str, Any], results: Mapping[str, Any], out_md: str | Path,
                 out_html: str | Path | None = None) -> None:
    write_text(out_md, claims_markdown(claims_cfg, results))
    if out_html:
        write_text(out_html, claims_html(claims_cfg, results))


# -- a claim's CSV, compactly -----------------------------------------------------------------
def compact_csv(path: str | Path) -> tuple[list[str], list[list[str]], dict[str, str]]:
    """(headers, rows, constants): the claim table without its empty columns, and with the
    columns that hold one value in every row pulled out as ``constants``."""
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        try:
            headers = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty file, expected a CSV header line") from None
        rows = list(reader)
    for i, r in enumerate(rows, 2):
        if len(r) != len(headers):
            raise ValueError(f"{path}: line {i}: {len(r)} fields, header has {len(headers)}")
    keep, constants = [], {}
    for i, h in enumerate(headers):
        values = {r[i] for r in rows}
        if values <= {""}:
            continue
        if len(rows) > 1 and len(values) == 1:
            constants[h] = rows[0][i]
        else:
            keep.append(i)
    return [headers[i] for i in keep], [[r[i] for i in keep] for r in rows], constants


def table_html(csv_path: str | Path, title: str) -> str:
    headers, rows, constants = compact_csv(csv_path)
    const = ", ".join(f"{k} = {v}" for k, v in constants.items())
    body = (f"<p>{html.escape(Path(csv_path).name)}: {len(rows)} rows"
            + (f"; in every row: {html.escape(const)}" if const else "") + "</p>\n"
            + html_table(headers, rows))
    return html_page(title, body)


# -- reclaim list / show ---------------------------------------------------------------------
LIST_HEADERS = ["claim", "target", "paper", "scales", "results", "verdicts"]


def list_rows(cfg: Mapping[str, Any], results_dir: str | Path) -> list[list[str]]:
    results = load_results(cfg["claims"], results_dir)
    rows = []
    for name, c in cfg["claims"].items():
        res = results[name]
        status = (f"{res.get('scale', '?')} ({Path(results_dir) / (name + '.json')})"
                  if res else NOT_RUN)
        rows.append([name, target(name), short_paper(c.get("paper", "")), ", ".join(c["scales"]),
                     status, verdicts_cell(headline(c, res)) if res else NOT_RUN])
    return rows


def show_text(cfg: Mapping[str, Any], name: str, results_dir: str | Path) -> str:
    """Everything about one claim: what it says, the paper's numbers, how it is judged, and
    the latest table and verdicts."""
    if name not in cfg["claims"]:
        raise KeyError(f"unknown claim {name!r} (known: {', '.join(cfg['claims'])})")
    c = cfg["claims"][name]
    res = load_result(Path(results_dir) / f"{name}.json")
    out = [f"{name}: {c['title']}", f"paper: {' '.join(c.get('paper', '').split())}",
           f"target: {target(name)}   aggregator: {c['aggregator']}   "
           + (f"methods: {', '.join(c['methods'])}" if "methods" in c else f"arms: {', '.join(c.get('arms', {}))}"),
           "scales:"]
    for sname, s in c["scales"].items():
        data = f"pool {s['pool']}" if s.get("pool") else \
            f"models {', '.join(s.get('models', []))}; tasks {', '.join(s.get('tasks', []))}"
        out.append(f"  {sname}: {data}; seeds {', '.join(map(str, s['seeds']))}")
    paper = c.get("paper_results", {})
    if paper:
        tasks = list(dict.fromkeys(t for per in paper.values() for t in per))
        out += ["", "paper results (paper_results):",
                text_table(["method", *tasks],
                           [[m, *(num(per.get(t), signed=False) for t in tasks)]
                            for m, per in paper.items()]).rstrip()]
    vcfg = (res or {}).get("verdict_config") or c.get("verdict", {})
    out += ["", "verdict config: " + ", ".join(f"{k}={v}" for k, v in vcfg.items())]
    h = headline(c, res)
    out += [f"headline: {h['quantity']}; paper {paper_cell(h)}"]
    if res is None:
        out += ["", f"results: {NOT_RUN} ({Path(results_dir) / (name + '.json')} does not exist; "
                    f"build it with: snakemake {target(name)})"]
        return "\n".join(out) + "\n"
    out += ["", f"results: scale {res.get('scale', '?')}, devices {', '.join(res.get('devices', []))}, "
                f"reproduced {reproduced_cell(h)}"]
    for model, vs in res["verdicts"].items():
        for key, v in sorted(vs.items()):
            out.append(f"  [{model}] {key}: {v['verdict']} - {v.get('claim', '')}; estimate "
                       f"{num(v.get('estimate'), False)} [{num(v.get('lower'), False)}, "
                       f"{num(v.get('upper'), False)}]")
            if v.get("rule"):
                out.append(f"      rule: {v['rule']}")
    csv_path = Path(results_dir) / f"{name}.csv"
    if csv_path.is_file():
        headers, rows, constants = compact_csv(csv_path)
        const = ", ".join(f"{k}={v}" for k, v in constants.items())
        out += ["", f"table ({csv_path}; every row: {const}):", text_table(headers, rows).rstrip()]
    return "\n".join(out) + "\n"
