"""Text data: the tokenizer, the vocabulary, the ``text_csv`` loader and text bundles."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import unlearnkit as uk
from unlearnkit.datasets import text
from unlearnkit.datasets._bundle import tensor_digest
from unlearnkit.errors import DataError


def _write_csv(path: Path, rows: list[tuple[str, str]], header=("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _rows(n_per_class: int = 10) -> list[tuple[str, str]]:
    """Row i of class c: a shared word per class, and a word only row i has (``uniq<i>``)."""
    rows = []
    for i in range(3 * n_per_class):
        label = ("spam", "ham", "eggs")[i % 3]
        rows.append((f'The {label}word, "quoted"\nsecond line: uniq{i}', label))
    return rows


# --- tokenizer and vocabulary -------------------------------------------------------------------


def test_tokenize_lowercases_and_keeps_words() -> None:
    assert text.tokenize("Don't STOP, 2x! e-mail_me") == ["don't", "stop", "2x", "e", "mail", "me"]
    assert text.tokenize("Café  naïve\t'quoted'") == ["café", "naïve", "quoted"]
    assert text.tokenize("") == []


def test_vocabulary_frequency_order_min_freq_and_cap() -> None:
    texts = ["b a a", "c a b", "d"]
    vocab = text.Vocabulary.build(texts)
    assert vocab.tokens == ("<pad>", "<unk>", "a", "b", "c", "d")  # a:3, b:2, c/d:1 (A-Z)
    assert text.Vocabulary.build(texts, min_freq=2).tokens == ("<pad>", "<unk>", "a", "b")
    assert text.Vocabulary.build(texts, max_vocab=3).tokens == ("<pad>", "<unk>", "a")
    ids = vocab.encode(["A b zebra c a", "d"], max_len=4)
    assert ids.dtype == torch.int64 and ids.tolist() == [[2, 3, 1, 4], [5, 0, 0, 0]]
    assert vocab.decode(ids[1]) == ["d"] and vocab.decode([2, 1, 0]) == ["a", "<unk>"]
    for kwargs, match in (
        ({"min_freq": 0}, "min_freq must be an integer >= 1"),
        ({"max_vocab": 2}, "max_vocab must be an integer >= 3"),
    ):
        with pytest.raises(DataError, match=match):
            text.Vocabulary.build(texts, **kwargs)
    with pytest.raises(DataError, match="max_len must be an integer >= 1"):
        vocab.encode(["a"], max_len=0)
    with pytest.raises(DataError, match="must start with '<pad>' and '<unk>'"):
        text.Vocabulary(("a", "b"))


# --- text_csv -----------------------------------------------------------------------------------


def test_text_csv_split_labels_and_vocabulary_from_train_only(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "mails.csv", _rows())
    b = uk.datasets.load("text_csv", path=path, max_len=6, seed=0)
    assert b.name == "mails" and b.modality == "text" and b.num_classes == 3
    assert b.class_names == ("eggs", "ham", "spam")  # sorted label strings
    assert b.input_shape == (6,) and b.image_shape is None and b.normalization is None
    assert b.vocab_size == len(b.vocabulary) and b.vocabulary[:2] == ("<pad>", "<unk>")
    assert (len(b.train), len(b.val), len(b.test)) == (21, 3, 6)  # test 0.2, val 0.1 of the rest
    for split in (b.train, b.val, b.test):
        assert split.x.dtype == torch.int64 and split.x.shape[1] == 6
        assert np.bincount(split.y.numpy(), minlength=3).tolist() == [len(split) // 3] * 3
    # every row has 7 words (the, <label>word, quoted, second, line, uniq<i>): 6 kept
    assert b.split_info["encoding_stats"]["train"]["truncated"] == 0
    # the unique words of held-out rows never enter the vocabulary: they encode as <unk>
    uniq = {t for t in b.vocabulary if t.startswith("uniq")}
    assert len(uniq) == len(b.train)
    for split in (b.val, b.test):
        assert torch.all(split.x[:, 5] == text.UNK_ID)
    assert torch.all(b.train.x[:, 5] != text.UNK_ID)
    # labels travel with their texts
    vocab = text.Vocabulary.from_bundle(b)
    for row, label in zip(b.train.x, b.train.y):
        assert vocab.decode(row)[1] == f"{b.class_names[int(label)]}word"
    d = b.describe()
    assert d["modality"] == "text" and d["vocab_size"] == b.vocab_size
    assert d["split"]["tokenizer"] == text.TOKENIZER and d["split"]["vocab_from"] == "train split"


def test_text_csv_is_seeded_and_the_fingerprint_covers_the_vocabulary(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", _rows())
    a = uk.datasets.load("text_csv", path=path, seed=0)
    assert uk.datasets.load("text_csv", path=path, seed=0).fingerprint == a.fingerprint
    assert uk.datasets.load("text_csv", path=path, seed=1).fingerprint != a.fingerprint
    # same token ids, another vocabulary: another fingerprint
    renamed = ("<pad>", "<unk>", *(f"{t}!" for t in a.vocabulary[2:]))
    other = dataclasses.replace(a, vocabulary=renamed)
    assert torch.equal(other.train.x, a.train.x) and other.fingerprint != a.fingerprint
    # bundles without a vocabulary keep the content hash they always had
    plain = uk.datasets.load("synthetic", n_train=20, n_test=10, n_val=5, seed=0)
    parts = [plain.train.x, plain.train.y, plain.test.x, plain.test.y, plain.val.x, plain.val.y]
    assert plain.fingerprint == tensor_digest(*parts, extra=(plain.name, plain.num_classes))
    assert plain.describe()["vocab_size"] is None and plain.describe()["modality"] is None


def test_encode_like_re_encodes_new_text_the_same_way(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", _rows())
    b = uk.datasets.load("text_csv", path=path, max_len=4, min_freq=2)
    assert all(not t.startswith("uniq") for t in b.vocabulary)  # each seen once: dropped
    ids = uk.datasets.encode_like(b, ["SPAMWORD the quoted", "never seen"])
    vocab = text.Vocabulary.from_bundle(b)
    assert ids.shape == (2, 4) and vocab.decode(ids[0]) == ["spamword", "the", "quoted"]
    assert ids[1].tolist() == [text.UNK_ID, text.UNK_ID, 0, 0]
    with pytest.raises(DataError, match="carries no vocabulary"):
        uk.datasets.encode_like(uk.datasets.load("synthetic", n_train=20, n_test=10), ["x"])


def test_integer_labels_sort_numerically_and_test_path_is_the_test_split(tmp_path: Path) -> None:
    rows = [(f"word{i % 3} filler", ("2", "10", "1")[i % 3]) for i in range(12)]
    train = _write_csv(tmp_path / "train.csv", rows, header=("body", "stars"))
    test = _write_csv(tmp_path / "test.csv", [("word0 novel", "2"), ("x", "10")], ("body", "stars"))
    b = uk.datasets.load(
        "text_csv",
        path=train,
        test_path=test,
        text_column="body",
        label_column="stars",
        val_fraction=0.25,
        max_len=3,
    )
    assert b.class_names == ("1", "2", "10") and b.test.y.tolist() == [1, 2]
    assert (len(b.train), len(b.val), len(b.test)) == (9, 3, 2)
    assert "novel" not in b.vocabulary and b.split_info["test_path"] == str(test)
    no_val = uk.datasets.load("text_csv", path=train, test_path=test, text_column="body",
                              label_column="stars", val_fraction=0.0)  # fmt: skip
    assert no_val.val is None and len(no_val.train) == 12
    _write_csv(test, [("a", "3")], ("body", "stars"))
    with pytest.raises(DataError, match=r"test\.csv holds labels the training file lacks \('3'\)"):
        uk.datasets.load("text_csv", path=train, test_path=test, text_column="body",
                         label_column="stars")  # fmt: skip


def test_text_csv_errors_name_the_problem_and_the_fix(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", _rows())
    with pytest.raises(DataError, match=r"no column 'body' \(its columns: 'text', 'label'\)"):
        uk.datasets.load("text_csv", path=path, text_column="body")
    with pytest.raises(DataError, match="no such file"):
        uk.datasets.load("text_csv", path=tmp_path / "missing.csv")
    blank = _write_csv(tmp_path / "blank.csv", [("a", "x"), ("b", " "), ("c", "y")])
    with pytest.raises(DataError, match=r"blank\.csv, line 3: the row lacks a label"):
        uk.datasets.load("text_csv", path=blank)
    one = _write_csv(tmp_path / "one.csv", [("a", "x"), ("b", "x")])
    with pytest.raises(DataError, match=r"holds one label only \('x'\); a classifier needs"):
        uk.datasets.load("text_csv", path=one)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9,a\nthe,b\ncaf\xe9,a\nthe,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"cannot decode .*latin\.csv as utf-8.*encoding="):
        uk.datasets.load("text_csv", path=latin)
    ok = uk.datasets.load("text_csv", path=latin, encoding="latin-1", test_fraction=0.5,
                          val_fraction=0.0)  # fmt: skip
    assert ok.vocabulary == ("<pad>", "<unk>", "café", "the")
    tiny = _write_csv(tmp_path / "tiny.csv", [("a", "x"), ("b", "y")])
    with pytest.raises(DataError, match="leave the test split empty"):
        uk.datasets.load("text_csv", path=tiny)
    with pytest.raises(DataError, match=r"test_fraction must lie in \(0, 1\)"):
        uk.datasets.load("text_csv", path=path, test_fraction=0.0)


# --- text bundles -------------------------------------------------------------------------------


def test_bundle_checks_token_ids_against_the_vocabulary() -> None:
    ids = torch.tensor([[2, 3], [1, 0]])
    split = uk.datasets.Split(ids, torch.tensor([0, 1]))
    kwargs = {"name": "t", "train": split, "test": split, "num_classes": 2, "input_shape": (2,)}
    b = uk.datasets.DatasetBundle(**kwargs, vocabulary=("<pad>", "<unk>", "a", "b"))
    assert b.vocab_size == 4
    with pytest.raises(DataError, match=r"token ids span 0\.\.3, outside 0\.\.2"):
        uk.datasets.DatasetBundle(**kwargs, vocab_size=3)
    with pytest.raises(DataError, match="lists 4 tokens but vocab_size is 5"):
        uk.datasets.DatasetBundle(**kwargs, vocab_size=5, vocabulary=b.vocabulary)
    floats = uk.datasets.Split(ids.float(), torch.tensor([0, 1]))
    with pytest.raises(DataError, match="holds integer token ids; encode the text first"):
        uk.datasets.DatasetBundle(**{**kwargs, "train": floats}, vocab_size=4)


class _BagOfWords(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab_size, 8, padding_idx=text.PAD_ID)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def test_input_blending_methods_refuse_token_ids_and_others_run(tmp_path: Path) -> None:
    b = uk.datasets.load("text_csv", path=_write_csv(tmp_path / "d.csv", _rows()), max_len=6)
    model = _BagOfWords(b.vocab_size, b.num_classes)
    task = uk.forget_task(b, "random", count=3)
    for method in ("natmu", "jit", "boundary_shrink"):
        with pytest.raises(DataError, match=f"(?i){method}.*int64"):
            uk.unlearn(model, task, method)
    out = uk.unlearn(model, task, "finetune", config={"epochs": 1})
    assert out(b.test.x).shape == (len(b.test), b.num_classes)
