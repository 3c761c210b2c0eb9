# Stage 1, data: GLUE splits to canonical JSONL. Data selection and valuation rules
# (DSIR, TAROT, Data Shapley, EL2N, ...) read and write this same format.


def _glue_source(wildcards):
    if not GLUE_DIR:
        return []
    from reclaim.data.glue import task_file

    return [str(task_file(GLUE_DIR, wildcards.task, wildcards.split))]


rule prepare_glue:
    input:
        source=_glue_source,
        code=code_closure(["reclaim.data.glue", "reclaim.io"]),
    output:
        "data/glue/{task}/{split}.jsonl",
    params:
        glue_dir=GLUE_DIR,
        hub_dataset=config["data"]["hub_dataset"],
    wildcard_constraints:
        split="train|dev",
    benchmark:
        "results/benchmarks/prepare_glue/{task}/{split}.tsv"
    shell:
        "{PY} -m reclaim prepare-glue --task {wildcards.task} --split {wildcards.split}"
        " --glue-dir {params.glue_dir:q} --hub-dataset {params.hub_dataset:q} --out {output:q}"
