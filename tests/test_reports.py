"""Reports: results/claims.md, `reclaim list` / `reclaim show`, and the Snakemake HTML report
(built from a real tiny run, then rendered in headless Chromium)."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reclaim import reports
from reclaim.cli import main
from reclaim.config import REPO_ROOT, load, load_yaml
from reclaim.testing import run_snakemake

CHROMIUM = Path("/usr/bin/chromium")
CLAIM = "lora_ga_glue"


@pytest.fixture(scope="module")
def cfg() -> dict:
    return load(REPO_ROOT / "params.yaml")


def _result(scale: str = "smoke") -> dict:
    """A claim JSON as `aggregate` writes it (qnli missing, so the paper gap uses 2 tasks)."""
    def verdict(word: str, est: float) -> dict:
        return {"verdict": word, "estimate": est, "lower": est - 1, "upper": est + 1,
                "claim": f"claim text {word}", "rule": f"rule text {word}"}

    return {
        "claim": CLAIM, "scale": scale, "models": ["m1"], "tasks": ["sst2", "cola", "qnli"],
        "missing_tasks": {"qnli": "QNLI/train.tsv not found"}, "devices": ["cpu-test"],
        "metrics": {"m1/lora_ga/avg/accuracy": 80.25, "m1/lora/avg/accuracy": 75.0},
        "verdicts": {"m1": {"a_beats_baseline": verdict("holds", 5.25),
                            "b_close_to_full_ft": verdict("does not hold", 3.0),
                            "c_convergence_speedup": verdict("inconclusive", 1.5)}},
    }


# -- headline and claims.md ------------------------------------------------------------------
def test_headline_is_computed_from_results_and_paper_numbers(cfg) -> None:
    h = reports.headline(cfg["claims"][CLAIM], _result())
    assert h["tasks"] == ["sst2", "cola"]
    assert h["rows"][0]["reproduced"] == pytest.approx(5.25)
    # Table 1: LoRA-GA sst2 94.11, cola 80.57; LoRA 94.04, 69.35 (same tasks as the run).
    assert h["paper_same_tasks"] == pytest.approx((94.11 + 80.57) / 2 - (94.04 + 69.35) / 2)
    five = (85.70 + 94.11 + 80.57 + 93.18 + 85.29) / 5 - (85.30 + 94.04 + 69.35 + 92.96 + 68.38) / 5
    assert h["paper_all_tasks"] == pytest.approx(five)
    assert [(v["id"], v["verdict"]) for v in h["rows"][0]["verdicts"]] == [
        ("a", "holds"), ("b", "does not hold"), ("c", "inconclusive")]


def test_headline_matches_the_verdicts_own_estimates() -> None:
    """On the committed smoke result, the recomputed gap equals verdict (a)'s estimate and
    the paper's same-task gap equals its paper_estimate."""
    path = REPO_ROOT / "results" / f"{CLAIM}.json"
    if not path.is_file():
        pytest.skip(f"{path} not committed in this checkout")
    res = json.loads(path.read_text())
    h = reports.headline(load(REPO_ROOT / "params.yaml")["claims"][CLAIM], res)
    for row in h["rows"]:
        a = res["verdicts"][row["model"]]["a_beats_baseline"]
        assert row["reproduced"] == pytest.approx(a["estimate"])
        assert h["paper_same_tasks"] == pytest.approx(a["paper_estimate"])


def test_claims_markdown_lists_run_and_not_run_claims(cfg) -> None:
    claims_cfg = {CLAIM: cfg["claims"][CLAIM], "other_claim": {**cfg["claims"][CLAIM], "title": "Other"}}
    md = reports.claims_markdown(claims_cfg, {CLAIM: _result(), "other_claim": None})
    table = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert table[0] == "| " + " | ".join(reports.SUMMARY_HEADERS) + " |"
    run = table[1].split(" | ")
    assert run[0] == f"| results/{CLAIM}.csv" and run[1] == cfg["claims"][CLAIM]["title"]
    assert "lora_ga - lora" in run[2] and "sst2, cola" in run[2]
    assert run[3].startswith("+5.65 on the run's 2 tasks; +5.76 on all 5")
    assert run[4] == "m1: +5.25" and run[5] == "smoke" and run[6] == "cpu-test"
    assert run[7] == "(a) holds, (b) does not hold, (c) inconclusive |"
    other = table[2].split(" | ")
    assert other[0] == "| results/other_claim.csv" and other[4:] == ["not run"] * 3 + ["not run |"]
    assert "(a) claim text holds" in md


def test_claims_md_cli_writes_atomically_and_rejects_unknown_results(tmp_path, cfg, capsys) -> None:
    (tmp_path / f"{CLAIM}.json").write_text(json.dumps(_result()))
    out = tmp_path / "claims.md"
    assert main(["claims-md", "--params", str(REPO_ROOT / "params.yaml"),
                 "--results-dir", str(tmp_path), "--out", str(out),
                 "--html", str(tmp_path / "claims.html")]) == 0
    assert "m1: +5.25" in out.read_text() and "<td>m1: +5.25</td>" in (tmp_path / "claims.html").read_text()
    assert not list(tmp_path.glob(".claims.md.*"))
    bad = tmp_path / "nope.json"
    bad.write_text(json.dumps(_result()))
    assert main(["claims-md", "--claims", json.dumps(cfg["claims"]), "--results", str(bad),
                 "--out", str(out)]) == 2
    assert "nope.json is not a configured claim" in capsys.readouterr().err


def test_bad_inputs_name_the_file_and_line(tmp_path) -> None:
    broken = tmp_path / "x.json"
    broken.write_text('{"verdicts": {}\n,,}')
    with pytest.raises(ValueError, match=r"x\.json: line 2: not valid JSON"):
        reports.load_result(broken)
    table = tmp_path / "t.csv"
    table.write_text("a,b\n1,2\n3\n")
    with pytest.raises(ValueError, match=r"t\.csv: line 3: 1 fields, header has 2"):
        reports.compact_csv(table)


def test_compact_csv_drops_empty_and_constant_columns(tmp_path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("claim,method,mean,empty\nc,lora,1.0,\nc,full_ft,2.0,\n")
    assert reports.compact_csv(table) == (["method", "mean"], [["lora", "1.0"], ["full_ft", "2.0"]],
                                          {"claim": "c"})


# -- reclaim list / show ---------------------------------------------------------------------
def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_list_shows_results_and_not_run(tmp_path, capsys) -> None:
    params = str(REPO_ROOT / "params.yaml")
    rc, out, _ = _cli(capsys, "list", "--params", params, "--results-dir", str(tmp_path))
    assert rc == 0
    header, _, row = out.splitlines()[:3]
    assert header.split() == reports.LIST_HEADERS
    assert row.split()[:2] == [CLAIM, f"results/{CLAIM}.csv"]
    assert "Wang et al., arXiv 2407.05000" in row and "smoke, small, paper" in row
    assert row.endswith("not run  not run")
    (tmp_path / f"{CLAIM}.json").write_text(json.dumps(_result(scale="small")))
    rc, out, _ = _cli(capsys, "list", "--params", params, "--results-dir", str(tmp_path))
    row = out.splitlines()[2]
    assert f"small ({tmp_path}/{CLAIM}.json)" in row
    assert row.endswith("(a) holds, (b) does not hold, (c) inconclusive")


def test_show_claim_with_and_without_results(tmp_path, capsys) -> None:
    params = str(REPO_ROOT / "params.yaml")
    rc, out, _ = _cli(capsys, "show", CLAIM, "--params", params, "--results-dir", str(tmp_path))
    assert rc == 0
    assert out.startswith(f"{CLAIM}: LoRA-GA beats LoRA")
    assert "arXiv 2407.05000" in out and "within_points=1.0" in out
    assert re.search(r"^lora_ga\s+85\.70\s+94\.11\s+80\.57\s+93\.18\s+85\.29$", out, re.M)
    assert "results: not run" in out
    (tmp_path / f"{CLAIM}.json").write_text(json.dumps(_result()))
    with open(tmp_path / f"{CLAIM}.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["claim", "method", "task", "mean"])
        w.writerows([[CLAIM, "lora", "sst2", "51.2615"], [CLAIM, "lora_ga", "mrpc", "75.3440"]])
    rc, out, _ = _cli(capsys, "show", CLAIM, "--params", params, "--results-dir", str(tmp_path))
    assert rc == 0 and "not run" not in out
    assert "[m1] b_close_to_full_ft: does not hold - claim text does not hold" in out
    assert "rule: rule text holds" in out and "reproduced m1: +5.25" in out
    assert f"every row: claim={CLAIM}" in out
    assert re.search(r"^lora_ga\s+mrpc\s+75\.3440$", out, re.M)


def test_show_unknown_claim_exits_2_with_one_line(capsys) -> None:
    rc, out, err = _cli(capsys, "show", "no_such_claim", "--params", str(REPO_ROOT / "params.yaml"))
    assert rc == 2 and out == ""
    known = ", ".join(load_yaml(REPO_ROOT / "params.yaml")["claims"])
    assert err.splitlines() == [f"reclaim show: unknown claim 'no_such_claim' (known: {known})"]


# -- the Snakemake report, from a real tiny run ----------------------------------------------
@pytest.fixture(scope="module")
def report_run(all_claims_run):
    # rule all over every claim (conftest's session run, shared with other claims' tests)
    work, env, params = all_claims_run
    proc = run_snakemake(work, "--report", "results/report.html", env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, params


def _report_results(html: str) -> dict:
    m = re.search(r'<script id="results">\s*var results = (\{.*?\});\s*</script>', html, re.S)
    assert m, "report has no embedded results"
    return json.loads(m.group(1))


def _decode(uri: str) -> bytes:
    return base64.b64decode(uri.split(";base64,", 1)[1])


@pytest.mark.slow
def test_claims_md_is_built_by_rule_all(report_run) -> None:
    work, _ = report_run
    res = json.loads((work / f"results/{CLAIM}.json").read_text())
    gap = res["metrics"]["tiny-bert/lora_ga/avg/accuracy"] - res["metrics"]["tiny-bert/lora/avg/accuracy"]
    row = next(ln for ln in (work / "results/claims.md").read_text().splitlines()
               if ln.startswith(f"| results/{CLAIM}.csv"))
    assert f"tiny-bert: {gap:+.2f}" in row and "| smoke |" in row


@pytest.mark.slow
def test_report_embeds_every_claim_output_with_captions(report_run) -> None:
    work, params = report_run
    html = (work / "results/report.html").read_text()
    results = _report_results(html)
    expected = {f"results/{CLAIM}.csv", f"results/{CLAIM}.json", f"results/{CLAIM}_loss.png",
                f"results/report/{CLAIM}_table.html", "results/claims.md", "results/report/claims.html"}
    assert expected <= set(results)
    for path in expected:
        assert _decode(results[path]["data_uri"]) == (work / path).read_bytes(), path
    assert results[f"results/{CLAIM}_loss.png"]["mime_type"] == "image/png"
    title = load(REPO_ROOT / "params.yaml")["claims"][CLAIM]["title"]
    assert title in results[f"results/{CLAIM}.csv"]["caption"]  # rendered from the template
    assert "scale" in results[f"results/{CLAIM}_loss.png"]["caption"]
    table = _decode(results[f"results/report/{CLAIM}_table.html"]["data_uri"]).decode()
    assert "<td>lora_ga</td>" in table and "<td>mrpc</td>" in table
    assert "reclaim: published efficient-ML claims as build targets" in html
    assert "{{" not in html.split('<script id="results">')[0][-20000:]


# Drives the report's own React UI like a user: click the claim's category, then a
# subcategory, then the entry's view button; marks <body> when done (or on failure).
_DRIVER = """
<script>
(function () {
  const steps = %s;
  function find(sel, text) {
    const hit = [...document.querySelectorAll(sel)].find(el => el.textContent.trim() === text);
    return hit && hit.closest(sel === "td" ? "tr" : "a");
  }
  function run(i, tries) {
    if (i === steps.length) { document.body.setAttribute("data-driver", "done"); return; }
    const [sel, text] = steps[i];
    let el = find(sel, text);
    if (el && sel === "td") { el = el.querySelector("a"); }  // the row's view button
    if (!el) {
      if (tries < 50) { setTimeout(() => run(i, tries + 1), 100); return; }
      document.body.setAttribute("data-driver", "missing: " + text);
      return;
    }
    el.click();
    setTimeout(() => run(i + 1, 0), 200);
  }
  window.addEventListener("load", () => run(0, 0));
})();
</script>
"""


def _chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}",
           "--virtual-time-budget=8000", "--window-size=1400,1000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _driven_copy(report: Path, dest: Path, subcategory: str, entry: str) -> Path:
    steps = [["nav a span", CLAIM], ["nav a span", subcategory], ["td", entry]]
    html = report.read_text()
    head, tag, tail = html.rpartition("</body>")
    assert tag, f"{report}: no </body>"
    dest.write_text(head + _DRIVER % json.dumps(steps) + tag + tail)
    return dest


def _nonblank(png: Path) -> int:
    """Distinct colours in the screenshot (a blank page has one or two)."""
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (1400, 1000)
        return len(im.convert("RGB").getcolors(maxcolors=1 << 20) or [])


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (scripts/ci_chromium.sh)")
def test_report_renders_claim_plot_and_table_in_chromium(report_run, tmp_path) -> None:
    work, _ = report_run
    report = work / "results/report.html"
    png_uri = _report_results(report.read_text())[f"results/{CLAIM}_loss.png"]["data_uri"]
    page = _driven_copy(report, tmp_path / "plot.html", "plots", "loss curves")
    dom = _chromium(["--dump-dom", page.as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-driver="done"' in dom.stdout, re.findall(r'data-driver="[^"]*"', dom.stdout)
    imgs = re.findall(r'<img src="([^"]+)"', dom.stdout)
    assert png_uri in imgs  # the React app shows the claim's loss plot
    shot = tmp_path / "plot.png"
    proc = _chromium([f"--screenshot={shot}", page.as_uri()], tmp_path)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert _nonblank(shot) > 50

    page = _driven_copy(report, tmp_path / "table.html", "table", "table (HTML)")
    dom = _chromium(["--dump-dom", page.as_uri()], tmp_path)
    assert 'data-driver="done"' in dom.stdout, re.findall(r'data-driver="[^"]*"', dom.stdout)
    frames = re.findall(r'<iframe src="([^"]+)"', dom.stdout)
    assert len(frames) == 1 and "<td>lora_ga</td>" in _decode(frames[0]).decode()
    shot = tmp_path / "table.png"
    proc = _chromium([f"--screenshot={shot}", page.as_uri()], tmp_path)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert _nonblank(shot) > 20
    keep = os.environ.get("RECLAIM_SCREENSHOT_DIR")  # to look at them
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for name in ("plot.png", "table.png"):
            shutil.copy(tmp_path / name, Path(keep) / name)
