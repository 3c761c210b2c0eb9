# Every training job of every claim at the selected scale (and the prepared data they read):
# the target of the DVC `artifacts` stage, which caches results/runs and data/glue.


rule artifacts:
    input:
        [result_path(spec) for spec in JOBS.values()],
