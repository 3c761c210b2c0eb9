# Stage 4, evaluation as its own rule (reclaim.evaluate): one evaluator scores every arm of a
# claim the same way, from the files its step's inputs name.
from reclaim.evaluate import code_modules as evaluator_code


def _evaluation(wc):
    return plan_job("evaluate", f"{wc.evaluator}/{wc.eid}")


rule evaluate:
    input:
        unpack(lambda wc: _evaluation(wc).inputs),
        code=lambda wc: code_closure(evaluator_code(_evaluation(wc).spec)),
    output:
        "results/evaluate/{evaluator}/{eid}/metrics.json",
    params:
        spec=lambda wc: json.dumps(_evaluation(wc).spec, sort_keys=True),
        inputs=lambda wc: " ".join(f"{k}={v}" for k, v in sorted(_evaluation(wc).inputs.items())),
        scale=SCALE,
        tracking_uri=TRACKING_URI,
        experiment=EXPERIMENT,
    shell:
        "{PY} -m reclaim evaluate --spec {params.spec:q} --input {params.inputs} --out {output:q}"
        " --scale {params.scale} --tracking-uri {params.tracking_uri:q} --experiment {params.experiment:q}"
