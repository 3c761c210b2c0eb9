"""Adding a selector is one file plus params (docs/architecture.md, "add a selector"): a new
module in a workflow copy's src/reclaim/select/, a `selectors:` entry and an arm, and the
plan, validation and Snakemake pick it up with no other edit."""

from __future__ import annotations

import pytest
import yaml

from reclaim.testing import (
    copy_workflow,
    planned_jobs,
    run_snakemake,
    tiny_claim_params,
    workflow_env,
)

NEW_SELECTOR = '''
from dataclasses import dataclass

from reclaim.select._base import Selector, row_text


@dataclass(frozen=True)
class Params:
    alpha: float = 1.0


class LongestText(Selector):
    Params = Params
    orientation = "high = longer text"
    seeded = False

    def score(self, pool, target, params, seed):
        return [len(row_text(r)) * params.alpha for r in pool]


SELECTOR = LongestText()
'''


@pytest.fixture()
def extended(tmp_path, tiny_models, glue_fixture):
    work = copy_workflow(tmp_path / "wf")
    (work / "src/reclaim/select/longest_text.py").write_text(NEW_SELECTOR)
    params = tiny_claim_params(tiny_models)
    params["selectors"] = {"longest": {"selector": "longest_text", "params": {"alpha": 2.0}}}
    params["claims"]["dsir_glue"]["arms"] = {"longest": [  # merged into the claim's arms
        {"select": {"selector": "longest", "subset": "top", "budget": 0.2}},
        {"evaluate": {"evaluator": "selection_stats"}}]}
    (work / "test_params.yaml").write_text(yaml.safe_dump(params))
    return work, params, workflow_env(work, glue_fixture)


def test_new_selector_is_one_file_plus_params(extended) -> None:
    work, _, env = extended
    proc = run_snakemake(work, "-n", "results/dsir_glue.csv", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned_jobs(proc.stdout)
    assert ("score", {"selector": "longest", "sid": next(w["sid"] for r, w in jobs if r == "score"
                                                          and w["selector"] == "longest")}) in jobs
    assert {w["selector"] for r, w in jobs if r == "subset"} >= {"longest"}


def test_new_selector_params_are_validated_before_any_job(extended) -> None:
    work, params, env = extended
    params["selectors"]["longest"]["params"] = {"beta": 1}
    (work / "test_params.yaml").write_text(yaml.safe_dump(params))
    proc = run_snakemake(work, "-n", "results/dsir_glue.csv", env=env)
    assert proc.returncode != 0
    assert "selectors.longest.params: unknown parameter 'beta' (known: alpha)" in proc.stdout + proc.stderr
