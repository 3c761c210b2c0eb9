# Stage 4, evaluation as its own rule (reclaim.evaluate): one evaluator scores every arm of a
# claim the same way, from the files its step's inputs name.
from reclaim.evaluate import code_modules as evaluator_code


def _evaluation(wc):
    return plan_job("evaluate", f"{wc.evaluator}/{wc.eid}")


def _evaluation_model(wc):
    """The resolved model JSON of a needs_model evaluator (as the score rule passes it), else ''."""
    spec = _evaluation(wc).spec
    return json.dumps(MODELS[spec["model"]["name"]].__dict__, sort_keys=True) if "model" in spec else ""


rule evaluate:
    input:
        unpack(lambda wc: _evaluation(wc).inputs),
        code=lambda wc: code_stamp(evaluator_code(_evaluation(wc).spec)),
    output:
        "results/evaluate/{evaluator}/{eid}/metrics.json",
    params:
        spec=lambda wc: json.dumps(_evaluation(wc).spec, sort_keys=True),
        inputs=lambda wc: " ".join(f"{k}={v}" for k, v in sorted(_evaluation(wc).inputs.items())),
        model=_evaluation_model,
        scale=SCALE,
        tracking_uri=TRACKING_URI,
        experiment=EXPERIMENT,
    threads: lambda wc: scale_resources(wc, "threads", 1, "evaluate", f"{wc.evaluator}/{wc.eid}")
    shell:
        "{PY} -m reclaim evaluate --spec {params.spec:q} --input {params.inputs} --out {output:q}"
        " --model={params.model:q} --threads {threads}"
        " --scale {params.scale} --tracking-uri {params.tracking_uri:q} --experiment {params.experiment:q}"
