"""The ``score`` and ``subset`` rules' commands: read the pool, run one selector, write the
scores (or derive a subset from them) atomically, and record the job in MLflow."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reclaim.data.tasks import read_rows
from reclaim.io import read_jsonl, write_json, write_text
from reclaim.stage_tracking import tracked


def score(a: argparse.Namespace) -> int:
    from reclaim import select
    from reclaim.data.selection import subsample
    from reclaim.select._base import canonical, write_scores

    spec = json.loads(a.spec)
    sel = select.get(spec["selector"])
    params = sel.make_params(spec["params"])
    seed = spec["seed"] if spec["seed"] is not None else 0
    with tracked(a, "score", f"{spec['name']}/{spec['data']}", spec) as m:
        pool = read_rows(a.pool)
        if a.limit:
            pool = subsample(pool, a.limit, 0)  # the same subsample the training job reads
        pool = canonical(pool, a.pool)
        target = read_jsonl(a.target) if a.target else None
        if sel.needs_target and not target:
            raise ValueError(f"selector {spec['selector']} needs a target sample; the pool has none")
        extra = {"model": _model_context(a, spec)} if sel.needs_model else {}
        t0 = time.perf_counter()
        scores = sel.score(pool, target, params, seed, **extra)
        m.update(time_score_s=time.perf_counter() - t0, n_pool=len(pool))
        meta = {"selector": spec["selector"], "name": spec["name"], "params": spec["params"],
                "orientation": sel.orientation, "seed": spec["seed"], "n": len(pool), "data": spec["data"],
                "timings": {"score_s": m["time_score_s"]},
                **({"model": spec["model"], "task": spec["task"]} if sel.needs_model else {})}
        write_scores(a.out, [r["example_id"] for r in pool], scores, meta)
    print(f"score {spec['name']}: {len(pool)} examples in {m['time_score_s']:.1f}s -> {a.out}")
    return 0


def _model_context(a: argparse.Namespace, spec: dict):  # -> reclaim.select._base.ModelContext
    from reclaim.models import ResolvedModel
    from reclaim.select._base import ModelContext

    if not getattr(a, "model", "") or "model" not in spec:
        raise ValueError(f"selector {spec['selector']} scores with a model, but the job got none "
                         "(--model and the spec's model identity)")
    return ModelContext(spec["model"], ResolvedModel(**json.loads(a.model)), spec["task"],
                        getattr(a, "threads", None))


def subset(a: argparse.Namespace) -> int:
    from reclaim.select import subsets
    from reclaim.select._base import read_table

    spec = json.loads(a.spec)
    p = subsets.SubsetParams(**spec["subset"])
    with tracked(a, "subset", f"{spec['name']}/{spec['scores']}", spec) as m:
        scores = read_table(a.scores, "score")
        ids = sorted(scores)
        strata = None
        if p.kind == "stratified":
            rows = {r["example_id"]: r for r in read_rows(a.pool)}
            strata = [rows[e].get(p.stratify_by) for e in ids]
        kept = subsets.select(ids, [scores[e] for e in ids], p, spec["seed"] or 0, strata)
        m.update(n_pool=len(ids), n_selected=len(kept))
        write_json(Path(a.out).with_suffix(".json"), {**spec, "n_pool": len(ids), "n_selected": len(kept)})
        write_text(a.out, "example_id\tweight\n" + "".join(f"{e}\t1.0\n" for e in kept))
    print(f"subset {spec['name']} {p.kind} {p.budget}: {len(kept)} of {len(ids)} -> {a.out}")
    return 0


