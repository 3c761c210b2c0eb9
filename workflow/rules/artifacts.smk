# Every job of every claim at the selected scale (training results, pools, scores, subsets,
# evaluations, and the prepared data they read): the target of the DVC `artifacts` stage,
# which caches data/glue, data/images, data/pools, results/select, results/runs, results/pretrain, results/compress, results/memory, data/wikitext and results/evaluate.


rule artifacts:
    input:
        [job.output for rule_jobs in PLAN.jobs.values() for job in rule_jobs.values()],
