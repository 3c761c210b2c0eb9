# Evaluation stage: a claim's table, machine-readable metrics with verdicts, and loss plot.


def _claim_results(wildcards):
    """The output that ends each arm's chain (a train result, an evaluation), in plan order."""
    return list(dict.fromkeys(run.terminal.output for run in PLAN.runs[wildcards.claim]))


def _claim_runs(wildcards):
    return json.dumps([{"arm": r.arm, "seed": r.seed, "model": r.model, "task": r.task,
                        "path": r.terminal.output} for r in PLAN.runs[wildcards.claim]])


rule claim_table:
    input:
        results=_claim_results,
        code=lambda wc: code_stamp([f"reclaim.claims.{config['claims'][wc.claim]['aggregator']}"]),
    output:
        csv=report("results/{claim}.csv", caption="../report/claim_table.rst", category="{claim}",
                   subcategory="table", labels={"file": "table (CSV)"}),
        json=report("results/{claim}.json", caption="../report/claim_json.rst", category="{claim}",
                    subcategory="metrics and verdicts", labels={"file": "metrics, verdicts (JSON)"}),
        png=report("results/{claim}_loss.png", caption="../report/claim_loss.rst", category="{claim}",
                   subcategory="plots", labels={"file": "loss curves"}),
    params:
        claim=lambda wc: json.dumps(config["claims"][wc.claim], sort_keys=True),
        scale=SCALE,
        tasks=lambda wc: " ".join(CLAIM_TASKS[wc.claim]),
        missing=lambda wc: json.dumps(MISSING[wc.claim], sort_keys=True),
        runs=_claim_runs,
        tracking_uri=TRACKING_URI,
        experiment=EXPERIMENT,
    wildcard_constraints:
        claim="|".join(config["claims"]),
    benchmark:
        "results/benchmarks/claim_table/{claim}.tsv"
    shell:
        "{PY} -m reclaim aggregate --claim {wildcards.claim} --claim-config {params.claim:q}"
        " --scale {params.scale} --tasks {params.tasks} --missing {params.missing:q}"
        " --results {input.results:q} --runs {params.runs:q} --csv {output.csv:q} --json {output.json:q} --png {output.png:q}"
        " --tracking-uri {params.tracking_uri:q} --experiment {params.experiment:q}"


# Reports: the claim table as HTML (the report viewer shows HTML and images, CSV only as a
# download), and results/claims.md, every claim in one table (`rule all` builds both).


rule claim_table_html:
    input:
        csv="results/{claim}.csv",
        code=code_stamp(["reclaim.reports"]),
    output:
        report("results/report/{claim}_table.html", caption="../report/claim_table_html.rst",
               category="{claim}", subcategory="table", labels={"file": "table (HTML)"}),
    params:
        title=lambda wc: f"{wc.claim}: {config['claims'][wc.claim]['title']}",
    wildcard_constraints:
        claim="|".join(config["claims"]),
    shell:
        "{PY} -m reclaim table-html --csv {input.csv:q} --title {params.title:q} --out {output:q}"


rule claims_summary:
    input:
        results=[f"results/{claim}.json" for claim in config["claims"]],
        code=code_stamp(["reclaim.reports"]
                          + sorted({f"reclaim.claims.{c['aggregator']}" for c in config["claims"].values()})),
    output:
        md=report("results/claims.md", caption="../report/claims_summary.rst", category="Summary",
                  labels={"file": "claims.md"}),
        html=report("results/report/claims.html", caption="../report/claims_summary.rst",
                    category="Summary", labels={"file": "claims (HTML)"}),
    params:
        claims=json.dumps(config["claims"], sort_keys=True),
    shell:
        "{PY} -m reclaim claims-md --claims {params.claims:q} --results {input.results:q}"
        " --out {output.md:q} --html {output.html:q}"
