# Stage 1, data selection and valuation (reclaim.select). A pool is built once; a selector
# scores every pool example once (example_id, score); subsets (top, bottom, offset,
# stratified, sampled) are derived from the scores, so several budgets and keep-hard /
# keep-easy share one scoring job. Each job's path carries its composed id (reclaim.plan).


def _pool_sources(wc):
    key = f"{wc.pool}/{wc.pid}"
    if key in POOL_PROBLEMS:
        raise ValueError(f"reclaim: {POOL_PROBLEMS[key]}")
    return list(plan_job("build_pool", key).inputs.values())


rule build_pool:
    input:
        glue=_pool_sources,
        wikitext=lambda wc: [os.path.join(WIKITEXT_DIR, f"{s}.txt") for s in
                             plan_job("build_pool", f"{wc.pool}/{wc.pid}").spec["wikitext_splits"]]
                            if WIKITEXT_DIR else [],
        code=lambda wc: code_stamp(["reclaim.data.pool_run",
                                      f"reclaim.data.pools.{plan_job('build_pool', f'{wc.pool}/{wc.pid}').spec['builder']}"]),
    output:
        pool="data/pools/{pool}/{pid}/pool.jsonl",
        target="data/pools/{pool}/{pid}/target.jsonl",
        heldout="data/pools/{pool}/{pid}/heldout.jsonl",
    params:
        spec=lambda wc: json.dumps(plan_job("build_pool", f"{wc.pool}/{wc.pid}").spec, sort_keys=True),
        glue=lambda wc: " ".join(f"{ref.split(':', 1)[1]}={path}" for ref, path in
                                 plan_job("build_pool", f"{wc.pool}/{wc.pid}").inputs.items()),
        wikitext_dir=WIKITEXT_DIR,
        scale=SCALE,
        tracking_uri=TRACKING_URI,
        experiment=EXPERIMENT,
    benchmark:
        "results/benchmarks/build_pool/{pool}/{pid}.tsv"
    shell:
        "{PY} -m reclaim build-pool --spec {params.spec:q} --glue {params.glue}"
        " --wikitext-dir {params.wikitext_dir:q} --out-dir data/pools/{wildcards.pool}/{wildcards.pid}"
        " --scale {params.scale} --tracking-uri {params.tracking_uri:q} --experiment {params.experiment:q}"


def _score(wc):
    return plan_job("score", f"{wc.selector}/{wc.sid}")


def _score_code(wc):
    spec = _score(wc).spec
    framing = [f"reclaim.framings.{spec['model']['framing']}"] if "model" in spec else []
    return code_stamp(["reclaim.select._run", f"reclaim.select.{spec['selector']}", *framing])


def _score_model(wc):
    """The resolved model JSON of a needs_model selector (as the train rule passes it), else ''."""
    spec = _score(wc).spec
    return json.dumps(MODELS[spec["model"]["name"]].__dict__, sort_keys=True) if "model" in spec else ""


rule score:
    input:
        pool=lambda wc: _score(wc).inputs["pool"],
        target=lambda wc: _score(wc).inputs.get("target", []),
        code=_score_code,
    output:
        scores="results/select/scores/{selector}/{sid}/scores.tsv",
        meta="results/select/scores/{selector}/{sid}/scores.json",
    params:
        spec=lambda wc: json.dumps(_score(wc).spec, sort_keys=True),
        limit=lambda wc: _score(wc).spec["limit"] or 0,
        model=_score_model,
        scale=SCALE,
        tracking_uri=TRACKING_URI,
        experiment=EXPERIMENT,
    threads: lambda wc: scale_resources(wc, "threads", 1, "score", f"{wc.selector}/{wc.sid}")
    resources:
        mem_mb=lambda wc: scale_resources(wc, "mem_mb", 4000, "score", f"{wc.selector}/{wc.sid}"),
        runtime=lambda wc: scale_resources(wc, "runtime_min", 60, "score", f"{wc.selector}/{wc.sid}"),
    benchmark:
        "results/benchmarks/score/{selector}/{sid}.tsv"
    shell:
        "{PY} -m reclaim score --spec {params.spec:q} --pool {input.pool:q} --target={input.target:q}"
        " --limit {params.limit} --model={params.model:q} --threads {threads}"
        " --out {output.scores:q} --scale {params.scale}"
        " --tracking-uri {params.tracking_uri:q} --experiment {params.experiment:q}"


def _subset(wc):
    return plan_job("subset", f"{wc.selector}/{wc.uid}")


rule subset:
    input:
        scores=lambda wc: _subset(wc).inputs["scores"],
        pool=lambda wc: _subset(wc).inputs["pool"],
        code=code_stamp(["reclaim.select._run", "reclaim.select.subsets"]),
    output:
        subset="results/select/subsets/{selector}/{uid}/subset.tsv",
        meta="results/select/subsets/{selector}/{uid}/subset.json",
    params:
        spec=lambda wc: json.dumps(_subset(wc).spec, sort_keys=True),
        scale=SCALE,
        tracking_uri=TRACKING_URI,
        experiment=EXPERIMENT,
    shell:
        "{PY} -m reclaim subset --spec {params.spec:q} --scores {input.scores:q} --pool {input.pool:q}"
        " --out {output.subset:q} --scale {params.scale}"
        " --tracking-uri {params.tracking_uri:q} --experiment {params.experiment:q}"
