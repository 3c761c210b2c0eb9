# Stage 3, memory: the peak and steady memory of one training step of a method
# (reclaim.probe), a short job of its own so quality runs keep their speed and a memory
# claim never needs a full training run. One job per (train spec, seed, probe batch).
from reclaim.probe import code_modules as probe_code


def _probe(wc):
    return plan_job("memory_probe", f"{wc.method}/{wc.pid}")


rule memory_probe:
    input:
        unpack(lambda wc: _probe(wc).inputs),
        code=lambda wc: code_stamp(probe_code(_probe(wc).spec)),
    output:
        "results/memory/{method}/{pid}/memory.json",
    params:
        spec=lambda wc: json.dumps(_probe(wc).spec, sort_keys=True),
        model=lambda wc: json.dumps(MODELS[_probe(wc).spec["train_spec"]["model"]["name"]].__dict__, sort_keys=True),
        scale=SCALE,
        tracking_uri=TRACKING_URI,
        experiment=EXPERIMENT,
    threads: lambda wc: scale_resources(wc, "threads", 1, "memory_probe", f"{wc.method}/{wc.pid}")
    resources:
        mem_mb=lambda wc: scale_resources(wc, "mem_mb", 4000, "memory_probe", f"{wc.method}/{wc.pid}"),
        runtime=lambda wc: scale_resources(wc, "runtime_min", 30, "memory_probe", f"{wc.method}/{wc.pid}"),
        gpu=lambda wc: scale_resources(wc, "gpu", 0, "memory_probe", f"{wc.method}/{wc.pid}"),
    benchmark:
        "results/benchmarks/memory_probe/{method}/{pid}.tsv"
    shell:
        "{PY} -m reclaim memory-probe --spec {params.spec:q} --model {params.model:q} --train {input.train:q}"
        " --out {output:q} --threads {threads} --scale {params.scale}"
        " --tracking-uri {params.tracking_uri:q} --experiment {params.experiment:q}"
