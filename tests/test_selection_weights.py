"""Training on a weighted selection: ``loss`` (weighted mean loss) and ``sampler`` (weighted
sampling with replacement) next to ``hard`` and ``repeat`` (reclaim.data.selection)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from reclaim.config import ConfigError, load_yaml, validate
from reclaim.data import selection
from reclaim.io import write_jsonl, write_text
from reclaim.jobs import make_spec
from reclaim.models import resolve
from reclaim.train import run_job

PARAMS = load_yaml(__import__("reclaim.config", fromlist=["REPO_ROOT"]).REPO_ROOT / "params.yaml")
ROWS = [{"example_id": f"e{i}", "text_a": f"t{i}", "text_b": None, "label": i % 2} for i in range(6)]


def _subset(tmp_path, weights: dict[str, float]):  # type: ignore[no-untyped-def]
    path = tmp_path / "subset.tsv"
    write_text(path, "example_id\tweight\n" + "".join(f"{e}\t{w}\n" for e, w in sorted(weights.items())))
    return path


def test_weighted_modes_keep_positive_weights_beside_the_rows(tmp_path) -> None:
    path = _subset(tmp_path, {"e0": 0.5, "e2": 0.0, "e3": 2.25})
    for mode in ("loss", "sampler"):
        rows, w = selection.apply_weighted(ROWS, path, mode)
        assert [r["example_id"] for r in rows] == ["e0", "e3"] and w == [0.5, 2.25]
    rows, w = selection.apply_weighted(ROWS, path, "repeat")
    assert w is None and [r["example_id"] for r in rows] == ["e3", "e3"]  # round(0.5) = 0 drops e0
    with pytest.raises(ValueError, match="apply_weighted"):
        selection.apply(ROWS, path, "loss")
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        selection.apply_weighted(ROWS, _subset(tmp_path, {"e1": -1.0}), "loss")


def test_sampler_draws_in_proportion_to_weight_and_is_seeded() -> None:
    w = [1.0, 2.0, 3.0, 4.0] * 8
    order = selection.sampled_order(w, seed=5)
    assert order == selection.sampled_order(w, seed=5) and len(order) == len(w)
    assert order != selection.sampled_order(w, seed=6)
    big = Counter(selection.sampled_order([1.0, 3.0] * 2000, seed=0))
    share_heavy = sum(c for i, c in big.items() if i % 2 == 1) / 4000
    assert 0.72 < share_heavy < 0.78  # expected 0.75, sd 0.007


class _Framing:
    """example_losses returns the batch's given losses and term counts."""

    def example_losses(self, model, batch):  # type: ignore[no-untyped-def]
        assert "sample_weight" not in batch  # the framing never sees the weights
        return batch["losses"], batch["counts"]


def test_weighted_loss_is_the_weighted_mean_of_terms() -> None:
    hook = selection.WeightedLoss(_Framing())  # type: ignore[arg-type]
    losses, counts = torch.tensor([1.0, 3.0, 5.0]), torch.tensor([1.0, 1.0, 2.0])
    equal = hook.loss(None, {"losses": losses, "counts": counts, "sample_weight": torch.ones(3)}, 0)
    assert torch.isclose(equal, (losses * counts).sum() / counts.sum())  # = the plain mean loss
    w = hook.loss(None, {"losses": losses, "counts": counts, "sample_weight": torch.tensor([2.0, 0.0, 1.0])}, 0)
    assert torch.isclose(w, torch.tensor((2 * 1.0 + 2 * 5.0) / (2 + 2)))


@pytest.fixture(scope="module")
def sst2_jsonl(glue_fixture, tmp_path_factory):
    from reclaim.data.example_ids import assign_ids
    from reclaim.data.glue import read_classic

    out = tmp_path_factory.mktemp("jsonl")
    for split in ("train", "dev"):
        rows = read_classic(glue_fixture, "sst2", split)
        assign_ids(rows, ["sst2", split], ["text_a", "text_b", "label"])  # as prepare_glue does
        write_jsonl(out / f"{split}.jsonl", rows)
    return out


def _cfg(tiny_models) -> dict:
    cfg = json.loads(json.dumps(PARAMS))
    cfg["models"] = {"tiny-bert": {"framing": "encoder_cls", "local_dir": str(tiny_models["bert"])}}
    scale = cfg["claims"]["lora_ga_glue"]["scales"]["smoke"]
    scale.update(models=["tiny-bert"], max_train_examples=24, max_eval_examples=12)
    scale["train"] = {"batch_size": 8, "lr": 1e-3, "max_length": 48}
    return cfg


@pytest.mark.parametrize("mode", ["hard", "repeat", "loss", "sampler"])
def test_a_train_job_consumes_each_weight_mode(mode, tiny_models, sst2_jsonl, tmp_path) -> None:
    from reclaim.data.selection import subsample
    from reclaim.io import read_jsonl

    cfg = _cfg(tiny_models)
    ids = [r["example_id"] for r in subsample(read_jsonl(sst2_jsonl / "train.jsonl"), 24, 0)]
    weights = {e: (1.0 if mode == "hard" else float(1 + i % 3)) for i, e in enumerate(ids[:16])}
    path = _subset(tmp_path, weights)
    spec = make_spec(cfg, "lora_ga_glue", "tiny-bert", "sst2", "full_ft", 0,
                     selection={"id": "s", "weight_mode": mode})
    loc = resolve("tiny-bert", cfg["models"]["tiny-bert"])
    runs = [run_job(spec, sst2_jsonl / "train.jsonl", sst2_jsonl / "dev.jsonl",
                    tmp_path / str(k) / "result.json", loc, progress=False, subset_path=path) for k in range(2)]
    r = runs[0]
    assert r["selection"]["weight_mode"] == mode
    assert r["n_train"] == {"hard": 16, "repeat": sum(int(w) for w in weights.values()), "loss": 16, "sampler": 16}[mode]
    assert r["losses"] == runs[1]["losses"]  # same seed, same numbers
    assert all(x == x for x in r["losses"])


def test_config_refuses_weight_mode_without_selection_and_loss_with_reweighting() -> None:
    cfg = json.loads(json.dumps(PARAMS))
    cfg["claims"]["data_diet"]["arms"]["full"] = [{"train": {"method": "full_ft", "weight_mode": "loss"}}]
    with pytest.raises(ConfigError, match=r"arms\.full\[0\]\.train\.weight_mode: the arm has no select step"):
        validate(cfg, "params.yaml")
    cfg = json.loads(json.dumps(PARAMS))
    arm = cfg["claims"]["data_diet"]["arms"]["random_30"]
    arm[1]["train"].update(weight_mode="loss", reweighting={"strategy": "linupper"})
    with pytest.raises(ConfigError, match=r"arms\.random_30\[1\]\.train: weight_mode loss and reweighting"):
        validate(cfg, "params.yaml")
