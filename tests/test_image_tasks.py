"""Image tasks: the IDX and CIFAR-10 readers on generated files, content-hash example ids, the
image_cls framing (training, evaluation, seeding, Data Diet's trained scoring networks), the
from-scratch model kind, config refusals, and the data_diet plan with an image task (the plan
and `snakemake -n` on fixtures). No test needs the Debian files or the Hub."""

from __future__ import annotations

import copy
import gzip
import math
import pickle

import numpy as np
import pytest
import yaml

from reclaim import plan as reclaim_plan
from reclaim.config import REPO_ROOT, ConfigError, load_yaml, merge, validate
from reclaim.data import images
from reclaim.data.tasks import read_rows, split_path
from reclaim.testing import (
    fixture_images,
    write_cifar10_fixture,
    write_fashion_mnist_fixture,
    write_idx,
)

# --- readers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_reads_generated_files_gzipped_and_raw(tmp_path, gz: bool) -> None:
    a = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    path = write_idx(tmp_path / "x-idx3-ubyte", a, gz=gz)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz
    assert np.array_equal(images.read_idx(path), a)
    labels = np.array([3, 1, 4], dtype=np.uint8)
    assert np.array_equal(images.read_idx(write_idx(tmp_path / "y", labels, gz=gz)), labels)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_directory_reads_both_splits(tmp_path, gz: bool) -> None:
    d = write_fashion_mnist_fixture(tmp_path / "fm", n_train=30, n_dev=20, gz=gz)
    pixels, labels = images.read_split("fashion_mnist", "train", str(d))
    ref, ref_labels = fixture_images(30, (1, 28, 28), seed=0)
    assert pixels.shape == (30, 1, 28, 28) and pixels.dtype == np.uint8
    assert np.array_equal(pixels, ref) and np.array_equal(labels, ref_labels)
    assert images.read_split("fashion_mnist", "dev", str(d))[0].shape == (20, 1, 28, 28)


@pytest.mark.parametrize("raw, msg", [
    (b"\x00\x01\x08\x01\x00\x00\x00\x02ab", "malformed IDX header: expected magic 0x0000"),
    (b"\x00\x00\x0d\x01\x00\x00\x00\x02ab", r"malformed IDX header: data type 0x0d is not unsigned byte \(0x08\)"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "malformed IDX header: cut off inside the 3 dimension sizes"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05ab", r"IDX header says 5 = 5 bytes of data, the file has 2 \(truncated\?\)"),
    (b"", "malformed IDX header: .* an empty file"),
])
def test_malformed_idx_is_an_error_naming_the_file(tmp_path, raw: bytes, msg: str) -> None:
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=f"{path}: {msg}"):
        images.read_idx(path)
    gzpath = tmp_path / "bad-idx1-ubyte.gz"
    gzpath.write_bytes(gzip.compress(raw))
    with pytest.raises(ValueError, match=f"{gzpath}: {msg}"):
        images.read_idx(gzpath)


def test_missing_directory_or_file_names_the_path(tmp_path) -> None:
    with pytest.raises(images.MissingImageData, match=f"fashion_mnist: directory {tmp_path / 'nope'} not found"):
        images.read_split("fashion_mnist", "train", str(tmp_path / "nope"))
    d = write_fashion_mnist_fixture(tmp_path / "fm", n_train=10, n_dev=10)
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(images.MissingImageData, match=r"t10k-labels-idx1-ubyte\[\.gz\] not found"):
        images.read_split("fashion_mnist", "dev", str(d))
    with pytest.raises(images.MissingImageData, match=f"cifar10: directory {tmp_path / 'c'} not found"):
        images.read_split("cifar10", "train", str(tmp_path / "c"))
    c = write_cifar10_fixture(tmp_path / "c", per_batch=4)
    (c / "data_batch_3").unlink()
    with pytest.raises(images.MissingImageData, match=f"cifar10: {c / 'data_batch_3'} not found"):
        images.read_split("cifar10", "train", str(c))


def test_label_and_image_count_mismatch_names_both_files(tmp_path) -> None:
    d = write_fashion_mnist_fixture(tmp_path / "fm", n_train=10, n_dev=10)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(9, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz: \(9,\) labels for 10 images in .*train-images"):
        images.read_split("fashion_mnist", "train", str(d))


def test_cifar10_reader_on_generated_batches(tmp_path) -> None:
    c = write_cifar10_fixture(tmp_path / "c", per_batch=6)
    pixels, labels = images.read_split("cifar10", "train", str(c))
    assert pixels.shape == (30, 3, 32, 32) and labels.shape == (30,)
    first, first_labels = fixture_images(6, (3, 32, 32), seed=0)
    assert np.array_equal(pixels[:6], first) and np.array_equal(labels[:6], first_labels)
    dev, _ = images.read_split("cifar10", "dev", str(c))
    assert np.array_equal(dev, fixture_images(6, (3, 32, 32), seed=5)[0])
    # the archive's own layout: the batches in cifar-10-batches-py/
    nested = tmp_path / "archive"
    write_cifar10_fixture(nested / "cifar-10-batches-py", per_batch=6)
    assert np.array_equal(images.read_split("cifar10", "train", str(nested))[0], pixels)


def test_cifar10_reader_refuses_a_pickle_that_would_run_code(tmp_path) -> None:
    c = write_cifar10_fixture(tmp_path / "c", per_batch=2)

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("pwned",))

    (c / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(ValueError, match=f"{c / 'test_batch'}: not a CIFAR-10 python batch .*refusing to load builtins.print"):
        images.read_split("cifar10", "dev", str(c))


# --- canonical files and ids ---------------------------------------------------------------------


def test_example_ids_are_content_hashes_stable_under_reordering(tmp_path) -> None:
    pixels, labels = fixture_images(40, (1, 28, 28), seed=3)
    ids = images.example_ids("fashion_mnist", "train", pixels, labels)
    assert len(set(ids)) == 40 and all(len(e) == 16 for e in ids)
    perm = np.random.default_rng(0).permutation(40)
    shuffled = images.example_ids("fashion_mnist", "train", pixels[perm], labels[perm])
    assert shuffled == [ids[i] for i in perm]                    # an image keeps its id wherever it is
    assert images.example_ids("fashion_mnist", "dev", pixels, labels) != ids       # split is hashed
    flipped = labels.copy()
    flipped[0] = (flipped[0] + 1) % 10
    assert images.example_ids("fashion_mnist", "train", pixels, flipped)[0] != ids[0]  # label is hashed
    # an exact duplicate (same pixels, same label) gets a salted id, the first copy the plain one
    dup = images.example_ids("fashion_mnist", "train", np.concatenate([pixels, pixels[:1]]),
                             np.concatenate([labels, labels[:1]]))
    assert dup[:40] == ids and dup[40] not in ids


def test_prepared_split_round_trips_with_ids(tmp_path) -> None:
    pixels, labels = fixture_images(12, (3, 32, 32), seed=1)
    out = tmp_path / "data/images/cifar10/train.npz"
    assert images.write_split(out, "cifar10", "train", pixels, labels) == 12
    rows = read_rows(out)
    assert [r["idx"] for r in rows] == list(range(12))
    assert [r["example_id"] for r in rows] == images.example_ids("cifar10", "train", pixels, labels)
    assert all(np.array_equal(r["pixels"], p) and r["label"] == y for r, p, y in zip(rows, pixels, labels, strict=True))
    assert split_path("cifar10", "dev") == "data/images/cifar10/dev.npz"
    assert split_path("sst2", "train") == "data/glue/sst2/train.jsonl"
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz: not a prepared image split"):
        read_rows(tmp_path / "bad.npz")


def test_source_directory_precedence(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    cfg = {"data": {"fashion_mnist_dir": str(tmp_path / "from_params")}}
    assert images.source_dir(cfg, "fashion_mnist") == str(tmp_path / "from_params")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "from_env"))
    assert images.source_dir(cfg, "fashion_mnist") == str(tmp_path / "from_env")
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    assert images.source_dir({"data": {}}, "cifar10") is None       # no directory: the Hub


# --- the framing ---------------------------------------------------------------------------------


def _fixture_split(tmp_path, n_train: int = 256, n_dev: int = 128):
    d = write_fashion_mnist_fixture(tmp_path / "fm", n_train=n_train, n_dev=n_dev)
    paths = {}
    for split in ("train", "dev"):
        paths[split] = tmp_path / f"{split}.npz"
        images.write_split(paths[split], "fashion_mnist", split, *images.read_split("fashion_mnist", split, str(d)))
    return paths


def _image_cfg(arch: str = "cnn_small", epochs: float = 3) -> dict:
    cfg = validate(load_yaml(REPO_ROOT / "params.yaml"))
    return merge(cfg, {"models": {"img": {"framing": "image_cls", "from_scratch": {"arch": arch}}},
                       "claims": {"data_diet": {"scales": {"smoke": {"per_task": {"fashion_mnist": {
                           "models": ["img"], "max_train_examples": None, "max_eval_examples": None,
                           "train": {"batch_size": 32, "lr": 3.0e-3, "epochs": epochs}}}}}}}})


def _train(cfg: dict, paths: dict, out, seed: int = 0) -> dict:
    from reclaim.jobs import make_spec
    from reclaim.models import resolve
    from reclaim.train import run_job

    spec = make_spec(cfg, "data_diet", "img", "fashion_mnist", "full_ft", seed)
    return run_job(spec, paths["train"], paths["dev"], out, resolve("img", cfg["models"]["img"]),
                   threads=1, progress=False)


def test_cnn_trains_from_scratch_learns_and_is_seeded(tmp_path) -> None:
    paths = _fixture_split(tmp_path)
    cfg = _image_cfg()
    a = _train(cfg, paths, tmp_path / "a/result.json")
    b = _train(cfg, paths, tmp_path / "b/result.json")
    c = _train(cfg, paths, tmp_path / "c/result.json", seed=1)
    assert a["model_location"] == "scratch" and a["n_train"] == 256 and a["n_eval"] == 128
    assert a["losses"] == b["losses"] and a["metrics"] == b["metrics"]   # same seed, same numbers
    assert a["losses"] != c["losses"]                                    # the seed is the init and order
    first, last = np.mean(a["losses"][:3]), np.mean(a["losses"][-3:])
    assert last < 0.5 * first, (first, last)
    assert a["metrics"]["accuracy"] > 80.0      # chance is 10 %: the bands are learnable


def test_resnet9_and_resnet18_build_and_give_logits_and_features() -> None:
    import torch

    from reclaim.framings.image_cls import build

    for arch, dim in (("resnet9", 512), ("resnet18", 512), ("cnn_small", 64)):
        for shape in ((1, 28, 28), (3, 32, 32)):
            torch.manual_seed(0)
            net = build(arch, shape, 10).eval()
            x = torch.zeros(2, *shape)
            assert net(x).shape == (2, 10) and net.features(x).shape == (2, dim)
    with pytest.raises(ValueError, match="unknown image architecture 'vgg'"):
        build("vgg", (1, 28, 28), 10)


def test_data_diet_scores_come_from_networks_trained_on_the_pool(tmp_path) -> None:
    """EL2N/GraNd on images: per run a CNN trained `epochs` epochs from a seeded init (the paper's
    protocol), not a head on a random network; seeded; GraNd equals autograd's gradient norm."""
    import torch

    from reclaim import select
    from reclaim.framings.image_cls import FRAMING, build
    from reclaim.jobs import model_identity
    from reclaim.models import resolve
    from reclaim.select._base import ModelContext, canonical

    cfg = _image_cfg()
    paths = _fixture_split(tmp_path, n_train=160, n_dev=10)
    pool = canonical(read_rows(paths["train"]), "pool")
    ctx = ModelContext(model_identity(cfg, "img"), resolve("img", cfg["models"]["img"]), "fashion_mnist", 1)
    el2n = select.get("el2n")
    trained = el2n.make_params({"epochs": 3, "runs": 2, "lr": 0.05, "seed": 0})
    s1 = np.array(el2n.score(pool, None, trained, 0, model=ctx))
    s2 = np.array(el2n.score(pool, None, trained, 7, model=ctx))
    assert s1.shape == (160,) and np.array_equal(s1, s2)          # seeded by params, not the job seed
    assert s1.min() >= 0 and s1.max() <= math.sqrt(2) + 1e-9
    at_init = np.array(el2n.score(pool, None, el2n.make_params({"epochs": 0, "runs": 2}), 0, model=ctx))
    assert s1.mean() < 0.5 * at_init.mean()                        # the networks learned the pool
    # GraNd: the norm of the full-network gradient of each example's loss
    grand = select.get("grand")
    p = grand.make_params({"epochs": 0, "runs": 1, "seed": 3})
    g = np.array(grand.score(pool[:5], None, p, 0, model=ctx))
    out = FRAMING.train_for_scores(ctx.location, images.TASKS["fashion_mnist"], pool[:5], p, "t", grad_norms=True)
    assert np.allclose(out.grad_norms[0], g)
    run_seed = int(np.random.SeedSequence([3, 0, 0x1A6E]).generate_state(1)[0])
    torch.manual_seed(run_seed)
    net = build("cnn_small", (1, 28, 28), 10).eval()
    x = FRAMING.collate(FRAMING.load(ctx.location, images.TASKS["fashion_mnist"])[1],
                        FRAMING.encode(None, None, pool[:1], 0))
    loss = torch.nn.functional.cross_entropy(net(x["pixels"]), x["labels"])
    norm = math.sqrt(sum(float((gr ** 2).sum()) for gr in torch.autograd.grad(loss, list(net.parameters()))))
    assert g[0] == pytest.approx(norm, rel=1e-5)


# --- models and config ---------------------------------------------------------------------------


def test_from_scratch_is_its_own_resolution_kind() -> None:
    from reclaim.models import at_models_dir, resolve

    entry = {"framing": "image_cls", "from_scratch": {"arch": "resnet9"}}
    m = resolve("r9", entry)
    assert (m.kind, m.location, m.is_local) == ("scratch", "scratch:resnet9", True)
    assert at_models_dir("r9", entry, "/elsewhere") == m      # nothing to find on another machine


@pytest.fixture(scope="module")
def cfg() -> dict:
    return validate(load_yaml(REPO_ROOT / "params.yaml"))


def test_config_refusals_name_the_key(cfg) -> None:
    bad = copy.deepcopy(cfg)
    del bad["claims"]["data_diet"]["scales"]["smoke"]["per_task"]
    with pytest.raises(ConfigError, match=r"claims\.data_diet\.scales\.smoke\.models: model 'minilm' \(encoder_cls, "
                                          r"text\) cannot run image task 'fashion_mnist'.*per_task\.fashion_mnist\.models"):
        validate(bad)
    bad = merge(cfg, {"claims": {"data_diet": {"scales": {"smoke": {"per_task": {"fashion_mnist": {"models": ["minilm"]}}}}}}})
    with pytest.raises(ConfigError, match=r"scales\.smoke\.per_task\.fashion_mnist\.models: model 'minilm'"):
        validate(bad)
    bad = merge(cfg, {"claims": {"data_diet": {"scales": {"smoke": {"per_task": {"fashion_mnist": {"models": ["nope"]}}}}}}})
    with pytest.raises(ConfigError, match=r"per_task\.fashion_mnist\.models\[0\]: unknown model 'nope'"):
        validate(bad)
    bad = merge(cfg, {"claims": {"data_diet": {"scales": {"smoke": {"per_task": {"mnist": {"models": ["cnn_small"]}}}}}}})
    with pytest.raises(ConfigError, match=r"per_task\.mnist: unknown task 'mnist'"):
        validate(bad)
    bad = merge(cfg, {"models": {"cnn_small": {"from_scratch": None}}})
    del bad["models"]["cnn_small"]["from_scratch"]
    with pytest.raises(ConfigError, match=r"models\.cnn_small: framing 'image_cls' trains from scratch"):
        validate(bad)
    bad = merge(cfg, {"models": {"minilm": {"from_scratch": {"arch": "resnet9"}}}})
    with pytest.raises(ConfigError, match=r"models\.minilm\.from_scratch: framing 'encoder_cls' loads pretrained"):
        validate(bad)
    bad = merge(cfg, {"models": {"cnn_small": {"from_scratch": {"arch": "vgg"}}}})
    with pytest.raises(ConfigError, match=r"models\.cnn_small\.from_scratch\.arch"):
        validate(bad)


def test_data_diet_plan_gives_the_image_task_its_own_model_and_keeps_text_ids(cfg) -> None:
    p = reclaim_plan.build(cfg)
    runs = p.runs["data_diet"]
    assert {(r.model, r.task) for r in runs} == {("minilm", "sst2"), ("cnn_small", "fashion_mnist")}
    img = [r for r in runs if r.task == "fashion_mnist"]
    assert len(img) == len(cfg["claims"]["data_diet"]["arms"]) * len(cfg["claims"]["data_diet"]["scales"]["smoke"]["seeds"])
    full = next(r for r in img if r.arm == "full").terminal
    assert full.inputs == {"train": "data/images/fashion_mnist/train.npz", "dev": "data/images/fashion_mnist/dev.npz"}
    assert full.spec["data"]["max_train_examples"] == 5000 and full.spec["train"]["batch_size"] == 64
    assert full.spec["model"] == {"name": "cnn_small", "framing": "image_cls", "from_scratch": {"arch": "cnn_small"}}
    el2n = next(r for r in img if r.arm == "el2n_hard_50").jobs[0]
    assert el2n.spec["data"] == "images/fashion_mnist/train@5000" and el2n.spec["model"]["name"] == "cnn_small"
    assert el2n.inputs["pool"] == "data/images/fashion_mnist/train.npz"
    # the text context's jobs are exactly those of the scale without the image task
    text_only = merge(cfg, {"claims": {"data_diet": {"scales": {"smoke": {"tasks": ["sst2"]}}}}})
    q = reclaim_plan.build(text_only)
    for rule, jobs in q.jobs.items():
        for key, job in jobs.items():
            assert p.jobs[rule][key].id == job.id
    assert set(p.jobs["train"]) - set(q.jobs["train"]) == {r.terminal.key for r in img}


# --- the workflow: planning with fixtures --------------------------------------------------------


@pytest.mark.slow
def test_snakemake_plans_the_image_task_and_names_a_missing_directory(tmp_path, tiny_models, glue_fixture) -> None:
    from reclaim.testing import (
        copy_workflow,
        planned_jobs,
        run_snakemake,
        tiny_claim_params,
        workflow_env,
    )

    work = copy_workflow(tmp_path / "wf")
    tiny = tiny_claim_params(tiny_models, tasks=["sst2"], seeds=[0], max_train=24, max_eval=16)
    tiny["claims"]["data_diet"]["scales"]["smoke"]["tasks"] = ["sst2", "fashion_mnist"]
    tiny["claims"]["data_diet"]["scales"]["smoke"]["per_task"] = {
        "fashion_mnist": {"models": ["cnn_small"], "max_train_examples": 40, "max_eval_examples": 20,
                          "train": {"batch_size": 8, "lr": 2.0e-3, "epochs": 1}}}
    (work / "test_params.yaml").write_text(yaml.safe_dump(tiny))
    fm = write_fashion_mnist_fixture(tmp_path / "fm", n_train=60, n_dev=30, gz=False)
    env = {**workflow_env(work, glue_fixture), "FASHION_MNIST_DIR": str(fm)}
    proc = run_snakemake(work, "-n", "results/data_diet.csv", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = planned_jobs(proc.stdout)
    prep = sorted(wc["split"] for rule, wc in jobs if rule == "prepare_images")
    assert prep == ["dev", "train"]
    trains = [wc for rule, wc in jobs if rule == "train"]
    arms = len(yaml.safe_load((work / "params.yaml").read_text())["claims"]["data_diet"]["arms"])
    assert sum(wc["model"] == "cnn_small" and wc["task"] == "fashion_mnist" for wc in trains) == arms
    assert sum(wc["model"] == "tiny-bert" and wc["task"] == "sst2" for wc in trains) == arms
    assert str(fm / "train-images-idx3-ubyte") in proc.stdout        # the raw IDX files are the inputs
    env["FASHION_MNIST_DIR"] = str(tmp_path / "absent")
    proc = run_snakemake(work, "-n", "results/data_diet.csv", env=env)
    assert proc.returncode != 0
    assert f"fashion_mnist: directory {tmp_path / 'absent'} not found" in proc.stdout + proc.stderr
