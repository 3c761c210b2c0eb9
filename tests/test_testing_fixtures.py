"""The offline fixtures in reclaim.testing look like the real inputs and are usable.

Other tests build on these fixtures instead of GLUE downloads and Hub checkpoints, so a
fixture that drifted from the real layout, or whose labels were unlearnable, would make
those tests pass or fail for the wrong reasons.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from reclaim.data.glue import TASKS, read_classic
from reclaim.testing import (
    FIXTURE_VOCAB,
    GLUE_FIXTURE_TASKS,
    MODEL_KINDS,
    SPECIAL_TOKENS,
    build_tokenizer,
    write_glue_fixture,
    write_tiny_model,
    write_tiny_models,
)

SPLITS = ("train", "dev")


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8").split("\n")


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_glue_fixture(tmp_path_factory.mktemp("glue"), tasks=GLUE_FIXTURE_TASKS)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_tiny_models(tmp_path_factory.mktemp("models"))


# ------------------------------------------------------------------------------ GLUE layout


def test_default_tasks_and_return_value(tmp_path: Path) -> None:
    assert write_glue_fixture(tmp_path) == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CoLA", "MRPC", "SST-2"]
    with pytest.raises(ValueError, match="unknown fixture task"):
        write_glue_fixture(tmp_path, tasks=("ax",))


def test_sst2_layout(glue_dir: Path) -> None:
    for name, n in (("train.tsv", 48), ("dev.tsv", 24)):
        lines = _lines(glue_dir / "SST-2" / name)
        assert lines[0] == "sentence\tlabel"
        assert lines[-1] == ""  # newline-terminated, no CRLF
        body = lines[1:-1]
        assert len(body) == n
        for line in body:
            sentence, label = line.split("\t")
            assert label in {"0", "1"}
            assert sentence == sentence.lower() and sentence.endswith(" ")


def test_cola_layout_has_no_header(glue_dir: Path) -> None:
    for name, n in (("train.tsv", 48), ("dev.tsv", 24)):
        body = _lines(glue_dir / "CoLA" / name)[:-1]
        assert len(body) == n  # every line is an example
        for line in body:
            source, label, mark, sentence = line.split("\t")
            assert re.fullmatch(r"[a-z_-]+\d\d", source)
            assert label in {"0", "1"}
            assert mark == ("" if label == "1" else "*")
            assert sentence[0].isupper() and sentence.endswith(".")


def test_mrpc_layout_starts_with_bom(glue_dir: Path) -> None:
    for name in ("train.tsv", "dev.tsv"):
        raw = (glue_dir / "MRPC" / name).read_bytes()
        assert raw.startswith(b"\xef\xbb\xbfQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
        for line in raw.decode("utf-8-sig").split("\n")[1:-1]:
            quality, id1, id2, s1, s2 = line.split("\t")
            assert quality in {"0", "1"} and id1.isdigit() and id2.isdigit() and s1 and s2


def test_qnli_layout(glue_dir: Path) -> None:
    for name in ("train.tsv", "dev.tsv"):
        lines = _lines(glue_dir / "QNLI" / name)
        assert lines[0] == "index\tquestion\tsentence\tlabel"
        for i, line in enumerate(lines[1:-1]):
            index, question, _sentence, label = line.split("\t")
            assert index == str(i) and question.endswith("?")
            assert label in {"entailment", "not_entailment"}


def test_mnli_layout(glue_dir: Path) -> None:
    cols = ("index promptID pairID genre sentence1_binary_parse sentence2_binary_parse "
            "sentence1_parse sentence2_parse sentence1 sentence2").split()
    train = _lines(glue_dir / "MNLI" / "train.tsv")
    assert train[0].split("\t") == [*cols, "label1", "gold_label"]
    dev = _lines(glue_dir / "MNLI" / "dev_matched.tsv")
    assert dev[0].split("\t") == [*cols, "label1", "label2", "label3", "label4", "label5",
                                  "gold_label"]
    assert not (glue_dir / "MNLI" / "dev.tsv").exists()
    for lines in (train, dev):
        width = len(lines[0].split("\t"))
        for line in lines[1:-1]:
            f = line.split("\t")
            assert len(f) == width
            assert f[-1] in {"entailment", "neutral", "contradiction"}
            assert f[2] == f[1] + f[-1][0]  # pairID = promptID + label initial
            assert f[4].replace("(", "").replace(")", "").split() == f[8].split()


def test_mnli_mismatched_layout(glue_dir: Path) -> None:
    """mnli_mm shares MNLI/train.tsv and adds dev_mismatched.tsv, with other genres."""
    matched = _lines(glue_dir / "MNLI" / "dev_matched.tsv")
    mismatched = _lines(glue_dir / "MNLI" / "dev_mismatched.tsv")
    assert mismatched[0] == matched[0]
    genres = {line.split("\t")[3] for line in mismatched[1:-1]}
    train_genres = {line.split("\t")[3] for line in _lines(glue_dir / "MNLI" / "train.tsv")[1:-1]}
    assert genres and not genres & train_genres


def test_new_task_layouts(glue_dir: Path) -> None:
    heads = {"RTE": "index sentence1 sentence2 label",
             "STS-B": "index genre filename year old_index source1 source2 sentence1 sentence2 score",
             "QQP": "id qid1 qid2 question1 question2 is_duplicate",
             "WNLI": "index sentence1 sentence2 label"}
    labels = {"RTE": {"entailment", "not_entailment"}, "QQP": {"0", "1"}, "WNLI": {"0", "1"}}
    for dir_name, head in heads.items():
        for name in ("train.tsv", "dev.tsv"):
            lines = _lines(glue_dir / dir_name / name)
            assert lines[0].split("\t") == head.split() and lines[-1] == ""
            for line in lines[1:-1]:
                f = line.split("\t")
                assert len(f) == len(head.split())
                if dir_name == "STS-B":
                    assert re.fullmatch(r"\d\.\d{3}", f[-1]) and 0 <= float(f[-1]) <= 5
                else:
                    assert f[-1] in labels[dir_name]


@pytest.mark.parametrize("task", GLUE_FIXTURE_TASKS)
def test_production_reader_parses_fixture(glue_dir: Path, task: str) -> None:
    for split, n in (("train", 48), ("dev", 24)):
        rows = read_classic(glue_dir, task, split)
        assert len(rows) == n
        assert all(r["text_a"] and (r["text_b"] is None) == (TASKS[task].text_b_name is None)
                   for r in rows)
        if TASKS[task].is_regression:  # scores spread over [0, 5]
            scores = [r["label"] for r in rows]
            assert all(isinstance(y, float) and 0 <= y <= 5 for y in scores)
            assert min(scores) < 1 and max(scores) > 4
            continue
        # balanced: every class present, counts differ by at most one
        counts = Counter(r["label"] for r in rows)
        assert sorted(counts) == list(range(TASKS[task].num_labels))
        assert max(counts.values()) - min(counts.values()) <= 1


# ------------------------------------------------------------------------- learnability


def _words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


STOPWORDS = {"the", "a", "this", "that", "in", "on", "with", ".", "?"}


def _shared(row: dict) -> set[str]:
    return (set(_words(row["text_a"])) & set(_words(row["text_b"]))) - STOPWORDS


def _features(row: dict) -> list[str]:
    """Bag of words of each text, plus for pairs the shared words and how many."""
    feats = ["bias"]
    for side in ("text_a", "text_b"):
        if row[side] is not None:
            feats += [f"{side}:{x}" for x in _words(row[side])]
    if row["text_b"] is not None:
        shared = _shared(row)
        feats += [f"shared:{x}" for x in shared] + [f"n_shared:{min(len(shared), 3)}"]
    return feats


def _perceptron_accuracy(train: list[dict], dev: list[dict], epochs: int = 10) -> float:
    """Train an averaged multi-class perceptron on train; return its accuracy on dev."""
    labels = sorted({r["label"] for r in train})
    weights = {y: Counter() for y in labels}
    summed = {y: Counter() for y in labels}
    data = [(_features(r), r["label"]) for r in train]

    def predict(w: dict[int, Counter], feats: list[str]) -> int:
        return max(labels, key=lambda y: sum(w[y][f] for f in feats))

    for _ in range(epochs):
        for feats, y in data:
            guess = predict(weights, feats)
            if guess != y:
                weights[y].update(feats)
                weights[guess].subtract(feats)
            for c in labels:
                summed[c].update(weights[c])
    return sum(predict(summed, _features(r)) == r["label"] for r in dev) / len(dev)


CLASSIFICATION_TASKS = [t for t in GLUE_FIXTURE_TASKS if not TASKS[t].is_regression]


@pytest.mark.parametrize("task", CLASSIFICATION_TASKS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_are_learnable_from_words(tmp_path: Path, task: str, seed: int) -> None:
    """A bag-of-words learner, not told the generator's word lists, generalises to dev."""
    write_glue_fixture(tmp_path, tasks=(task,), n_train=240, n_dev=60, seed=seed)
    train, dev = (read_classic(tmp_path, task, s) for s in SPLITS)
    assert _perceptron_accuracy(train, dev) > 0.8


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stsb_score_follows_word_overlap(tmp_path: Path, seed: int) -> None:
    from scipy.stats import spearmanr

    write_glue_fixture(tmp_path, tasks=("stsb",), n_train=240, n_dev=60, seed=seed)
    rows = [r for s in SPLITS for r in read_classic(tmp_path, "stsb", s)]
    rho = spearmanr([len(_shared(r)) for r in rows], [r["label"] for r in rows])[0]
    assert rho > 0.8


GOOD = {"good", "great", "excellent", "wonderful", "lovely", "brilliant"}
BAD = {"bad", "awful", "terrible", "boring", "dull", "poor"}
BARE_VERBS = {"see", "like", "read", "watch", "find", "make"}
NEGATION = {"not", "never", "no"}
EXTRA_INFO = {"often", "later", "yesterday", "today", "because"}

RULES = {  # the word patterns each task's labels are meant to follow
    "sst2": lambda r: int(len(GOOD & set(_words(r["text_a"])))
                          > len(BAD & set(_words(r["text_a"])))),
    "cola": lambda r: int(not BARE_VERBS & set(_words(r["text_a"]))),
    "mrpc": lambda r: int(len(_shared(r)) >= 3),
    "qnli": lambda r: int(not _shared(r)),  # 0 = entailment
    "mnli": lambda r: (2 if NEGATION & set(_words(r["text_b"]))
                       else 1 if EXTRA_INFO & set(_words(r["text_b"])) else 0),
    "rte": lambda r: int(bool((NEGATION | {"instead"}) & set(_words(r["text_b"])))
                         or len(_shared(r)) < 3),  # 1 = not_entailment
    "qqp": lambda r: int(len(_shared(r) - {"what", "who", "does"}) >= 2),
    "wnli": lambda r: int(len(_shared(r)) >= 3),  # sentence2 names sentence1's object
}
RULES["mnli_mm"] = RULES["mnli"]


@pytest.mark.parametrize("task", CLASSIFICATION_TASKS)
def test_simple_word_rule_predicts_labels(glue_dir: Path, task: str) -> None:
    rows = [r for split in SPLITS for r in read_classic(glue_dir, task, split)]
    assert sum(RULES[task](r) == r["label"] for r in rows) / len(rows) > 0.8


def test_glue_fixture_is_deterministic(tmp_path: Path) -> None:
    a = write_glue_fixture(tmp_path / "a", tasks=GLUE_FIXTURE_TASKS, seed=3)
    b = write_glue_fixture(tmp_path / "b", tasks=GLUE_FIXTURE_TASKS, seed=3)
    c = write_glue_fixture(tmp_path / "c", tasks=GLUE_FIXTURE_TASKS, seed=4)
    assert _tree_digest(a) == _tree_digest(b)
    assert _tree_digest(a) != _tree_digest(c)
    # a task's files do not depend on which other tasks were written
    d = write_glue_fixture(tmp_path / "d", tasks=("mnli",), seed=3)
    assert _tree_digest(d).items() <= _tree_digest(a).items()


# --------------------------------------------------------------------------- tokenizers


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_tokenizer_covers_fixture_texts_and_prompts(glue_dir: Path, kind: str) -> None:
    tok = build_tokenizer(kind)
    texts = [" ".join(FIXTURE_VOCAB)]
    for task in GLUE_FIXTURE_TASKS:
        t = TASKS[task]
        for split in SPLITS:
            for r in read_classic(glue_dir, task, split):
                word = "" if t.is_regression else t.label_words[r["label"]]
                texts += [t.prompt(r["text_a"], r["text_b"]) + word]
    for ids in tok(texts, add_special_tokens=False)["input_ids"]:
        assert tok.unk_token_id not in ids
    # newlines are whitespace, ':' is its own token, 'not_entailment' stays whole
    toks = tok.convert_ids_to_tokens(
        tok("Text: a\nresult: not_entailment", add_special_tokens=False)["input_ids"])
    assert toks == ["text", ":", "a", "result", ":", "not_entailment"]


# ---------------------------------------------------------------------------- tiny models


def test_special_token_ids(models: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    for kind, path in models.items():
        tok = AutoTokenizer.from_pretrained(str(path))
        assert len(tok) == len(set(FIXTURE_VOCAB) | set(SPECIAL_TOKENS[kind].values()))
        for i, (role, token) in enumerate(SPECIAL_TOKENS[kind].items()):
            assert getattr(tok, role) == token and getattr(tok, f"{role}_id") == i
    bert = AutoTokenizer.from_pretrained(str(models["bert"]))
    enc = bert("good film", "bad film", truncation=True, max_length=64)
    assert bert.convert_ids_to_tokens(enc["input_ids"]) == [
        "[CLS]", "good", "film", "[SEP]", "bad", "film", "[SEP]"]
    assert enc["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]
    t5 = AutoTokenizer.from_pretrained(str(models["t5"]))
    assert t5("good film")["input_ids"][-1] == t5.eos_token_id
    gpt2 = AutoTokenizer.from_pretrained(str(models["gpt2"]))
    assert gpt2("good film")["input_ids"] == gpt2.convert_tokens_to_ids(["good", "film"])
    llama = AutoTokenizer.from_pretrained(str(models["llama"]))
    assert llama("good film")["input_ids"][0] == llama.bos_token_id


def _auto_class(kind: str):
    import transformers

    return {
        "bert": transformers.AutoModelForSequenceClassification,
        "gpt2": transformers.AutoModelForCausalLM,
        "llama": transformers.AutoModelForCausalLM,
        "t5": transformers.AutoModelForSeq2SeqLM,
    }[kind]


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_tiny_model_reloads_offline_and_runs(
    models: dict[str, Path], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = str(models[kind])
    tok = AutoTokenizer.from_pretrained(path)
    model = _auto_class(kind).from_pretrained(path).eval()
    assert type(model).__name__ == {
        "bert": "BertForSequenceClassification", "gpt2": "GPT2LMHeadModel",
        "t5": "T5ForConditionalGeneration", "llama": "LlamaForCausalLM"}[kind]
    assert sum(p.numel() for p in model.parameters()) < 200_000
    texts = ["the good film is really lovely", "bad film"]
    pairs = ["a great movie", "this story is dull and poor"] if kind == "bert" else None
    batch = tok(texts, pairs, padding=True, truncation=True, max_length=64, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()  # the batch really is padded
    with torch.no_grad():
        if kind == "t5":
            labels = tok(["positive", "negative"], return_tensors="pt")["input_ids"]
            out = model(**batch, labels=labels)
            assert out.logits.shape == (2, labels.shape[1], len(tok))
            assert torch.isfinite(out.loss)
            gen = model.generate(**batch, max_new_tokens=3, do_sample=False)
            assert gen.shape[0] == 2 and (gen[:, 0] == tok.pad_token_id).all()
        else:
            logits = model(**batch).logits
            want = (2, 2) if kind == "bert" else (2, batch["input_ids"].shape[1], len(tok))
            assert logits.shape == want
            # padding must not change the real tokens' outputs (right padding)
            n = int(batch["attention_mask"][1].sum())
            alone = model(**{k: v[1:, :n] for k, v in batch.items()}).logits
            got = logits[1:] if kind == "bert" else logits[1:, :n]
            torch.testing.assert_close(got, alone, atol=1e-5, rtol=1e-4)
    if kind == "bert":  # other label counts re-initialise the head
        model3 = _auto_class(kind).from_pretrained(path, num_labels=3,
                                                   ignore_mismatched_sizes=True)
        with torch.no_grad():
            assert model3(**batch).logits.shape == (2, 3)


def test_tiny_models_are_deterministic(models: dict[str, Path], tmp_path: Path) -> None:
    state = torch.random.get_rng_state()
    again = write_tiny_models(tmp_path / "again")
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    for kind in MODEL_KINDS:
        assert _tree_digest(again[kind]) == _tree_digest(models[kind]), kind
    other = write_tiny_model(tmp_path / "other", "bert", seed=1)
    assert (other / "model.safetensors").read_bytes() != (
        models["bert"] / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="unknown tiny model kind"):
        write_tiny_model(tmp_path / "x", "opt")
