"""The ``evaluate`` rule's command: run one evaluator on the files its step names."""

from __future__ import annotations

import argparse
import json

from reclaim.io import write_json
from reclaim.machine import cpu_name
from reclaim.stage_tracking import tracked


def evaluate(a: argparse.Namespace) -> int:
    from reclaim import evaluate as evaluators

    spec = json.loads(a.spec)
    ev = evaluators.get(spec["evaluator"])
    params = ev.make_params(spec["params"])
    inputs = dict(item.split("=", 1) for item in a.input)
    with tracked(a, "evaluate", f"{spec['evaluator']}", spec) as m:
        seed = {"seed": spec["seed"]} if "seed" in spec else {}  # seeded evaluators only
        if getattr(ev, "needs_model", False):  # embeds with the arm's model, as the score rule passes it
            from reclaim.select._run import _model_context

            seed["model"] = _model_context(a, spec)
        metrics = ev.evaluate(inputs, params, **seed)
        m.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        write_json(a.out, {"spec": spec, "metrics": metrics, "device_name": cpu_name()})
    flat = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    print(f"evaluate {spec['evaluator']}: {flat} -> {a.out}")
    return 0
