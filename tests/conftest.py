from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from reclaim.testing import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("models"), seed=0)


@pytest.fixture(scope="session")
def glue_fixture(tmp_path_factory):
    from reclaim.testing import write_glue_fixture

    return write_glue_fixture(tmp_path_factory.mktemp("glue"), tasks=("sst2", "cola", "mrpc"), seed=0)
