# Evaluation stage: a claim's table, machine-readable metrics with verdicts, and loss plot.


def _claim_results(wildcards):
    return [result_path(spec) for spec in CLAIM_JOBS[wildcards.claim]]


rule claim_table:
    input:
        results=_claim_results,
        code=lambda wc: code_closure([f"reclaim.claims.{config['claims'][wc.claim]['aggregator']}"]),
    output:
        csv="results/{claim}.csv",
        json="results/{claim}.json",
        png="results/{claim}_loss.png",
    params:
        claim=lambda wc: json.dumps(config["claims"][wc.claim], sort_keys=True),
        scale=SCALE,
        tasks=lambda wc: " ".join(CLAIM_TASKS[wc.claim]),
        missing=lambda wc: json.dumps(MISSING[wc.claim], sort_keys=True),
        tracking_uri=TRACKING_URI,
        experiment=EXPERIMENT,
    wildcard_constraints:
        claim="|".join(config["claims"]),
    benchmark:
        "results/benchmarks/claim_table/{claim}.tsv"
    shell:
        "{PY} -m reclaim aggregate --claim {wildcards.claim} --claim-config {params.claim:q}"
        " --scale {params.scale} --tasks {params.tasks} --missing {params.missing:q}"
        " --results {input.results:q} --csv {output.csv:q} --json {output.json:q} --png {output.png:q}"
        " --tracking-uri {params.tracking_uri:q} --experiment {params.experiment:q}"
