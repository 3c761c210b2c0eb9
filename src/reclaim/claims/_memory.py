"""What the memory-efficient-training claims share: reading probe and quality runs, the
memory and quality verdict rules, the analytic paper-scale accounting and the plot.

Memory rules compare ratios measured in one environment (same torch, dtype, batch, attention
implementation), never bytes across machines; the probe is deterministic, so a memory
verdict has no noise term and is decided by its threshold alone. Quality rules follow the
notes' template: delta = method - baseline (points), holds if delta >= -max(tolerance, z*SE),
does not hold if delta < -tolerance with the interval excluding 0, inconclusive otherwise;
one seed gives no noise estimate, so it decides only a gap larger than 3 x tolerance.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reclaim.verdicts import FAILS, HOLDS, INCONCLUSIVE, mean, std, threshold_verdict

MIB = 2**20


@dataclass
class Runs:
    """A claim's runs split by kind: ``probes[(model, task)][method]`` is a memory record,
    ``quality[(model, task)][method][seed]`` a train result."""

    probes: dict[tuple[str, str], dict[str, dict[str, Any]]]
    quality: dict[tuple[str, str], dict[str, dict[int, dict[str, Any]]]]


def split_runs(runs: list[dict[str, Any]]) -> Runs:
    probes: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    quality: dict[tuple[str, str], dict[str, dict[int, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for r in runs:
        res = r["result"]
        if "peak_bytes" in res:
            probes[(r["model"], r["task"])][res["spec"]["train_spec"]["method"]["name"]] = res
        else:
            quality[(r["model"], r["task"])][res["spec"]["method"]["name"]][r["seed"]] = res
    return Runs(dict(probes), {k: dict(v) for k, v in quality.items()})


def main_metric(res: dict[str, Any]) -> tuple[str, float]:
    name = next(iter(res["metrics"]))
    return name, float(res["metrics"][name])


def memory_row(res: dict[str, Any]) -> dict[str, Any]:
    """The probe's numbers in MiB, with what they mean."""
    other = res["peak_bytes"] - res["param_bytes"] - res["buffer_bytes"] - res["grad_bytes"] \
        - res["opt_state_bytes"] - res["extra_state_bytes"] - res["batch_bytes"]
    b = res["batch"]
    return {"peak_mib": res["peak_bytes"] / MIB, "steady_mib": res["steady_bytes"] / MIB,
            "params_mib": (res["param_bytes"] + res["buffer_bytes"]) / MIB, "grads_mib": res["grad_bytes"] / MIB,
            "opt_state_mib": (res["opt_state_bytes"] + res["extra_state_bytes"]) / MIB,
            "activations_mib": other / MIB, "inference_mib": res["inference_peak_bytes"] / MIB,
            "trainable_params": res["trainable_params"], "total_params": res["total_params"],
            "dtype": res["dtype"] if isinstance(res["dtype"], str) else "+".join(res["dtype"]),
            "batch": f"{b['batch_size']}x{b['max_length']}", "torch": res["torch"],
            "attn": res.get("attn_implementation") or "", "device": res.get("device_name", "")}


def ratio_verdict(numerator: float, denominator: float, threshold: float, sentence: str,
                  definition: str) -> dict[str, Any]:
    """A deterministic memory ratio against its threshold (``<=``): no noise term."""
    ratio = numerator / denominator if denominator else float("nan")
    out = threshold_verdict(ratio, 0.0, threshold, 1.0, "<=")
    return {"claim": sentence, "metric_definition": definition, **out}


def quality_verdict(method: dict[int, dict[str, Any]], base: dict[int, dict[str, Any]], tolerance: float,
                    z: float, sentence: str) -> dict[str, Any]:
    """delta = method - baseline on the main dev metric (points), over the seeds both ran.

    Two or more seeds: holds if delta >= -max(tolerance, z*SE) (SE over seeds), does not hold
    if delta < -tolerance and the interval excludes 0, inconclusive otherwise. One seed has no
    noise estimate: inconclusive unless |delta| > 3 * tolerance."""
    seeds = sorted(set(method) & set(base))
    deltas = [main_metric(method[s])[1] - main_metric(base[s])[1] for s in seeds]
    est = mean(deltas)
    se = std(deltas) / math.sqrt(len(seeds)) if len(seeds) >= 2 else float("nan")
    out: dict[str, Any] = {"claim": sentence, "estimate": est, "se": se, "z": z, "threshold": -tolerance,
                           "direction": ">=", "seeds": seeds, "deltas": deltas}
    if len(seeds) >= 2:
        out["rule"] = (f"delta >= -max({tolerance:g}, {z:g}*se): holds; delta < -{tolerance:g} with "
                       f"delta + {z:g}*se < 0: does not hold; inconclusive otherwise (se over seeds)")
        out.update(lower=est - z * se, upper=est + z * se)
        if est >= -max(tolerance, z * se):
            out["verdict"] = HOLDS
        elif est < -tolerance and est + z * se < 0:
            out["verdict"] = FAILS
        else:
            out["verdict"] = INCONCLUSIVE
        return out
    out["rule"] = f"one seed, no noise estimate: holds if delta > {3 * tolerance:g}, does not hold if " \
                  f"delta < -{3 * tolerance:g}, inconclusive otherwise"
    out.update(lower=float("nan"), upper=float("nan"))
    if not seeds or not math.isfinite(est):
        out["verdict"] = INCONCLUSIVE
    else:
        out["verdict"] = HOLDS if est > 3 * tolerance else FAILS if est < -3 * tolerance else INCONCLUSIVE
    return out


# --- analytic accounting at the paper's scale ----------------------------------------------

@dataclass(frozen=True)
class DecoderShape:
    """A decoder-only transformer's shape, for counting bytes without building it."""

    name: str
    vocab: int
    hidden: int
    layers: int
    intermediate: int
    kv_hidden: int          # width of k_proj/v_proj outputs (hidden for MHA)
    tied: bool = False

    def block_params(self) -> int:
        h = self.hidden
        return 2 * h * h + 2 * h * self.kv_hidden + 3 * h * self.intermediate + 2 * h

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each block projection, Llama names."""
        h, kv, f = self.hidden, self.kv_hidden, self.intermediate
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h)}

    def lora_params(self, r: int, targets: str | list[str] | tuple[str, ...]) -> int:
        """Rank-r LoRA factors r * (in + out) per targeted projection, over all blocks."""
        lin = self.linears()
        names = list(lin) if targets == "all-linear" else [targets] if isinstance(targets, str) else list(targets)
        unknown = [n for n in names if n not in lin]
        if unknown:
            raise ValueError(f"LoRA target {unknown[0]!r} is not a projection of {self.name}")
        return self.layers * sum(r * sum(lin[n]) for n in names)

    def total_params(self) -> int:
        emb = self.vocab * self.hidden
        return emb * (1 if self.tied else 2) + self.layers * self.block_params() + self.hidden


# LLaMA-2-7B (Touvron et al., arXiv 2307.09288; the released config.json)
LLAMA2_7B = DecoderShape("LLaMA-2-7B", vocab=32000, hidden=4096, layers=32, intermediate=11008, kv_hidden=4096)


def state_bytes(total: int, trainable: int, weight_bytes: int = 2, grad_bytes: int = 2, state_bytes_: int = 8) -> int:
    """Weights (bf16) + gradients of the trainable ones (bf16) + AdamW's two fp32 moments."""
    return total * weight_bytes + trainable * (grad_bytes + state_bytes_)


def plot_memory(path: str | Path, title: str, mem_rows: list[dict[str, Any]], quality: dict[str, float]) -> None:
    """Left: peak memory by component per method; right: quality vs peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reclaim.claims._common import save_figure

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = [f"{r['method']}\n{r['model']}/{r['task']}" if len({(x['model'], x['task']) for x in mem_rows}) > 1
              else r["method"] for r in mem_rows]
    bottom = [0.0] * len(mem_rows)
    for comp, name in (("params_mib", "weights"), ("grads_mib", "gradients"), ("opt_state_mib", "optimizer state"),
                       ("activations_mib", "activations + temporaries")):
        vals = [float(r[comp]) for r in mem_rows]
        ax.bar(range(len(mem_rows)), vals, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xticks(range(len(mem_rows)), labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("MiB at the step's peak (live tensors)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    for r in mem_rows:
        if r["method"] in quality:
            bx.scatter(float(r["peak_mib"]), quality[r["method"]])
            bx.annotate(r["method"], (float(r["peak_mib"]), quality[r["method"]]), fontsize=7)
    bx.set_xlabel("peak MiB (probe)")
    bx.set_ylabel("dev metric, mean over tasks and seeds")
    bx.set_title("quality vs memory", fontsize=9)
    save_figure(fig, path)


# --- shared by the gradient-projection claim (galore_memory) --------------------------------

def template_ratio_verdict(ratio: float, paper_ratio: float, sentence: str, definition: str,
                           holds_factor: float = 1.10, fails_factor: float = 1.25) -> dict[str, Any]:
    """The notes' memory template (section 6) for a deterministic ratio r against the paper's
    r_paper: holds if r <= r_paper x ``holds_factor`` and r < 1; does not hold if r >= 1 or
    r > r_paper x ``fails_factor``; inconclusive in between."""
    hi, lo = paper_ratio * holds_factor, paper_ratio * fails_factor
    out: dict[str, Any] = {"claim": sentence, "metric_definition": definition, "estimate": ratio, "se": 0.0,
                           "lower": ratio, "upper": ratio, "z": 0.0, "threshold": hi, "paper_ratio": paper_ratio, "direction": "<=",
                           "rule": f"holds if ratio <= {paper_ratio:g} x {holds_factor:g} = {hi:.4g} and < 1; "
                                   f"does not hold if ratio >= 1 or > {paper_ratio:g} x {fails_factor:g} = {lo:.4g}; "
                                   "inconclusive otherwise"}
    if not math.isfinite(ratio):
        out["verdict"] = INCONCLUSIVE
    elif ratio <= hi and ratio < 1:
        out["verdict"] = HOLDS
    elif ratio >= 1 or ratio > lo:
        out["verdict"] = FAILS
    else:
        out["verdict"] = INCONCLUSIVE
    return out


def state_bytes_measured(res: dict[str, Any]) -> int:
    """All-trainable accounting: every tensor of the optimizer state plus what the method
    keeps outside it (projectors), as the probe measured them."""
    return int(res["opt_state_bytes"]) + int(res["extra_state_bytes"])


def adamw_paper_accounting(res: dict[str, Any]) -> dict[str, Any]:
    """The paper-style estimate for plain AdamW (GaLore Tables 2/4's full-rank rows): bf16
    weights + two bf16 moments per trainable parameter."""
    return {"definition": "bf16 weights + two bf16 AdamW moments per trainable parameter", "dtype": "bfloat16",
            "weight_bytes": 2 * int(res["total_params"]), "state_bytes": 4 * int(res["trainable_params"]),
            "total_bytes": 2 * int(res["total_params"]) + 4 * int(res["trainable_params"])}


def task_average(per_task: list[dict[int, dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    """{seed: pseudo-result whose main metric is the mean over tasks} for seeds every task ran."""
    seeds = set.intersection(*(set(d) for d in per_task))
    return {s: {"metrics": {"mean": mean([main_metric(d[s])[1] for d in per_task])}} for s in sorted(seeds)}


def quality_rows(claim_name: str, scale: str, data: Runs, flat: dict[str, float],
                 extra: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """One table row per (model, task, method) train result, seeds averaged: the dev main
    metric, seeds, parameter counts, device; adds ``model/task/method/metric`` to ``flat``.
    Returns (rows, mean over tasks of each method's metric) for the quality-vs-memory plot."""
    rows: list[dict[str, Any]] = []
    per_method: dict[str, list[float]] = {}
    for (model, task), by_method in sorted(data.quality.items()):
        for method, seeds in by_method.items():
            vals = [main_metric(r)[1] for r in seeds.values()]
            first = next(iter(seeds.values()))
            name = main_metric(first)[0]
            rows.append({"claim": claim_name, "scale": scale, "model": model, "task": task, "method": method,
                         "optimizer": first.get("optimizer", {}).get("name", "adamw"), "metric": f"dev {name}",
                         "value": _cell(mean(vals), 2), "n_seeds": len(vals),
                         "seeds": " ".join(map(str, sorted(seeds))), "trainable_params": first["trainable_params"],
                         "total_params": first["total_params"], "steps": first.get("steps"),
                         "metric_definition": "dev metric after training", "device": first.get("device_name", ""),
                         **(extra or {})})
            flat[f"{model}/{task}/{method}/{name}"] = mean(vals)
            per_method.setdefault(method, []).append(mean(vals))
    return rows, {m: mean(v) for m, v in per_method.items()}


def _cell(v: float, digits: int) -> Any:
    from reclaim.claims._common import csv_cell

    return csv_cell(v, digits)
