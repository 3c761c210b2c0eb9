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
        code=code_stamp(["reclaim.data.glue", "reclaim.io"]),
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


# Image tasks (reclaim.data.images): Fashion-MNIST IDX files or CIFAR-10 python batches from a
# local directory (data.<task>_dir, env FASHION_MNIST_DIR / CIFAR10_DIR, or Debian's
# dataset-fashion-mnist), else the Hub, to one canonical .npz per split. The dev split is the
# task's test split.


def _image_dir(task):
    from reclaim.data.images import source_dir

    return source_dir(config, task) or ""


def _image_source(wildcards):
    from reclaim.data.images import MissingImageData, local_files

    directory = _image_dir(wildcards.task)
    if not directory:
        return []
    try:
        return [str(p) for p in local_files(wildcards.task, directory, wildcards.split)]
    except MissingImageData as exc:
        raise ValueError(f"reclaim: {exc}") from None


rule prepare_images:
    input:
        source=_image_source,
        code=code_stamp(["reclaim.data.images", "reclaim.io"]),
    output:
        "data/images/{task}/{split}.npz",
    params:
        source_dir=lambda wc: _image_dir(wc.task),
    wildcard_constraints:
        split="train|dev",
        task="fashion_mnist|cifar10",
    benchmark:
        "results/benchmarks/prepare_images/{task}/{split}.tsv"
    shell:
        "{PY} -m reclaim prepare-images --task {wildcards.task} --split {wildcards.split}"
        " --source-dir {params.source_dir:q} --out {output:q}"


# WikiText-2 raw (reclaim.data.lm_text): one split as the classic {split}.txt rows, from
# data.wikitext_dir / WIKITEXT_DIR, else the Hub. The perplexity evaluator reads test, the
# compress rule's calibration valid.
rule prepare_wikitext:
    input:
        source=lambda wc: [os.path.join(WIKITEXT_DIR, f"{wc.split}.txt")] if WIKITEXT_DIR else [],
        code=code_stamp(["reclaim.data.lm_text", "reclaim.io"]),
    output:
        "data/wikitext/{split}.txt",
    params:
        wikitext_dir=WIKITEXT_DIR,
    wildcard_constraints:
        split="test|valid|train",
    shell:
        "{PY} -m reclaim prepare-wikitext --split {wildcards.split} --wikitext-dir {params.wikitext_dir:q}"
        " --out {output:q}"
