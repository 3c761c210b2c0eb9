"""Every method trains through the real job entry point on tiny models of each framing."""

from __future__ import annotations

import json
import math

import pytest

from reclaim import adapters
from reclaim.config import load_yaml
from reclaim.io import write_jsonl
from reclaim.jobs import make_spec
from reclaim.models import resolve
from reclaim.testing import distinct_methods
from reclaim.train import run_job

PARAMS = load_yaml(__import__("reclaim.config", fromlist=["REPO_ROOT"]).REPO_ROOT / "params.yaml")


def _cfg(tiny_models, kind: str, framing: str) -> dict:
    cfg = json.loads(json.dumps(PARAMS))
    cfg["models"] = {f"tiny-{kind}": {"framing": framing, "local_dir": str(tiny_models[kind])}}
    scale = cfg["claims"]["lora_ga_glue"]["scales"]["smoke"]
    scale.update(models=[f"tiny-{kind}"], max_train_examples=24, max_eval_examples=12)
    scale["train"] = {"batch_size": 8, "lr": 1e-3, "max_length": 48}
    for m in cfg["methods"].values():
        m.pop("train", None)  # the test's schedule, not a method's own (ZO's longer runs)
        if "r" in m.get("params", {}):
            m["params"]["r"] = 4
    cfg["methods"]["adalora"]["params"].update(init_r=6, target_r=4)
    return cfg


@pytest.fixture(scope="module")
def glue_jsonl(glue_fixture, tmp_path_factory):
    from reclaim.data.glue import read_classic

    out = tmp_path_factory.mktemp("jsonl")
    for split in ("train", "dev"):
        write_jsonl(out / f"{split}.jsonl", read_classic(glue_fixture, "sst2", split))
    return out


def _run(cfg, model, method, glue_jsonl, tmp_path, seed=0):  # type: ignore[no-untyped-def]
    spec = make_spec(cfg, "lora_ga_glue", model, "sst2", method, seed)
    loc = resolve(model, cfg["models"][model])
    return run_job(spec, glue_jsonl / "train.jsonl", glue_jsonl / "dev.jsonl",
                   tmp_path / spec["job_id"] / "result.json", loc, progress=False)


@pytest.mark.parametrize("method", distinct_methods(PARAMS["methods"]))
def test_every_method_trains_tiny_bert(method, tiny_models, glue_jsonl, tmp_path) -> None:
    cfg = _cfg(tiny_models, "bert", "encoder_cls")
    r = _run(cfg, "tiny-bert", method, glue_jsonl, tmp_path)
    assert r["steps"] == 3 and len(r["losses"]) == 3
    assert 0 <= r["metrics"]["accuracy"] <= 100 and r["n_eval"] == 12
    if PARAMS["methods"][method]["adapter"] == "full_ft":  # full_ft_saved also writes the whole model
        assert r["trainable_params"] == r["total_params"]
        assert bool(r["adapter_files"]) == bool((PARAMS["methods"][method].get("params") or {}).get("save_model"))
    else:
        assert r["trainable_params"] < r["total_params"]
        assert "adapter_config.json" in r["adapter_files"]
    assert (tmp_path / r["job_id"] / "result.json").is_file()


@pytest.mark.parametrize("kind,framing", [("gpt2", "causal_lm"), ("t5", "seq2seq"), ("llama", "causal_lm")])
@pytest.mark.parametrize("method", ["lora", "lora_ga"])
def test_text_to_text_framings(kind, framing, method, tiny_models, glue_jsonl, tmp_path) -> None:
    cfg = _cfg(tiny_models, kind, framing)
    r = _run(cfg, f"tiny-{kind}", method, glue_jsonl, tmp_path)
    assert r["steps"] == 3 and all(v == v for v in r["losses"])
    assert set(r["metrics"]) == {"accuracy"}


def test_same_seed_same_numbers(tiny_models, glue_jsonl, tmp_path) -> None:
    cfg = _cfg(tiny_models, "bert", "encoder_cls")
    a = _run(cfg, "tiny-bert", "lora_ga", glue_jsonl, tmp_path / "a")
    b = _run(cfg, "tiny-bert", "lora_ga", glue_jsonl, tmp_path / "b")
    c = _run(cfg, "tiny-bert", "lora_ga", glue_jsonl, tmp_path / "c", seed=1)
    assert a["losses"] == b["losses"] and a["metrics"] == b["metrics"]
    assert a["losses"] != c["losses"]


def test_loraplus_gives_b_a_larger_learning_rate(tiny_models) -> None:
    from reclaim.adapters._base import AdapterContext
    from reclaim.data.glue import get_task
    from reclaim.framings import get

    cfg = _cfg(tiny_models, "bert", "encoder_cls")
    model, _ = get("encoder_cls").load(resolve("tiny-bert", cfg["models"]["tiny-bert"]), get_task("sst2"))
    ad = adapters.get("loraplus")
    p = ad.make_params({"r": 4, "lr_ratio": 16})
    ctx = AdapterContext(loss_fn=None, train_batches=None, total_steps=4, head_modules=["classifier"], seed=0)
    model = ad.apply(model, p, ctx)
    opt = ad.optimizer(model, p, lr=1e-3, weight_decay=0.0)
    names = {id(prm): n for n, prm in model.named_parameters()}
    lrs = {}
    for group in opt.param_groups:
        for prm in group["params"]:
            kind = "B" if "lora_B" in names[id(prm)] else "A" if "lora_A" in names[id(prm)] else "other"
            lrs.setdefault(kind, set()).add(group["lr"])
    assert lrs["A"] == {1e-3} and lrs["B"] == {16e-3}


# --- STS-B: regression through the encoder framing --------------------------------------------


@pytest.fixture(scope="module")
def stsb_jsonl(tmp_path_factory):
    from reclaim.data.glue import read_classic
    from reclaim.testing import write_glue_fixture

    glue = write_glue_fixture(tmp_path_factory.mktemp("stsb_glue"), tasks=("stsb",))
    out = tmp_path_factory.mktemp("stsb_jsonl")
    for split in ("train", "dev"):
        write_jsonl(out / f"{split}.jsonl", read_classic(glue, "stsb", split))
    return out


@pytest.mark.parametrize("method", ["full_ft", "lora", "lora_ga"])
def test_stsb_regression_trains_end_to_end(method, tiny_models, stsb_jsonl, tmp_path) -> None:
    cfg = _cfg(tiny_models, "bert", "encoder_cls")
    spec = make_spec(cfg, "lora_ga_glue", "tiny-bert", "stsb", method, 0)
    loc = resolve("tiny-bert", cfg["models"]["tiny-bert"])
    r = run_job(spec, stsb_jsonl / "train.jsonl", stsb_jsonl / "dev.jsonl",
                tmp_path / spec["job_id"] / "result.json", loc, progress=False)
    assert r["steps"] == 3 and all(math.isfinite(v) for v in r["losses"]) and r["n_eval"] == 12
    assert set(r["metrics"]) == {"pearson", "spearman"}
    assert all(-100 <= v <= 100 for v in r["metrics"].values())
    assert json.loads((tmp_path / spec["job_id"] / "result.json").read_text())["metrics"] == r["metrics"]


def test_encoder_regression_head_predicts_floats(tiny_models, stsb_jsonl) -> None:
    import torch

    from reclaim.data.glue import get_task
    from reclaim.framings import get
    from reclaim.io import read_jsonl

    task, framing = get_task("stsb"), get("encoder_cls")
    model, tok = framing.load(resolve("tiny-bert", {"framing": "encoder_cls",
                                                    "local_dir": str(tiny_models["bert"])}), task)
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    items = framing.encode(tok, task, read_jsonl(stsb_jsonl / "dev.jsonl")[:4], 48)
    batch = framing.collate(tok, items)
    assert batch["labels"].dtype == torch.float32
    with torch.no_grad():
        preds = framing.predict(model, batch)
        loss = framing.loss(model, batch)
    assert preds.shape == (4,) and preds.is_floating_point()
    assert loss == pytest.approx(float(((preds - batch["labels"]) ** 2).mean()), rel=1e-5)


@pytest.mark.parametrize("framing_name,kind", [("seq2seq", "t5"), ("causal_lm", "gpt2")])
def test_label_word_framings_refuse_regression(framing_name, kind, tiny_models) -> None:
    from reclaim.data.glue import get_task
    from reclaim.framings import get

    loc = resolve(f"tiny-{kind}", {"framing": framing_name, "local_dir": str(tiny_models[kind])})
    with pytest.raises(ValueError, match=rf"task 'stsb' is a regression task; the '{framing_name}' "
                                         r"framing scores label words"):
        get(framing_name).load(loc, get_task("stsb"))
