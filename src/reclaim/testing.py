"""Offline, deterministic fixtures for tests: a miniature GLUE directory and tiny models.

The workflow's real inputs (GLUE files, Hub checkpoints) are large and need a network, so
tests must not depend on them. These helpers write stand-ins with the same on-disk layout
as the real thing (classic ``GLUE_DIR/<TASK>/*.tsv`` files, ``save_pretrained`` model
directories) so the production readers and loaders run unchanged on a fresh clone.

The GLUE texts come from a small fixed vocabulary, :data:`FIXTURE_VOCAB`, and carry
label-correlated word patterns, so that tiny models can learn the tasks and a simple
bag-of-words baseline scores well above chance. The tokenizers are word-level over
the same vocabulary, so every fixture text and every text-to-text prompt tokenizes with
no unknown tokens.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

    from transformers import PreTrainedTokenizerFast

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

_DETS = ["the", "a", "this", "that"]
_SUBJECTS = ["man", "woman", "child", "dog", "cat"]
_OBJECTS = ["film", "movie", "book", "story", "song", "house", "car"]
_NOUNS = _SUBJECTS + _OBJECTS
# (third person singular, bare form): CoLA's agreement errors swap one for the other.
_VERBS = [
    ("sees", "see"),
    ("likes", "like"),
    ("reads", "read"),
    ("watches", "watch"),
    ("finds", "find"),
    ("makes", "make"),
]
_GOOD = ["good", "great", "excellent", "wonderful", "lovely", "brilliant"]
_BAD = ["bad", "awful", "terrible", "boring", "dull", "poor"]
_ADJECTIVES = _GOOD + _BAD
_ADVERBS = ["very", "quite", "really", "truly", "just"]
_FILLER = ["is", "was", "and", "with", "in", "on", "of", "it", "to", "also", "instead"]
_NEGATION = ["not", "never", "no", "does"]
_EXTRA_INFO = ["yesterday", "because", "later", "often", "today"]
_QUESTION = ["what", "who"]
_PUNCTUATION = [".", ",", "?", "!", ":", ";", "'", '"', "(", ")", "-"]

# Words the text-to-text framings generate (GLUE label words) and put in prompts.
_LABEL_WORDS = [
    "negative", "positive", "unacceptable", "acceptable", "different", "equivalent",
    "entailment", "not_entailment", "neutral", "contradiction",
]
_PROMPT_WORDS = [
    "classify", "the", "sentiment", "grammar", "paraphrase", "of", "text", ":", "result",
    "sentence", "sentence1", "sentence2", "question", "premise", "hypothesis",
]
# Label words and prompt words of the tasks added later (QQP, STS-B), appended last so the
# earlier words keep their token ids.
_MORE_TASK_WORDS = ["not_duplicate", "duplicate", "question1", "question2", "similarity"]

FIXTURE_VOCAB: list[str] = list(
    dict.fromkeys(
        _DETS + _NOUNS + [v for pair in _VERBS for v in pair] + _ADJECTIVES + _ADVERBS
        + _FILLER + _NEGATION + _EXTRA_INFO + _QUESTION + _PUNCTUATION + _LABEL_WORDS
        + _PROMPT_WORDS + _MORE_TASK_WORDS
    )
)
"""Every token a fixture text or a text-to-text prompt/target can contain (lower case)."""

GLUE_FIXTURE_TASKS = ("sst2", "cola", "mrpc", "qnli", "mnli", "mnli_mm", "rte", "stsb", "qqp",
                      "wnli")

# --------------------------------------------------------------------------------------------
# GLUE fixture
# --------------------------------------------------------------------------------------------


def _balanced_labels(rng: random.Random, n: int, k: int) -> list[int]:
    """Labels cycling over k classes, shuffled: counts differ by at most one."""
    labels = [i % k for i in range(n)]
    rng.shuffle(labels)
    return labels


def _clause(rng: random.Random, subj: str, verb: str, obj: str, *, adv: bool = True,
            adj: bool = True, pp: bool = True) -> list[str]:
    """`det subj [adv] verb det [adj] obj [in det noun]` with the optional parts at random."""
    words = [rng.choice(_DETS), subj]
    if adv and rng.random() < 0.4:
        words.append(rng.choice(_ADVERBS))
    words += [verb, rng.choice(_DETS)]
    if adj and rng.random() < 0.5:
        words.append(rng.choice(_ADJECTIVES))
    words.append(obj)
    if pp and rng.random() < 0.4:
        words += [rng.choice(["in", "on", "with"]), rng.choice(_DETS), rng.choice(_OBJECTS)]
    return words


def _pick_other(rng: random.Random, options: Sequence[str], avoid: str) -> str:
    return rng.choice([o for o in options if o != avoid])


def _sst2_rows(rng: random.Random, n: int) -> list[list[str]]:
    rows = [["sentence", "label"]]
    for y in _balanced_labels(rng, n, 2):
        pol = _GOOD if y else _BAD
        p1, p2 = rng.choice(pol), rng.choice(pol)
        det, noun, be, adv = (rng.choice(_DETS), rng.choice(_OBJECTS), rng.choice(["is", "was"]),
                              rng.choice(_ADVERBS))
        template = rng.randrange(4)
        if template == 0:
            words = [det, adv, p1, noun, be, p2]
        elif template == 1:
            words = [det, noun, be, adv, p1, "and", p2]
        elif template == 2:
            words = ["it", be, "a", p1, noun, "with", "a", p2, rng.choice(_OBJECTS)]
        else:
            words = [det, noun, be, p1]
        # Real SST-2 sentences are lower-cased, pre-tokenized and end with a space.
        rows.append([" ".join(words) + " ", str(y)])
    return rows


_COLA_SOURCES = ["gj04", "bc01", "ks08", "l-93", "r-67", "sks13", "w_80", "c-05"]


def _cola_rows(rng: random.Random, n: int) -> list[list[str]]:
    rows = []  # CoLA has no header line.
    for y in _balanced_labels(rng, n, 2):
        v3, bare = rng.choice(_VERBS)
        words = _clause(rng, rng.choice(_SUBJECTS), v3, rng.choice(_OBJECTS))
        if not y:  # agreement error (singular subject, bare verb), half also scrambled
            words[words.index(v3)] = bare
            if rng.random() < 0.5:
                original = list(words)
                while words == original or words[0] in _DETS:
                    rng.shuffle(words)
        sentence = " ".join(words) + "."
        rows.append([rng.choice(_COLA_SOURCES), str(y), "" if y else "*",
                     sentence[0].upper() + sentence[1:]])
    return rows


# Word overlap alone decides MRPC/QNLI labels, which a 2-layer, 32-wide model does not learn
# from a few dozen examples; so most negative pairs also carry a marker word.
_PAIR_CUE_RATE = 0.8


def _mrpc_rows(rng: random.Random, n: int) -> list[list[str]]:
    rows = [["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]]
    for y in _balanced_labels(rng, n, 2):
        subj, (v3, _), obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        s1 = _clause(rng, subj, v3, obj)
        if y:  # paraphrase: same content words, different determiners/adverbs
            s2 = [rng.choice(_DETS) if w in _DETS else w for w in s1 if w not in _ADVERBS]
            if rng.random() < 0.5:
                s2.insert(2, rng.choice(_ADVERBS))
            if rng.random() < 0.3:
                s2 += ["also"]
        else:  # a different event: subject, verb and object all change
            s2 = _clause(rng, _pick_other(rng, _SUBJECTS, subj),
                         _pick_other(rng, [v for v, _ in _VERBS], v3),
                         _pick_other(rng, _OBJECTS, obj))
            if rng.random() < _PAIR_CUE_RATE:  # a lexical cue a tiny model picks up fast
                s2.append(rng.choice(["yesterday", "today"]))
        ids = [str(rng.randrange(10_000, 4_000_000)) for _ in range(2)]
        rows.append([str(y), *ids, " ".join(s1) + " .", " ".join(s2) + " ."])
    return rows


def _qnli_rows(rng: random.Random, n: int) -> list[list[str]]:
    rows = [["index", "question", "sentence", "label"]]
    for i, y in enumerate(_balanced_labels(rng, n, 2)):
        subj, (v3, bare), obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        if rng.random() < 0.5:
            question = f"what does the {subj} {bare} ?"
        else:
            question = f"who {v3} the {obj} ?"
        if y == 0:  # entailment: the sentence answers the question
            sentence = _clause(rng, subj, v3, obj)
        else:  # not_entailment: a sentence about something else
            sentence = _clause(rng, _pick_other(rng, _SUBJECTS, subj),
                               _pick_other(rng, [v for v, _ in _VERBS], v3),
                               _pick_other(rng, _OBJECTS, obj))
            if rng.random() < _PAIR_CUE_RATE:  # a lexical cue a tiny model picks up fast
                sentence.insert(2, "instead")
        label = ("entailment", "not_entailment")[y]
        rows.append([str(i), question, " ".join(sentence) + " .", label])
    return rows


_MNLI_LABELS = ("entailment", "neutral", "contradiction")
_MNLI_GENRES = ["fiction", "government", "slate", "telephone", "travel"]
# dev_mismatched.tsv: genres that train.tsv does not have
_MNLI_MM_GENRES = ["facetoface", "letters", "nineeleven", "oup", "verbatim"]


def _binary_parse(words: list[str]) -> str:
    """Right-branching bracketing in the style of MNLI's `*_binary_parse` columns."""
    if len(words) == 1:
        return words[0]
    return f"( {words[0]} {_binary_parse(words[1:])} )"


def _parse(words: list[str]) -> str:
    """Flat Penn-style tree in the style of MNLI's `*_parse` columns."""
    verbs = {v for pair in _VERBS for v in pair}

    def tag(w: str) -> str:
        if w in _DETS:
            return "DT"
        if w in verbs:
            return "VBZ"
        if w in _ADJECTIVES:
            return "JJ"
        if w in _PUNCTUATION:
            return w
        return "NN" if w in _NOUNS else "RB"

    return "(ROOT (S " + " ".join(f"({tag(w)} {w})" for w in words) + "))"


def _mnli_rows(rng: random.Random, n: int, dev: bool,
               genres: Sequence[str] = _MNLI_GENRES) -> list[list[str]]:
    # the dev files carry five annotator labels; train.tsv only label1. gold_label is last.
    label_cols = ["label1", "label2", "label3", "label4", "label5"] if dev else ["label1"]
    rows = [["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
             "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
             "sentence2", *label_cols, "gold_label"]]
    for i, y in enumerate(_balanced_labels(rng, n, 3)):
        subj, (v3, bare), obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        premise = _clause(rng, subj, v3, obj, adv=False) + ["."]
        det1, det2 = rng.choice(_DETS), rng.choice(_DETS)
        if y == 0:  # entailment: a sub-statement of the premise
            hyp = [det1, subj, v3, det2, obj]
        elif y == 1:  # neutral: adds information the premise does not give
            if rng.random() < 0.5:
                hyp = [det1, subj, rng.choice(["often", "later"]), v3, det2, obj]
            else:
                hyp = [det1, subj, v3, det2, obj, rng.choice(["yesterday", "today"])]
            if rng.random() < 0.3:
                hyp += ["because", "it", "is", rng.choice(_ADJECTIVES)]
        else:  # contradiction: negates the premise
            form = rng.randrange(3)
            if form == 0:
                hyp = [det1, subj, "never", v3, det2, obj]
            elif form == 1:
                hyp = [det1, subj, "does", "not", bare, det2, obj]
            else:
                hyp = ["no", subj, v3, det2, obj]
        hyp = hyp + ["."]
        gold = _MNLI_LABELS[y]
        annot = [gold] * len(label_cols)
        if dev and rng.random() < 0.3:  # a dissenting annotator, as in the real dev set
            annot[rng.randrange(1, len(annot))] = rng.choice(_MNLI_LABELS)
        prompt_id = rng.randrange(10_000, 150_000)
        rows.append([str(i), str(prompt_id), f"{prompt_id}{gold[0]}", rng.choice(genres),
                     _binary_parse(premise), _binary_parse(hyp), _parse(premise), _parse(hyp),
                     " ".join(premise), " ".join(hyp), *annot, gold])
    return rows


def _capitalised(words: list[str]) -> str:
    text = " ".join(words)
    return text[0].upper() + text[1:]


def _rte_rows(rng: random.Random, n: int) -> list[list[str]]:
    rows = [["index", "sentence1", "sentence2", "label"]]
    for i, y in enumerate(_balanced_labels(rng, n, 2)):
        subj, (v3, bare), obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        s1 = _clause(rng, subj, v3, obj, pp=False) + ["."]
        det1, det2 = rng.choice(_DETS), rng.choice(_DETS)
        if y == 0:  # entailment: a sub-statement of sentence1
            s2 = [det1, subj, v3, det2, obj]
        else:  # not_entailment: negated, or about another object (most with a cue word)
            form = rng.randrange(3)
            if form == 0:
                s2 = [det1, subj, "never", v3, det2, obj]
            elif form == 1:
                s2 = [det1, subj, "does", "not", bare, det2, obj]
            else:
                s2 = [det1, subj, v3, det2, _pick_other(rng, _OBJECTS, obj)]
                if rng.random() < _PAIR_CUE_RATE:
                    s2.insert(2, "instead")
        rows.append([str(i), _capitalised(s1), _capitalised(s2 + ["."]),
                     ("entailment", "not_entailment")[y]])
    return rows


_STSB_SOURCES = [("main-captions", "MSRvid", "2012test"), ("main-news", "headlines", "2013"),
                 ("main-forums", "deft-forum", "2014")]


def _stsb_rows(rng: random.Random, n: int) -> list[list[str]]:
    """The score grows with how many of subject, verb and object the pair shares (0-3)."""
    rows = [["index", "genre", "filename", "year", "old_index", "source1", "source2",
             "sentence1", "sentence2", "score"]]
    for i, shared in enumerate(_balanced_labels(rng, n, 4)):
        subj, (v3, _), obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        s1 = _clause(rng, subj, v3, obj, pp=False) + ["."]
        keep = set(rng.sample(["subj", "verb", "obj"], shared))
        s2 = [rng.choice(_DETS),
              subj if "subj" in keep else _pick_other(rng, _SUBJECTS, subj),
              v3 if "verb" in keep else _pick_other(rng, [v for v, _ in _VERBS], v3),
              rng.choice(_DETS),
              obj if "obj" in keep else _pick_other(rng, _OBJECTS, obj), "."]
        score = min(5.0, max(0.0, 5.0 * shared / 3 + rng.uniform(-0.4, 0.4)))
        genre, filename, year = rng.choice(_STSB_SOURCES)
        rows.append([str(i), genre, filename, year, f"{rng.randrange(1, 1500):04d}", "none",
                     "none", _capitalised(s1), _capitalised(s2), f"{score:.3f}"])
    return rows


def _qqp_rows(rng: random.Random, n: int) -> list[list[str]]:
    rows = [["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]]
    for y in _balanced_labels(rng, n, 2):
        subj, (v3, bare), obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        adv = [rng.choice(_ADVERBS)] if rng.random() < 0.5 else []
        other_v3, other_bare = rng.choice([v for v in _VERBS if v[0] != v3])
        if rng.random() < 0.5:  # "what does the man see?"
            q1 = ["what", "does", rng.choice(_DETS), subj, bare]
            if y:  # duplicate: the same question reworded
                q2 = ["what", "does", rng.choice(_DETS), subj, *adv, bare]
            else:
                q2 = ["what", "does", rng.choice(_DETS), _pick_other(rng, _SUBJECTS, subj),
                      other_bare]
        else:  # "who reads the book?"
            q1 = ["who", v3, rng.choice(_DETS), obj]
            if y:
                q2 = ["who", *adv, v3, rng.choice(_DETS), obj]
            else:
                q2 = ["who", other_v3, rng.choice(_DETS), _pick_other(rng, _OBJECTS, obj)]
        if not y and rng.random() < _PAIR_CUE_RATE:  # a lexical cue a tiny model picks up fast
            q2.append(rng.choice(["today", "often"]))
        qid1 = rng.randrange(1, 500_000)
        rows.append([str(rng.randrange(0, 400_000)), str(qid1), str(qid1 + 1),
                     _capitalised(q1) + "?", _capitalised(q2) + "?", str(y)])
    return rows


def _wnli_rows(rng: random.Random, n: int) -> list[list[str]]:
    """sentence1 has a pronoun ("it") for its object; sentence2 names the object (1,
    entailment) or a noun sentence1 never mentions (0)."""
    rows = [["index", "sentence1", "sentence2", "label"]]
    for i, y in enumerate(_balanced_labels(rng, n, 2)):
        subj, (v3, _), obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        be, adj = rng.choice(["is", "was"]), rng.choice(_ADJECTIVES)
        s1 = [rng.choice(_DETS), subj, v3, rng.choice(_DETS), obj, "because", "it", be, adj, "."]
        noun = obj if y else rng.choice([w for w in _NOUNS if w not in (subj, obj)])
        s2 = [rng.choice(_DETS), noun, be, adj, "."]
        rows.append([str(i), _capitalised(s1), _capitalised(s2), str(y)])
    return rows


# task -> (directory, {split file: is dev}, whether the file starts with a UTF-8 BOM)
_GLUE_LAYOUT = {
    "sst2": ("SST-2", {"train.tsv": False, "dev.tsv": True}, False),
    "cola": ("CoLA", {"train.tsv": False, "dev.tsv": True}, False),
    "mrpc": ("MRPC", {"train.tsv": False, "dev.tsv": True}, True),
    "qnli": ("QNLI", {"train.tsv": False, "dev.tsv": True}, False),
    "mnli": ("MNLI", {"train.tsv": False, "dev_matched.tsv": True}, False),
    "mnli_mm": ("MNLI", {"train.tsv": False, "dev_mismatched.tsv": True}, False),
    "rte": ("RTE", {"train.tsv": False, "dev.tsv": True}, False),
    "stsb": ("STS-B", {"train.tsv": False, "dev.tsv": True}, False),
    "qqp": ("QQP", {"train.tsv": False, "dev.tsv": True}, False),
    "wnli": ("WNLI", {"train.tsv": False, "dev.tsv": True}, False),
}
# Tasks sharing another's files draw them from its RNG, so a shared file (MNLI/train.tsv)
# is the same whichever task writes it.
_RNG_TASK = {"mnli_mm": "mnli"}


def _task_rows(task: str, rng: random.Random, n: int, dev: bool) -> list[list[str]]:
    if task == "sst2":
        return _sst2_rows(rng, n)
    if task == "cola":
        return _cola_rows(rng, n)
    if task == "mrpc":
        return _mrpc_rows(rng, n)
    if task == "qnli":
        return _qnli_rows(rng, n)
    if task == "mnli":
        return _mnli_rows(rng, n, dev)
    if task == "mnli_mm":
        return _mnli_rows(rng, n, dev, _MNLI_MM_GENRES if dev else _MNLI_GENRES)
    if task == "rte":
        return _rte_rows(rng, n)
    if task == "stsb":
        return _stsb_rows(rng, n)
    if task == "qqp":
        return _qqp_rows(rng, n)
    return _wnli_rows(rng, n)


def write_glue_fixture(
    glue_dir: Path,
    tasks: Sequence[str] = ("sst2", "cola", "mrpc"),
    n_train: int = 48,
    n_dev: int = 24,
    seed: int = 0,
) -> Path:
    """Write a miniature GLUE directory in the classic ``<TASK>/{train,dev}.tsv`` layout.

    Each file reproduces its real counterpart's quirks (SST-2's header, CoLA's missing
    header and 4 columns, MRPC's UTF-8 BOM, MNLI's parse columns with the label last,
    STS-B's 10 columns with a float score, QQP's id columns), so tests exercise the
    production reader. ``mnli_mm`` writes ``MNLI/{train,dev_mismatched}.tsv`` (train.tsv
    identical to ``mnli``'s). Each file draws from its own RNG seeded from ``seed``, so
    adding a task never changes another task's files. Returns glue_dir.
    """
    unknown = [t for t in tasks if t not in _GLUE_LAYOUT]
    if unknown:
        raise ValueError(f"unknown fixture task {unknown[0]!r}; known: {', '.join(_GLUE_LAYOUT)}")
    glue_dir = Path(glue_dir)
    for task in tasks:
        dir_name, files, bom = _GLUE_LAYOUT[task]
        (glue_dir / dir_name).mkdir(parents=True, exist_ok=True)
        for file_name, dev in files.items():
            rng = random.Random(f"reclaim-glue-fixture:{seed}:{_RNG_TASK.get(task, task)}:{file_name}")
            rows = _task_rows(task, rng, n_dev if dev else n_train, dev)
            text = "".join("\t".join(row) + "\n" for row in rows)
            with open(glue_dir / dir_name / file_name, "w", encoding="utf-8", newline="") as fh:
                fh.write(("\ufeff" if bom else "") + text)
    return glue_dir


# --------------------------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------------------------

MODEL_KINDS = ("bert", "gpt2", "t5", "llama")

# kind -> special tokens in id order (ids 0, 1, ...), keyed by their transformers role.
SPECIAL_TOKENS: dict[str, dict[str, str]] = {
    "bert": {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
             "sep_token": "[SEP]", "mask_token": "[MASK]"},
    "gpt2": {"eos_token": "<|endoftext|>", "pad_token": "<pad>", "unk_token": "<unk>"},
    "t5": {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
    "llama": {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>",
              "pad_token": "<pad>"},
}

_TINY = {"hidden": 32, "layers": 2, "heads": 2, "intermediate": 64, "positions": 256}


def _check_kind(kind: str) -> None:
    if kind not in SPECIAL_TOKENS:
        raise ValueError(f"unknown tiny model kind {kind!r}; known: {', '.join(MODEL_KINDS)}")


def build_tokenizer(kind: str) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over FIXTURE_VOCAB with the special tokens of ``kind``.

    Lower-cases, splits on any whitespace (newlines included) and isolates each punctuation
    character (``_`` counts as a word character, so ``not_entailment`` stays one token). The
    post-processor mimics the real family: BERT wraps in ``[CLS] ... [SEP]`` with segment ids,
    T5 appends ``</s>``, Llama prepends ``<s>``, GPT-2 adds nothing.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    _check_kind(kind)
    specials = SPECIAL_TOKENS[kind]
    tokens = list(specials.values()) + [w for w in FIXTURE_VOCAB if w not in specials.values()]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=specials["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"[^\w\s]"), "isolated")]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces
    if kind == "bert":
        cls, sep = specials["cls_token"], specials["sep_token"]
        tok.post_processor = TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
        )
    elif kind == "t5":
        eos = specials["eos_token"]
        tok.post_processor = TemplateProcessing(
            single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, vocab[eos])]
        )
    elif kind == "llama":
        bos = specials["bos_token"]
        tok.post_processor = TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    input_names = ["input_ids", "attention_mask"]
    if kind == "bert":
        input_names.insert(1, "token_type_ids")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_input_names=input_names,
        model_max_length=_TINY["positions"],
        **specials,
    )


def _build_model(kind: str, tok: PreTrainedTokenizerFast):  # -> transformers.PreTrainedModel
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    t, vocab_size = _TINY, len(tok)
    if kind == "bert":
        return BertForSequenceClassification(BertConfig(
            vocab_size=vocab_size, hidden_size=t["hidden"], num_hidden_layers=t["layers"],
            num_attention_heads=t["heads"], intermediate_size=t["intermediate"],
            max_position_embeddings=t["positions"], type_vocab_size=2, num_labels=2,
            pad_token_id=tok.pad_token_id,
        ))
    if kind == "gpt2":
        return GPT2LMHeadModel(GPT2Config(
            vocab_size=vocab_size, n_embd=t["hidden"], n_layer=t["layers"], n_head=t["heads"],
            n_inner=t["intermediate"], n_positions=t["positions"],
            bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ))
    if kind == "t5":
        return T5ForConditionalGeneration(T5Config(
            vocab_size=vocab_size, d_model=t["hidden"], d_kv=t["hidden"] // 4,
            d_ff=t["intermediate"], num_layers=t["layers"], num_decoder_layers=t["layers"],
            num_heads=t["heads"], relative_attention_num_buckets=8,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.pad_token_id,
        ))
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab_size, hidden_size=t["hidden"], num_hidden_layers=t["layers"],
        num_attention_heads=t["heads"], num_key_value_heads=1,
        intermediate_size=t["intermediate"], max_position_embeddings=t["positions"],
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    ))


def write_tiny_model(out_dir: Path, kind: str, seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``kind`` model and its tokenizer to ``out_dir``.

    Stands in for a Hub checkpoint: the directory reloads offline with the matching Auto
    class (bert: sequence classification with 2 labels; gpt2/llama: causal LM; t5:
    seq2seq LM). Weights depend only on ``seed``; the global torch RNG is left untouched.
    Returns out_dir.
    """
    import torch

    _check_kind(kind)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _build_model(kind, tok)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return out_dir


def write_tiny_models(root: Path, seed: int = 0) -> dict[str, Path]:
    """Write every tiny model kind under ``root/<kind>``; returns kind -> directory."""
    return {kind: write_tiny_model(Path(root) / kind, kind, seed) for kind in MODEL_KINDS}


# --------------------------------------------------------------------------------------------
# A throwaway copy of the workflow, for tests that run Snakemake (or DVC, or Slurm) for real
# --------------------------------------------------------------------------------------------

WORKFLOW_ITEMS = ("Snakefile", "params.yaml", "workflow", "src")

TINY_FRAMINGS = {"tiny-bert": ("bert", "encoder_cls"), "tiny-gpt2": ("gpt2", "causal_lm"),
                 "tiny-t5": ("t5", "seq2seq")}
# Not a fine-tuning model of the flagship claim: the compression claims' subject only.
TINY_LLAMA = {"framing": "causal_lm", "kind": "llama"}

# The compression claims on the tiny Llama (hidden 32, MLP 64, two heads sharing one KV head):
# group 16 divides every layer; a few 32-token calibration windows and evaluation windows.
TINY_LM_COMPRESSION = {"subject": "tiny-llama", "reference": "random init (test fixture)", "seeds": [0],
                       "compress": {"group_size": 16, "awq": {"n_grid": 5}},
                       "calibration": {"n_samples": 2, "seqlen": 32},
                       "evaluate": {"perplexity": {"seqlen": 32, "n_windows": 6}}, "resources": {"threads": 1}}


def copy_workflow(dest: Path, extra: Sequence[str] = ()) -> Path:
    """Copy the Snakefile, params.yaml, workflow/ and src/ (plus ``extra`` repo paths) to
    ``dest``, so a test can edit sources and params without touching the checkout."""
    import shutil

    from reclaim.config import REPO_ROOT

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for item in (*WORKFLOW_ITEMS, *extra):
        src = REPO_ROOT / item
        (dest / item).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / item)
    return dest


def tiny_claim_params(tiny_models: dict[str, Path], models: Sequence[str] = ("tiny-bert",),
                      methods: Sequence[str] = ("full_ft", "lora", "lora_ga"),
                      tasks: Sequence[str] = ("sst2", "cola", "mrpc"), seeds: Sequence[int] = (0,),
                      max_train: int = 32, max_eval: int = 16) -> dict:
    """A --configfile override: the flagship claim at smoke scale on tiny fixture models."""
    return {
        # the requested models, and tiny-gpt2 for the loss-reweighting claim's LM arms
        "models": {**{n: {"framing": TINY_FRAMINGS[n][1], "local_dir": str(tiny_models[TINY_FRAMINGS[n][0]])}
                      for n in dict.fromkeys([*models, "tiny-gpt2"])},
                   "tiny-llama": {"framing": TINY_LLAMA["framing"], "local_dir": str(tiny_models[TINY_LLAMA["kind"]])}},
        # The selection claim's pool, sized for the miniature GLUE fixture (48 train rows a task).
        "pools": {"wikitext_lm": {"builder": "wikitext_lm", "params": {"chunk_words": 12, "max_heldout_chunks": 8}},
                  "dsir_text": {"builder": "text_pool", "params": {
            "hidden": "sst2/train", "glue": ["cola/train", "mrpc/train"], "wikitext_splits": ["valid", "test"],
            "chunk_words": 8, "target_size": 8, "heldout_size": 6}},
            # Data Shapley's flipped-label pool from the fixture's 48 train / 24 dev SST-2 rows
            "shapley_sst2_300": {"builder": "flipped_labels", "params": {
                "task": "sst2", "pool_size": 24, "flip_fraction": 0.25, "target_size": 12, "seed": 0}},
            # TAROT's multimodal mixture, sized for the fixture (48 train, 24 dev rows a task)
            "tarot_mixture": {"builder": "glue_mixture", "params": {
                "candidates": {"sst2/train": 40, "cola/train": 40, "mrpc/train": 40},
                "mixture": {"sst2/dev": 0.6, "cola/dev": 0.3, "mrpc/dev": 0.1},
                "target_size": 10, "heldout_size": 12}}},
        # fewer k-means prototypes than the fixture's smallest training subsample; a few TMC
        # permutations
        "selectors": {"prototypes": {"selector": "prototypes", "params": {"clusters": 4, "seed": 0}},
                      "tmc_shapley": {"selector": "tmc_shapley", "params": {"max_iterations": 3, "window": 2}}},
        "claims": {
            "lora_ga_glue": {
                "methods": list(methods),
                "scales": {"smoke": {
                    "models": list(models), "tasks": list(tasks), "seeds": list(seeds),
                    "max_train_examples": max_train, "max_eval_examples": max_eval,
                    "train": {"batch_size": 8, "lr": 2.0e-3, "max_length": 64},
                    "resources": {"threads": 1},
                }},
            },
            # the DSIR claim's downstream arms (pretrain on the selection, fine-tune) on the first
            # tiny model and task, one seed
            "dsir_glue": {"scales": {"smoke": {
                "models": list(models)[:1], "tasks": list(tasks)[:1],
                "seeds_by_arm": {a: [0] for a in ("random_ft", "heuristic_ft", "dsir_ft", "no_pretrain")},
                "max_train_examples": max_train, "max_eval_examples": max_eval,
                "train": {"batch_size": 8, "lr": 2.0e-3, "max_length": 64},
            }}},
            # the data-pruning claim on the first tiny model and task (its selectors score with it)
            "data_diet": {"scales": {"smoke": {
                "models": list(models)[:1], "tasks": list(tasks)[:1], "seeds": list(seeds),
                "max_train_examples": max_train, "max_eval_examples": max_eval,
                "train": {"batch_size": 8, "lr": 2.0e-3, "max_length": 64},
                "resources": {"threads": 1},
            }}},
            # TAROT: pool-based arms that embed with the first tiny model (score_with)
            "tarot": {"scales": {"smoke": {
                "score_with": {"model": list(models)[0], "task": list(tasks)[0]}, "seeds": list(seeds),
                "resources": {"threads": 1},
            }}},
            # the reweighting claim: fine-tuning arms on the first tiny model and task, with the
            # flagship's settings (so its uniform arm is the flagship's full_ft job), toy arms
            # on the same seeds
            "loss_reweighting": {"scales": {"smoke": {
                "models": list(models)[:1], "tasks": list(tasks)[:1], "seeds": list(seeds),
                "seeds_by_arm": {**{f"toy_{s}": list(seeds) for s in ("uniform", "linupper", "quadratic", "extremes")},
                                 **{f"lm_{s}": list(seeds) for s in ("uniform", "linupper", "quadratic")}},
                "score_with": {"model": "tiny-gpt2", "task": "sst2"},
                "pretrain": {"max_steps": 3, "max_length": 32, "eval_examples": 4},
                "max_train_examples": max_train, "max_eval_examples": max_eval,
                "train": {"batch_size": 8, "lr": 2.0e-3, "max_length": 64},
                "resources": {"threads": 1},
            }}},
            # compression: weight-only PTQ on the tiny Llama (the smoke arms: no W4 on a Q4 grid)
            "awq_wikitext": {"scales": {"smoke": {**TINY_LM_COMPRESSION,
                                                  "arms": ["fp", "rtn_w3", "gptq_w3", "awq_w3"]}}},
            # train -> compress -> evaluate on the first tiny model and task
            "ptq_whitepaper_glue": {"scales": {"smoke": {
                "models": list(models)[:1], "tasks": list(tasks)[:1], "seeds": list(seeds),
                "max_train_examples": max_train, "max_eval_examples": max_eval,
                "train": {"batch_size": 8, "lr": 2.0e-3, "max_length": 64},
                "calibration": {"source": "task", "n_samples": max_train, "seqlen": 32},
                "resources": {"threads": 1},
            }}},
            # zeroth-order vs first-order: fewer ZO epochs than the real smoke scale; ZO-Sign and
            # forward-grad run the ZO-SGD job's code paths with another step (tests/test_memory.py,
            # test_forward_grad.py, the per-method train and resume tests), so CI leaves them out here
            "zo_bench_sst2": {"scales": {"smoke": {
                "arms": ["fo_adam", "fo_sgd", "zo_sgd", "zo_adam",
                         "fo_adam_memory", "fo_sgd_memory", "zo_sgd_memory", "zo_adam_memory"],
                "models": list(models)[:1], "tasks": list(tasks)[:1], "seeds": list(seeds),
                "max_train_examples": max_train, "max_eval_examples": max_eval,
                "train": {"batch_size": 8, "lr": 2.0e-3, "max_length": 64},
                "probe": {"batch_size": 4, "max_length": 32},
                "resources": {"threads": 1},
            }}},
            # LISA vs LoRA: quality arms share the flagship's full_ft / lora jobs; probes at a small batch
            "lisa_glue": {"scales": {"smoke": {
                "models": list(models)[:1], "tasks": list(tasks)[:1], "seeds": list(seeds),
                "max_train_examples": max_train, "max_eval_examples": max_eval,
                "train": {"batch_size": 8, "lr": 2.0e-3, "max_length": 64},
                "probe": {"batch_size": 4, "max_length": 32},
                "resources": {"threads": 1},
            }}},
            # GaLore / Fira / FRUGAL / 8-bit AdamW: the same train runs as lisa_glue (shared
            # full_ft / lora jobs), probes at 4 x 32
            "galore_memory": {"scales": {"smoke": {
                "models": list(models)[:1], "tasks": list(tasks)[:1], "seeds": list(seeds),
                "max_train_examples": max_train, "max_eval_examples": max_eval,
                "train": {"batch_size": 8, "lr": 2.0e-3, "max_length": 64},
                "probe": {"batch_size": 4, "max_length": 32},
                "resources": {"threads": 1},
            }}},
            # the chunked-CE loss op on the tiny Llama's hidden states: 128 WikiText fixture
            # tokens in 32-token windows, vocabulary blocks of 32
            "cce_memory": {"scales": {"smoke": {
                "subject": "tiny-llama", "seeds": [0],
                "evaluate": {"loss_memory": {"n_tokens": 128, "seqlen": 32, "chunk": 32, "repeats": 1}},
                "resources": {"threads": 1},
            }}},
            # LST vs full FT and LoRA: same settings as lisa_glue, so full_ft / lora jobs are shared;
            # the random side init (same shapes, tests/test_lst.py) is left out here
            "lst_glue": {"scales": {"smoke": {
                "arms": ["full_ft", "lora", "lora_lst_matched", "lst_r8",
                         "full_ft_memory", "lora_memory", "lora_lst_matched_memory", "lst_r8_memory"],
                "models": list(models)[:1], "tasks": list(tasks)[:1], "seeds": list(seeds),
                "max_train_examples": max_train, "max_eval_examples": max_eval,
                "train": {"batch_size": 8, "lr": 2.0e-3, "max_length": 64},
                "probe": {"batch_size": 4, "max_length": 32},
                "resources": {"threads": 1},
            }}},
            # the valuation claim: its pool above, scored with the first tiny model
            "data_shapley": {"scales": {"smoke": {
                "score_with": {"model": list(models)[0], "task": "sst2"}, "seeds": [0, 1],
                "seeds_by_arm": {"random": [0, 1]}, "resources": {"threads": 1},
            }}},
        },
        "scale": "smoke",
    }


def job_env_base() -> dict[str, str]:
    """What every test workflow's jobs (and the test job server) run with: offline, no display."""
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RECLAIM_JOBSERVER", None)
    return env


_JOBSERVER: dict[str, Any] = {}


def session_jobserver() -> str | None:
    """The socket of this test process's warm job server (``reclaim serve-jobs``), started on
    first use and stopped at exit; None when ``RECLAIM_TEST_JOBSERVER=0``. Jobs reach it only
    once it listens; until then (its first ~10 s of imports) they run as plain processes."""
    import atexit
    import os
    import subprocess
    import sys
    import tempfile

    from reclaim.config import REPO_ROOT

    if os.environ.get("RECLAIM_TEST_JOBSERVER", "1") == "0":
        return None
    proc = _JOBSERVER.get("proc")
    if proc is not None and proc.poll() is None:
        return _JOBSERVER["socket"]
    root = Path(tempfile.mkdtemp(prefix="reclaim-js-"))
    sock = root / "jobs.sock"
    env = {**job_env_base(), "PYTHONPATH": str(REPO_ROOT / "src")}
    with open(root / "server.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "reclaim", "serve-jobs", "--socket", str(sock),
                                 "--exit-with", str(os.getpid())],
                                cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _JOBSERVER.update(proc=proc, socket=str(sock))

    def _stop() -> None:
        import shutil

        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(_stop)
    return str(sock)


def workflow_env(work: Path, glue_dir: Path, jobserver: bool = True) -> dict[str, str]:
    """Environment for a Snakemake run in ``work``: its own src first, offline, no display,
    GLUE from ``glue_dir`` and a WikiText fixture written under ``work/fixtures``. With
    ``jobserver``, jobs fork from the session's warm job server (:func:`session_jobserver`;
    the same commands, without importing torch each time)."""
    wikitext = write_wikitext_fixture(Path(work) / "fixtures" / "wikitext-2")
    env = {**job_env_base(), "PYTHONPATH": str(Path(work) / "src"), "GLUE_DIR": str(glue_dir),
           "WIKITEXT_DIR": str(wikitext)}
    sock = session_jobserver() if jobserver else None
    if sock:
        env["RECLAIM_JOBSERVER"] = sock
    return env


def run_snakemake(work: Path, *args: str, env: dict[str, str], configfile: str = "test_params.yaml",
                  timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """``python -m snakemake`` in ``work`` with ``--configfile`` last (it takes several files
    and would swallow a target placed after it)."""
    import subprocess
    import sys

    work = Path(work)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(work / "Snakefile"), "-d", str(work), *args]
    if configfile:
        cmd += ["--configfile", str(work / configfile)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


_WIKI_TOPICS = ("river", "castle", "album", "storm", "railway", "senate", "comet", "festival")


def write_wikitext_fixture(out_dir: Path, n_paragraphs: int = 12, seed: int = 0) -> Path:
    """A miniature WikiText-2 raw directory (``valid.txt``, ``test.txt``): `` = Title = ``
    headings, blank lines and encyclopaedic-looking paragraphs with ``@-@`` and ``<unk>``,
    as in the real files, so the pool builder's heading and chunking rules are exercised."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in ("valid", "test"):
        rng = random.Random(f"reclaim-wikitext-fixture:{seed}:{split}")
        lines: list[str] = []
        for i in range(n_paragraphs):
            topic = rng.choice(_WIKI_TOPICS)
            if i % 4 == 0:
                lines += ["", f" = The {topic.capitalize()} of {rng.choice(_WIKI_TOPICS)} = ", ""]
            words = [rng.choice(_WIKI_TOPICS + ("the", "was", "in", "built", "1 @-@ 2", "<unk>", "of", "by"))
                     for _ in range(rng.randint(20, 40))]
            lines.append(" " + " ".join(words) + " . ")
        (out_dir / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_dir


def planned_jobs(out: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a ``snakemake -n`` run lists."""
    import re

    jobs = []
    for block in re.split(r"\n(?=rule \w+:)", out):
        m = re.match(r"rule (\w+):", block.strip())
        if not m:
            continue
        wc = re.search(r"wildcards: (.*)", block)
        pairs = dict(kv.split("=", 1) for kv in wc.group(1).split(", ")) if wc else {}
        jobs.append((m.group(1), pairs))
    return jobs


# --- image fixtures (reclaim.data.images) ---------------------------------------------------------


def fixture_images(n: int, shape: tuple[int, int, int], classes: int = 10, seed: int = 0):  # -> (pixels, labels)
    """(n, C, H, W) uint8 images whose class is learnable: class c lights up horizontal band
    c of the image over uniform noise; labels cycle through the classes, then are shuffled."""
    import numpy as np

    rng = np.random.default_rng(seed)
    c, h, w = shape
    labels = rng.permutation(np.arange(n) % classes).astype(np.int64)
    pixels = rng.integers(0, 96, size=(n, c, h, w)).astype(np.int64)
    band = max(1, h // classes)
    for i, y in enumerate(labels):
        pixels[i, :, y * band:(y + 1) * band, :] += 150
    return np.clip(pixels, 0, 255).astype(np.uint8), labels


def write_idx(path: Path, array, gz: bool = True) -> Path:  # array: numpy uint8
    """One IDX file (magic 0x0000 08 <rank>, big-endian uint32 dims, bytes), gzipped or raw."""
    import gzip
    import struct

    import numpy as np

    a = np.ascontiguousarray(array, dtype=np.uint8)
    raw = b"\x00\x00\x08" + bytes([a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    Path(path).write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return Path(path)


def write_fashion_mnist_fixture(out_dir: Path, n_train: int = 200, n_dev: int = 100, seed: int = 0,
                                gz: bool = True) -> Path:
    """A miniature Fashion-MNIST directory in the IDX layout of the real files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n, s in (("train", n_train, seed), ("t10k", n_dev, seed + 1)):
        pixels, labels = fixture_images(n, (1, 28, 28), seed=s)
        write_idx(out_dir / f"{prefix}-images-idx3-ubyte{suffix}", pixels[:, 0], gz)
        write_idx(out_dir / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
    return out_dir


def write_cifar10_fixture(out_dir: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """A miniature CIFAR-10 "python version" directory: data_batch_1..5 and test_batch, each a
    pickled dict with ``data`` (n, 3072) uint8 and ``labels``, as the real batches."""
    import pickle

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([*(f"data_batch_{b}" for b in range(1, 6)), "test_batch"]):
        pixels, labels = fixture_images(per_batch, (3, 32, 32), seed=seed + i)
        batch = {b"batch_label": name.encode(), b"labels": [int(y) for y in labels],
                 b"data": pixels.reshape(per_batch, -1), b"filenames": [b"x.png"] * per_batch}
        (out_dir / name).write_bytes(pickle.dumps(batch, protocol=2))
    return out_dir


# --- a tiny random Llama for the compression math tests ---------------------------------------


def tiny_llama_lm(seed: int = 0):  # -> transformers.LlamaForCausalLM
    """A 2-block random Llama (hidden 64, MLP 128, 4 query heads sharing 2 KV heads, tied
    embeddings, vocabulary 96) in eval mode; weights depend only on ``seed``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                          tie_word_embeddings=True)
        return LlamaForCausalLM(cfg).eval()


def token_windows(n: int = 3, t: int = 32, seed: int = 1, vocab: int = 96) -> list:  # list[torch.Tensor]
    """``n`` seeded random (1, t) token windows: calibration input for ``tiny_llama_lm``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (1, t), generator=g) for _ in range(n)]


def distinct_methods(methods: dict) -> list[str]:
    """One ``methods:`` entry per code path: per (adapter, training strategy, whether it writes
    the whole model). Methods that differ only in numbers (LoRA ranks, LISA's gamma, LST's
    init) run the same code, so per-method parametrized tests take one of each."""
    by_path: dict[tuple, str] = {}
    for name in sorted(methods):
        m = methods[name]
        key = (m["adapter"], (m.get("optimizer") or {}).get("name"), bool((m.get("params") or {}).get("save_model")))
        by_path.setdefault(key, name)
    return sorted(by_path.values())


def mean_module_output(model: Any, module: Any, ids: Sequence[Any]) -> Any:
    """The mean over every calibration token of ``module``'s output (float64), with ``model``
    run on each of ``ids``: what a pruning step's bias compensation must preserve."""
    import torch

    outs: list[torch.Tensor] = []
    h = module.register_forward_hook(lambda _m, _i, out: outs.append(out.reshape(-1, out.shape[-1])))
    try:
        for x in ids:
            model(input_ids=x)
    finally:
        h.remove()
    return torch.cat(outs).double().mean(dim=0)
