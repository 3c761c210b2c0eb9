# Stage 3, continued pretraining (reclaim.pretrain): a model keeps training with its
# pretraining objective on pool text (the selection, after a select step); the model
# directory it writes is what the arm's later train step fine-tunes.
from reclaim.pretrain import code_modules as pretrain_code


def _pretrain(wc):
    return plan_job("pretrain", wc.pid)


rule pretrain:
    input:
        unpack(lambda wc: _pretrain(wc).inputs),
        code=lambda wc: code_stamp(pretrain_code(_pretrain(wc).spec)),
    output:
        record="results/pretrain/{pid}/pretrain.json",
        model=directory("results/pretrain/{pid}/model"),
    params:
        spec=lambda wc: json.dumps(_pretrain(wc).spec, sort_keys=True),
        model=lambda wc: json.dumps(MODELS[_pretrain(wc).spec["model_name"]].__dict__, sort_keys=True),
        subset=lambda wc: _pretrain(wc).inputs.get("subset", ""),
        heldout=lambda wc: _pretrain(wc).inputs.get("heldout", ""),
        scale=SCALE,
        tracking_uri=TRACKING_URI,
        experiment=EXPERIMENT,
        log_every=config["tracking"]["log_every"],
    threads: lambda wc: scale_resources(wc, "threads", 1, "pretrain", wc.pid)
    resources:
        mem_mb=lambda wc: scale_resources(wc, "mem_mb", 4000, "pretrain", wc.pid),
        runtime=lambda wc: scale_resources(wc, "runtime_min", 60, "pretrain", wc.pid),
        gpu=lambda wc: scale_resources(wc, "gpu", 0, "pretrain", wc.pid),
    benchmark:
        "results/benchmarks/pretrain/{pid}.tsv"
    shell:
        "{PY} -m reclaim pretrain --spec {params.spec:q} --model {params.model:q} --pool {input.pool:q}"
        " --subset={params.subset:q} --heldout={params.heldout:q} --out {output.record:q}"
        " --threads {threads} --scale {params.scale} --tracking-uri {params.tracking_uri:q}"
        " --experiment {params.experiment:q} --log-every {params.log_every}"
