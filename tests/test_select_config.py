"""Bad selection input is refused before any job, naming the key."""

from __future__ import annotations

import copy

import pytest

from reclaim.config import REPO_ROOT, ConfigError, load_yaml, validate

BASE = load_yaml(REPO_ROOT / "params.yaml")


def _refused(mutate) -> str:  # type: ignore[no-untyped-def]
    cfg = copy.deepcopy(BASE)
    mutate(cfg)
    with pytest.raises(ConfigError) as exc:
        validate(cfg)
    return str(exc.value)


def _arm(cfg):  # type: ignore[no-untyped-def]
    return cfg["claims"]["dsir_glue"]["arms"]["dsir"][0]["select"]


@pytest.mark.parametrize("budget", [0, 1.5])
def test_budget_outside_zero_one(budget: float) -> None:
    msg = _refused(lambda c: _arm(c).update(budget=budget))
    assert "claims.dsir_glue.arms.dsir[0].select.budget" in msg


def test_unknown_selector_in_an_arm() -> None:
    msg = _refused(lambda c: _arm(c).update(selector="nope"))
    assert "claims.dsir_glue.arms.dsir[0].select.selector: unknown selector 'nope'" in msg


def test_unknown_selector_module() -> None:
    msg = _refused(lambda c: c["selectors"]["dsir"].update(selector="dsirr"))
    assert "selectors.dsir.selector: unknown selector 'dsirr'" in msg


def test_bad_selector_param_names_the_field() -> None:
    msg = _refused(lambda c: c["selectors"]["dsir"]["params"].update(buckets=1))
    assert "selectors.dsir.params: buckets must be an integer >= 2" in msg


def test_pool_that_reads_an_unknown_task() -> None:
    msg = _refused(lambda c: c["pools"]["dsir_text"]["params"].update(glue=["cola/train", "sst3/train"]))
    assert "pools.dsir_text.params: unknown task 'sst3'" in msg


def test_pool_that_reads_an_unknown_split() -> None:
    msg = _refused(lambda c: c["pools"]["dsir_text"]["params"].update(hidden="sst2/test"))
    assert "pools.dsir_text.params: task sst2 has no split 'test'" in msg


def test_scale_naming_an_unknown_pool() -> None:
    msg = _refused(lambda c: c["claims"]["dsir_glue"]["scales"]["smoke"].update(pool="nope"))
    assert "claims.dsir_glue.scales.smoke.pool: unknown pool 'nope'" in msg


def test_targeted_selector_without_a_pool() -> None:
    def mutate(c):  # type: ignore[no-untyped-def]
        s = c["claims"]["dsir_glue"]["scales"]["smoke"]
        del s["pool"]
        s["tasks"] = ["sst2"]
    assert "needs a target sample" in _refused(mutate)


def test_unknown_evaluator() -> None:
    msg = _refused(lambda c: c["claims"]["dsir_glue"]["arms"]["dsir"][1]["evaluate"].update(evaluator="bleu"))
    assert "claims.dsir_glue.arms.dsir[1].evaluate.evaluator: unknown evaluator 'bleu'" in msg


def test_step_with_two_stages() -> None:
    msg = _refused(lambda c: c["claims"]["dsir_glue"]["arms"]["dsir"][1].update(train={"method": "lora"}))
    assert "claims.dsir_glue.arms.dsir[1]" in msg
