"""Claim: computing the cross-entropy loss block by block over the vocabulary cuts the loss's
memory from the N x V logits to almost nothing, with the same loss and gradients (Wijmans et
al., Cut Your Losses in Large-Vocabulary Language Models, ICLR 2025, arXiv 2411.09009;
abstract: Gemma 2 (2B) "from 24 GB to 1 MB"). The paper's Table 1 figures are not verified
here and are not in params.yaml.

Rows come from the ``loss_memory`` evaluator (reclaim.evaluate.loss_memory): the extra live
tensor bytes of the loss op, plain (logits materialised) and chunked (reclaim.optim.
_linear_ce), forward and forward + backward, on the subject's real hidden states. Verdicts,
per subject:

  (a) memory, for forward and for forward + backward: r = chunked / plain (measured bytes)
      against the ratio predicted from the shapes, r_pred = predicted chunked / predicted
      plain (``predicted_extra_bytes``: plain 2 N V and 3 N V words; chunked one N x chunk
      tile, plus dC and dE with the backward pass). This is the shape-adjusted bound: the
      paper's kernel keeps its blocks in on-chip SRAM (1 MB), a CPU block is an ordinary
      tensor, so our bound is what the algorithm must hold at our N, V, D and chunk.
      Holds if r <= ``memory_slack`` x r_pred and r < 1; does not hold if r >= 1 or
      r > ``memory_fail`` x r_pred; inconclusive otherwise (the notes' memory template with
      r_pred in place of the paper's ratio). Deterministic: no noise term.
  (b) equivalence, against the plain loss in float64 (the evaluator's reference): the
      chunked loss's |error| <= max(``loss_tolerance``, the plain fp32 loss's own error), and
      the same for max |error| of dE and dC with ``grad_tolerance`` x max(1, max |gradient|)
      (absolute below 1, relative above). Why not chunked vs plain fp32 alone: on SmolLM2's
      real hidden states at 2,048 tokens the plain fp32 loss is 1.5e-5 off float64 in the loss
      and 4e-5 in dC (its one N x V reduction), while the chunked loss is 1e-8 and 1.5e-6 off
      (random states, notes 2.3, give 1.9e-6 and 2.3e-10). Both deltas are in the table.
  (c) speed ("without sacrificing training speed"): decided only on a GPU, from the time
      ratio chunked / plain over >= 3 interleaved repeats (holds if the whole interval
      mean +/- z*SE is <= ``speed_ratio``); inconclusive on a CPU, read from the device the
      evaluator ran on, whatever the times say.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from reclaim.claims._common import (
    csv_cell,
    headline_verdicts,
    save_figure,
    verdict_config,
    write_csv,
)
from reclaim.io import write_json
from reclaim.verdicts import FAILS, HOLDS, INCONCLUSIVE, mean, std, threshold_verdict

MIB = 2**20
EVALUATOR = "loss_memory"
PASSES = (("forward", "forward"), ("forward_backward", "forward + backward"))
VERDICT_DEFAULTS = {"memory_slack": 1.10, "memory_fail": 1.25, "loss_tolerance": 1.0e-5,
                    "grad_tolerance": 1.0e-6, "speed_ratio": 1.10, "z": 2.0}
CSV_FIELDS = ["claim", "scale", "arm", "subject", "loss", "pass", "extra_mib", "predicted_mib",
              "measured_over_predicted", "ratio_to_plain", "predicted_ratio_to_plain", "n_tokens", "vocab", "hidden",
              "chunk", "dtype", "loss_value", "abs_delta_loss", "max_abs_delta_de", "max_abs_delta_dc",
              "err_fp64_loss", "err_fp64_de", "err_fp64_dc",
              "time_s", "n_repeats", "device", "metric_definition"]
DEFINITION = "extra live tensor bytes of the loss op above E, C, targets (gradients included)"
# CCE's Table 1 shapes: 8,192 tokens, Gemma 2 (2B) hidden 2,304 and vocabulary 256,000 (its config)
PAPER_SHAPE = {"model": "Gemma 2 (2B) shapes", "n": 8192, "v": 256000, "d": 2304}


class CceMemory:
    takes_runs = True

    def check_config(self, claim: dict[str, Any], where: str) -> None:
        v = verdict_config(claim, VERDICT_DEFAULTS, where)
        for key, value in v.items():
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{where}.verdict.{key}: must be a number > 0, got {value!r}")
        if v["memory_fail"] < v["memory_slack"]:
            raise ValueError(f"{where}.verdict: memory_fail ({v['memory_fail']}) must be >= memory_slack "
                             f"({v['memory_slack']})")
        evaluated = [a for a, steps in claim.get("arms", {}).items()
                     if steps and steps[-1].get("evaluate", {}).get("evaluator") == EVALUATOR]
        if not evaluated:
            raise ValueError(f"{where}.arms: no arm ends with an evaluate step (evaluator {EVALUATOR})")

    def aggregate_runs(self, claim_name: str, claim: dict[str, Any], scale: str, runs: list[dict[str, Any]],
                       out_csv: str | Path, out_json: str | Path, out_png: str | Path) -> dict[str, Any]:
        v = verdict_config(claim, VERDICT_DEFAULTS, claim_name)
        rows: list[dict[str, Any]] = []
        flat: dict[str, float] = {}
        verdicts: dict[str, dict[str, Any]] = {}
        devices: set[str] = set()
        for r in sorted(runs, key=lambda x: (x["arm"], x["seed"])):
            res = r["result"]
            if res["spec"]["evaluator"] != EVALUATOR:
                continue
            m = res["metrics"]
            subject = res["spec"]["model"]["name"]
            devices.add(m["device"])
            group = verdicts.setdefault(subject, {})
            for key, label in PASSES:
                plain, chunked = m[f"plain_{key}_bytes"], m[f"chunked_{key}_bytes"]
                pred_plain, pred_chunked = m[f"predicted_plain_{key}_bytes"], m[f"predicted_chunked_{key}_bytes"]
                for loss, measured, pred in (("plain", plain, pred_plain), ("chunked", chunked, pred_chunked)):
                    times = m[f"time_{loss}_s"]
                    rows.append({
                        "claim": claim_name, "scale": scale, "arm": r["arm"], "subject": subject, "loss": loss,
                        "pass": label, "extra_mib": csv_cell(measured / MIB, 3), "predicted_mib": csv_cell(pred / MIB, 3),
                        "measured_over_predicted": csv_cell(measured / pred, 4),
                        "ratio_to_plain": csv_cell(measured / plain, 5) if loss == "chunked" else "",
                        "predicted_ratio_to_plain": csv_cell(pred / pred_plain, 5) if loss == "chunked" else "",
                        "n_tokens": m["n_tokens"], "vocab": m["vocab"], "hidden": m["hidden"], "chunk": m["chunk"],
                        "dtype": m["dtype"], "loss_value": csv_cell(m[f"loss_{loss}"], 6),
                        "abs_delta_loss": csv_cell(m["abs_delta_loss"], 10) if loss == "chunked" else "",
                        "max_abs_delta_de": csv_cell(m["max_abs_delta_de"], 12) if loss == "chunked" else "",
                        "max_abs_delta_dc": csv_cell(m["max_abs_delta_dc"], 12) if loss == "chunked" else "",
                        "err_fp64_loss": csv_cell(m[f"err_{loss}_loss"], 10),
                        "err_fp64_de": csv_cell(m[f"err_{loss}_de"], 12),
                        "err_fp64_dc": csv_cell(m[f"err_{loss}_dc"], 12),
                        "time_s": csv_cell(mean(times), 3) if key == "forward_backward" else "",
                        "n_repeats": len(times) if key == "forward_backward" else "",
                        "device": m.get("device_name", m["device"]), "metric_definition": DEFINITION})
                    flat[f"{subject}/{loss}_{key}_mib"] = measured / MIB
                group[f"a_memory_{key}"] = memory_verdict(
                    chunked, plain, pred_chunked / pred_plain, v,
                    f"chunked / plain loss memory ({label}) <= {v['memory_slack']:g} x the shape-predicted ratio "
                    f"(N {m['n_tokens']}, V {m['vocab']}, D {m['hidden']}, chunk {m['chunk']})")
                flat[f"{subject}/ratio_{key}"] = chunked / plain
            group["b_equivalence"] = equivalence_verdict(m, v)
            group["c_speed"] = speed_verdict(m, v)
            flat[f"{subject}/abs_delta_loss"] = m["abs_delta_loss"]
        rows += paper_shape_rows(claim_name, runs)
        write_csv(out_csv, CSV_FIELDS, [{k: row.get(k, "") for k in CSV_FIELDS} for row in rows])
        payload = {"claim": claim_name, "scale": scale, "models": sorted(verdicts), "tasks": [], "missing_tasks": {},
                   "metrics": flat, "verdicts": verdicts, "verdict_config": v, "devices": sorted(devices),
                   "subject": claim["scales"][scale].get("subject")}
        write_json(out_json, payload)
        plot(out_png, f"{claim_name} ({scale})", [r for r in rows if r["scale"] == scale])
        return payload

    def headline(self, result: dict[str, Any], claim: dict[str, Any]) -> dict[str, Any]:
        rows = [{"model": key, "reproduced": g.get("a_memory_forward", {}).get("estimate"),
                 "verdicts": headline_verdicts(g)} for key, g in result.get("verdicts", {}).items()]
        return {"quantity": "extra loss memory, chunked / plain (forward); paper (abstract, Gemma 2): 1 MB / 24 GB",
                "tasks": [], "paper_same_tasks": None, "paper_all_tasks": None, "paper_all_task_names": [],
                "rows": rows if result.get("metrics") else []}


def memory_verdict(chunked: float, plain: float, predicted: float, v: dict[str, Any], sentence: str) -> dict[str, Any]:
    """Deterministic ratio against the shape-predicted one (the notes' memory template)."""
    r = chunked / plain if plain else float("nan")
    bound, fail = v["memory_slack"] * predicted, v["memory_fail"] * predicted
    if not math.isfinite(r):
        verdict = INCONCLUSIVE
    elif r <= bound and r < 1:
        verdict = HOLDS
    elif r >= 1 or r > fail:
        verdict = FAILS
    else:
        verdict = INCONCLUSIVE
    return {"claim": sentence, "estimate": r, "se": 0.0, "lower": r, "upper": r, "threshold": bound,
            "direction": "<=", "predicted_ratio": predicted, "verdict": verdict,
            "metric_definition": DEFINITION,
            "rule": (f"r <= {v['memory_slack']:g} x r_pred and r < 1: holds; r >= 1 or r > {v['memory_fail']:g} x "
                     "r_pred: does not hold; inconclusive otherwise (deterministic bytes, no noise term)")}


def equivalence_verdict(m: dict[str, Any], v: dict[str, Any]) -> dict[str, Any]:
    """Chunked vs the float64 reference, loss and both gradients: each error within its
    tolerance or within the plain fp32 loss's own error (the baseline's rounding), whichever
    is larger. The worst error as a fraction of that allowance is the estimate: holds at <= 1."""
    tol = {"loss": v["loss_tolerance"], "de": v["grad_tolerance"] * max(1.0, m["max_abs_de"]),
           "dc": v["grad_tolerance"] * max(1.0, m["max_abs_dc"])}
    allowed = {q: max(tol[q], m[f"err_plain_{q}"]) for q in tol}
    parts = {q: m[f"err_chunked_{q}"] / allowed[q] for q in tol}
    worst = max(parts.values())
    return {"claim": f"chunked loss, dE, dC within max(fp32 plain's own error, tolerance) of float64: "
                     f"|delta loss| <= {v['loss_tolerance']:g}, max |delta grad| <= {v['grad_tolerance']:g} x "
                     "max(1, max |grad|)",
            "estimate": worst, "se": 0.0, "lower": worst, "upper": worst, "threshold": 1.0, "direction": "<=",
            "fraction_of_allowance": parts, "allowance": allowed,
            "errors_vs_fp64": {f"{n}_{q}": m[f"err_{n}_{q}"] for n in ("plain", "chunked") for q in tol},
            "chunked_vs_plain_fp32": {"loss": m["abs_delta_loss"], "de": m["max_abs_delta_de"],
                                      "dc": m["max_abs_delta_dc"]},
            "verdict": HOLDS if worst <= 1.0 else FAILS,
            "rule": "worst error / its allowance <= 1: holds; otherwise does not hold (deterministic)"}


def speed_verdict(m: dict[str, Any], v: dict[str, Any]) -> dict[str, Any]:
    plain, chunked = m["time_plain_s"], m["time_chunked_s"]
    ratios = [c / p for c, p in zip(chunked, plain, strict=True) if p > 0]
    sentence = f"chunked / plain loss time (forward + backward) <= {v['speed_ratio']:g}"
    est = mean(ratios) if ratios else float("nan")
    if m["device"] != "cuda":
        return {"claim": sentence, "estimate": est, "se": float("nan"), "lower": float("nan"),
                "upper": float("nan"), "threshold": v["speed_ratio"], "direction": "<=", "verdict": INCONCLUSIVE,
                "device": m["device"], "times_plain_s": plain, "times_chunked_s": chunked,
                "reason": f"timed on {m['device']} ({m.get('device_name', '')}): CPU timings decide no speed "
                          "claim (the paper's speed is a GPU kernel's; notes, section 6)",
                "rule": "GPU only: mean ratio over >= 3 interleaved repeats, interval mean +/- z*SE"}
    if len(ratios) < 3:
        return {"claim": sentence, "estimate": est, "se": float("nan"), "lower": float("nan"),
                "upper": float("nan"), "threshold": v["speed_ratio"], "direction": "<=", "verdict": INCONCLUSIVE,
                "reason": f"{len(ratios)} repeat(s); a speed verdict needs >= 3", "device": m["device"]}
    se = std(ratios) / math.sqrt(len(ratios))
    return {"claim": sentence, **threshold_verdict(est, se, float(v["speed_ratio"]), float(v["z"]), "<="),
            "device": m["device"], "times_plain_s": plain, "times_chunked_s": chunked}


def paper_shape_rows(claim_name: str, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same analytic prediction at CCE Table 1's shapes (fp32, the run's chunk): what a
    CPU chunked loss would hold there, beside the paper's SRAM kernel (abstract: 1 MB)."""
    from reclaim.optim._linear_ce import predicted_extra_bytes

    chunks = sorted({r["result"]["metrics"]["chunk"] for r in runs if r["result"]["spec"]["evaluator"] == EVALUATOR})
    rows = []
    s = PAPER_SHAPE
    for chunk in chunks:
        pred = predicted_extra_bytes(s["n"], s["v"], s["d"], chunk)
        for key, label in PASSES:
            for loss in ("plain", "chunked"):
                b = pred[f"{loss}_{key}"]
                rows.append({"claim": claim_name, "scale": "paper shapes (analytic)", "subject": s["model"],
                             "loss": loss, "pass": label, "predicted_mib": csv_cell(b / MIB, 1),
                             "predicted_ratio_to_plain": csv_cell(b / pred[f"plain_{key}"], 5)
                             if loss == "chunked" else "",
                             "n_tokens": s["n"], "vocab": s["v"], "hidden": s["d"], "chunk": chunk, "dtype": "float32",
                             "metric_definition": "analytic: " + DEFINITION})
    return rows


def plot(path: str | Path, title: str, rows: list[dict[str, Any]]) -> None:
    """Bars: extra MiB of the plain and the chunked loss, forward and forward + backward
    (log scale), with the shape prediction as a tick on each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    subjects = sorted({r["subject"] for r in rows})
    width = 0.8 / max(1, 2 * len(subjects))
    for j, (_, label) in enumerate(PASSES):
        for i, (subject, loss) in enumerate((s, lo) for s in subjects for lo in ("plain", "chunked")):
            hit = [r for r in rows if r["subject"] == subject and r["loss"] == loss and r["pass"] == label]
            if not hit:
                continue
            x = j + (i - (2 * len(subjects) - 1) / 2) * width
            ax.bar(x, float(hit[0]["extra_mib"]), width, color="tab:red" if loss == "plain" else "tab:blue",
                   label=f"{loss} ({subject})" if j == 0 else None)
            ax.plot([x - width / 2, x + width / 2], [float(hit[0]["predicted_mib"])] * 2, color="black", lw=2,
                    label="shape prediction" if j == 0 and i == 0 else None)
            ax.annotate(f"{float(hit[0]['extra_mib']):.1f}", (x, float(hit[0]["extra_mib"])), ha="center",
                        va="bottom", fontsize=7)
    ax.set_xticks(range(len(PASSES)), [label for _, label in PASSES])
    ax.set_yscale("log")
    ax.set_ylabel("extra MiB of the loss op (live tensors)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    save_figure(fig, path)


AGGREGATOR = CceMemory()
