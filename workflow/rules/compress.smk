# Stage 2, compression (reclaim.compress): quantize, prune or compensate a model (packaged, or
# the model directory an earlier step wrote). The compressed model directory and its record
# (compress.json, written last) are what the evaluate rule scores.
from reclaim.compress import code_modules as compress_code


def _compress(wc):
    return plan_job("compress", f"{wc.method}/{wc.cid}")


def _compress_base_dir(wc):
    """The model directory of the step before (a compress/pretrain step's model/, a train
    step's adapter/), or '' when the step compresses the packaged model."""
    return _compress(wc).spec["base_dir"]


rule compress:
    input:
        unpack(lambda wc: _compress(wc).inputs),
        code=lambda wc: code_stamp(compress_code(_compress(wc).spec)),
    output:
        record="results/compress/{method}/{cid}/compress.json",
        model=directory("results/compress/{method}/{cid}/model"),
    params:
        spec=lambda wc: json.dumps(_compress(wc).spec, sort_keys=True),
        model=lambda wc: json.dumps(MODELS[_compress(wc).spec["model_name"]].__dict__, sort_keys=True),
        model_dir=_compress_base_dir,
        calibration=lambda wc: _compress(wc).inputs.get("calibration", ""),
        scale=SCALE,
        tracking_uri=TRACKING_URI,
        experiment=EXPERIMENT,
    threads: lambda wc: scale_resources(wc, "threads", 1, "compress", f"{wc.method}/{wc.cid}")
    resources:
        mem_mb=lambda wc: scale_resources(wc, "mem_mb", 4000, "compress", f"{wc.method}/{wc.cid}"),
        runtime=lambda wc: scale_resources(wc, "runtime_min", 60, "compress", f"{wc.method}/{wc.cid}"),
        gpu=lambda wc: scale_resources(wc, "gpu", 0, "compress", f"{wc.method}/{wc.cid}"),
    benchmark:
        "results/benchmarks/compress/{method}/{cid}.tsv"
    shell:
        "{PY} -m reclaim compress --spec {params.spec:q} --model {params.model:q} --model-dir={params.model_dir:q}"
        " --calibration={params.calibration:q} --out {output.record:q} --threads {threads}"
        " --scale {params.scale} --tracking-uri {params.tracking_uri:q} --experiment {params.experiment:q}"
