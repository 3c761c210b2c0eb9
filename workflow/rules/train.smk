# Stage 3 for fine-tuning claims: adapter init, training (on a selection when the arm has a
# select step), evaluation on the dev split. One job per (model, task, method,
# hyperparameters, selection, seed): the hash in its path is its identity (reclaim.plan).


def _train_model(wc):
    """The weights the job starts from: the model's own, or (``init``) the model directory an
    earlier step of the arm wrote (a pretrain job)."""
    spec = job(wc)
    if "init" in spec:
        return json.dumps({"name": wc.model, "location": spec["init"]["model_dir"], "kind": "local_dir",
                           "gguf_file": None}, sort_keys=True)
    return json.dumps(MODELS[wc.model].__dict__, sort_keys=True)


rule train:
    input:
        train=lambda wc: split_path(wc.task, "train"),
        dev=lambda wc: split_path(wc.task, "dev"),
        subset=lambda wc: plan_job("train", job(wc)["job_id"]).inputs.get("subset", []),
        pretrained=lambda wc: plan_job("train", job(wc)["job_id"]).inputs.get("pretrained", []),
        code=lambda wc: code_stamp(train_modules(job(wc))),
    output:
        result="results/runs/{model}/{task}/{method}/{cfg}/seed{seed}/result.json",
    log:
        "results/runs/{model}/{task}/{method}/{cfg}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/train/{model}/{task}/{method}/{cfg}/seed{seed}.tsv"
    params:
        spec=lambda wc: json.dumps(job(wc), sort_keys=True),
        model=_train_model,
        scale=SCALE,
        tracking_uri=TRACKING_URI,
        experiment=EXPERIMENT,
        log_every=config["tracking"]["log_every"],
    wildcard_constraints:
        seed=r"\d+",
    threads: lambda wc: scale_resources(wc, "threads", 1)
    resources:
        mem_mb=lambda wc: scale_resources(wc, "mem_mb", 4000),
        runtime=lambda wc: scale_resources(wc, "runtime_min", 60),
        gpu=lambda wc: scale_resources(wc, "gpu", 0),
        # A resource, not a param: how often a job checkpoints does not change its result,
        # and Snakemake's rerun triggers (params, input, code, mtime) do not look at
        # resources, so changing the interval reruns no finished job.
        checkpoint_every=config.get("checkpoint", {}).get("every_steps", 0),
    shell:
        "{PY} -m reclaim train --spec {params.spec:q} --model {params.model:q}"
        " --train {input.train:q} --dev {input.dev:q} --out {output.result:q}"
        " --scale {params.scale} --threads {threads} --tracking-uri {params.tracking_uri:q}"
        " --experiment {params.experiment:q} --log-every {params.log_every}"
        " --checkpoint-every {resources.checkpoint_every} --subset={input.subset:q} 2>&1 | tee {log:q}"
