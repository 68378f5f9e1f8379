"""Text classification data as fixed-length token ids: a tokenizer, a vocabulary, CSV files.

Text becomes model inputs in three steps:

1. :func:`tokenize` lower-cases the text and keeps its words: runs of letters and digits, with
   inner apostrophes kept (``"Don't stop, 2x!"`` -> ``["don't", "stop", "2x"]``).
2. :meth:`Vocabulary.build` counts the words of the *training* texts only (validation and test
   texts never add words) and keeps those seen at least ``min_freq`` times, most frequent first
   (ties in alphabetical order), at most ``max_vocab`` ids in all. Id 0 is padding (``<pad>``)
   and id 1 stands for every word outside the vocabulary (``<unk>``).
3. :meth:`Vocabulary.encode` maps each text to its first ``max_len`` token ids, padded with 0
   at the end: an ``(n, max_len)`` int64 tensor.

The resulting bundle has ``modality="text"``, ``input_shape == (max_len,)``, ``vocab_size``
(the size of a model's embedding table) and ``vocabulary`` (the token of each id), which is part
of its fingerprint; :func:`encode_like` encodes new text exactly as the bundle's was.

>>> vocab = Vocabulary.build(["a cat", "a dog"], min_freq=1)
>>> vocab.tokens
('<pad>', '<unk>', 'a', 'cat', 'dog')
>>> vocab.encode(["A bird and a cat"], max_len=6).tolist()
[[2, 1, 1, 2, 3, 0]]
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ._bundle import DatasetBundle, Split, stratified_split

__all__ = [
    "PAD",
    "PAD_ID",
    "UNK",
    "UNK_ID",
    "Vocabulary",
    "encode_like",
    "from_texts",
    "load_text_csv",
    "tokenize",
]

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
TOKENIZER = "lower-case words: [^\\W_]+('[^\\W_]+)*"  # recorded with every text bundle
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-case ``text`` and return its words (letters and digits, inner apostrophes kept)."""
    return _WORD.findall(text.lower())


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Vocabulary:
    """Token ids: ``tokens[i]`` is the token of id ``i``; id 0 is padding, id 1 unknown."""

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        tokens = tuple(self.tokens)
        object.__setattr__(self, "tokens", tokens)
        if tokens[:2] != (PAD, UNK):
            raise DataError(f"a vocabulary must start with {PAD!r} and {UNK!r} (ids 0 and 1)")
        if len(set(tokens)) != len(tokens):
            raise DataError("a vocabulary must not list a token twice")

    @classmethod
    def build(
        cls, texts: Iterable[str], *, min_freq: int = 1, max_vocab: int | None = None
    ) -> Vocabulary:
        """Count the words of ``texts`` and keep the frequent ones.

        Args:
            texts: the training texts (only these: the vocabulary must not see held-out text).
            min_freq: keep words seen at least this many times.
            max_vocab: at most this many ids in all, padding and unknown included (so at most
                ``max_vocab - 2`` words), or ``None`` for no cap.
        """
        min_freq = _positive_int(min_freq, "min_freq")
        if max_vocab is not None:
            max_vocab = _positive_int(max_vocab, "max_vocab", minimum=3)
        counts = Counter(word for text in texts for word in tokenize(text))
        kept = (w for w, c in counts.items() if c >= min_freq)
        words = sorted(kept, key=lambda w: (-counts[w], w))  # most frequent first, ties A-Z
        if max_vocab is not None:
            words = words[: max_vocab - 2]
        return cls((PAD, UNK, *words))

    @classmethod
    def from_bundle(cls, bundle: DatasetBundle) -> Vocabulary:
        """The vocabulary a text bundle was encoded with."""
        if bundle.vocabulary is None:
            raise DataError(
                f"{bundle.name} carries no vocabulary (it is not a text bundle); load text with "
                f"'text_csv' or '20newsgroups', or build one with Vocabulary.build"
            )
        return cls(bundle.vocabulary)

    def __len__(self) -> int:
        return len(self.tokens)

    @cached_property
    def index(self) -> dict[str, int]:
        """Token -> id."""
        return {t: i for i, t in enumerate(self.tokens)}

    def ids(self, text: str) -> list[int]:
        """The ids of all of ``text``'s words (unknown words as :data:`UNK_ID`), untruncated."""
        index = self.index
        return [index.get(word, UNK_ID) for word in tokenize(text)]

    def encode(self, texts: Sequence[str], *, max_len: int) -> torch.Tensor:
        """Encode texts as an ``(n, max_len)`` int64 tensor: the first ``max_len`` ids of each,
        padded with :data:`PAD_ID`."""
        return self._encode(texts, max_len)[0]

    def _encode(self, texts: Sequence[str], max_len: int) -> tuple[torch.Tensor, dict[str, int]]:
        max_len = _positive_int(max_len, "max_len")
        out = np.zeros((len(texts), max_len), dtype=np.int64)
        stats = {"texts": len(texts), "truncated": 0, "tokens": 0, "unknown": 0}
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise DataError(f"text {row} is a {type(text).__name__}, not a string")
            ids = self.ids(text)
            stats["tokens"] += len(ids)
            stats["unknown"] += ids.count(UNK_ID)
            stats["truncated"] += len(ids) > max_len
            ids = ids[:max_len]
            out[row, : len(ids)] = ids
        return torch.from_numpy(out), stats

    def decode(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        """The tokens of ``ids``, padding dropped."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return [self.tokens[int(i)] for i in values if int(i) != PAD_ID]


def encode_like(bundle: DatasetBundle, texts: Sequence[str]) -> torch.Tensor:
    """Encode new texts exactly as ``bundle``'s inputs were (its vocabulary and ``max_len``)."""
    vocab = Vocabulary.from_bundle(bundle)
    return vocab.encode(texts, max_len=bundle.input_shape[0])


def from_texts(
    train_texts: Sequence[str],
    y_train: Any,
    test_texts: Sequence[str],
    y_test: Any,
    *,
    val_texts: Sequence[str] | None = None,
    y_val: Any = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    min_freq: int = 1,
    max_vocab: int | None = None,
    max_len: int = 256,
    name: str = "text",
    split_info: dict[str, Any] | None = None,
) -> DatasetBundle:
    """Build a text bundle from texts and integer labels ``0..K-1``.

    The vocabulary is built from ``train_texts`` only; every split is encoded with it. The
    ``split_info`` records the tokenizer, the vocabulary options and, per split, how many texts
    were truncated and what fraction of their words fell outside the vocabulary.

    Raises:
        DataError: mismatched lengths, an empty train or test split, labels outside
            ``0..K-1``, fewer than 2 classes, or a bad vocabulary option.
    """
    if (val_texts is None) != (y_val is None):
        raise DataError("give both val_texts and y_val, or neither")
    groups = {"train": (train_texts, y_train)}
    if val_texts is not None and len(val_texts):
        groups["val"] = (val_texts, y_val)
    groups["test"] = (test_texts, y_test)
    labels = {}
    for key, (texts, y) in groups.items():
        arr = np.asarray(y)
        if arr.ndim != 1 or len(arr) != len(texts) or (len(arr) and arr.dtype.kind not in "iu"):
            raise DataError(f"y_{key} must be {len(texts)} integer labels, one per text")
        if key != "val" and not len(texts):
            raise DataError(f"the {key} split holds no texts")
        labels[key] = arr.astype(np.int64)
    k = num_classes
    if k is None:
        k = len(class_names) if class_names is not None else int(labels["train"].max()) + 1
    vocab = Vocabulary.build(train_texts, min_freq=min_freq, max_vocab=max_vocab)
    splits: dict[str, Split] = {}
    stats: dict[str, dict[str, Any]] = {}
    for key, (texts, _) in groups.items():
        x, counts = vocab._encode(texts, max_len)
        splits[key] = Split(x, torch.from_numpy(labels[key]))
        stats[key] = {
            "truncated": counts["truncated"],
            "unknown_rate": counts["unknown"] / counts["tokens"] if counts["tokens"] else 0.0,
        }
    return DatasetBundle(
        name=name,
        train=splits["train"],
        val=splits.get("val"),
        test=splits["test"],
        num_classes=k,
        input_shape=(int(max_len),),
        class_names=tuple(class_names) if class_names is not None else None,
        modality="text",
        vocabulary=vocab.tokens,
        split_info={
            **(split_info or {}),
            "tokenizer": TOKENIZER,
            "min_freq": int(min_freq),
            "max_vocab": max_vocab,
            "max_len": int(max_len),
            "vocab_size": len(vocab),
            "vocab_from": "train split",
            "sizes": {
                "train": len(splits["train"]),
                "val": len(splits["val"]) if "val" in splits else 0,
                "test": len(splits["test"]),
            },
            "encoding_stats": stats,
        },
    )


# --- CSV files ----------------------------------------------------------------------------------


def _read_csv(
    path: Path, text_column: str, label_column: str, encoding: str, delimiter: str
) -> tuple[list[str], list[str]]:
    if not path.is_file():
        raise DataError(f"no such file: {path}; pass the path of a CSV file")
    texts: list[str] = []
    labels: list[str] = []
    limit = csv.field_size_limit()
    csv.field_size_limit(1 << 30)  # long documents exceed the default 128 KiB field limit
    try:
        with path.open(newline="", encoding=encoding) as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            columns = reader.fieldnames or []
            for column in (text_column, label_column):
                if column not in columns:
                    raise DataError(
                        f"{path} has no column {column!r} (its columns: "
                        f"{', '.join(map(repr, columns)) or 'none'}); pass text_column= and "
                        f"label_column="
                    )
            for row in reader:
                text, label = row.get(text_column), row.get(label_column)
                if text is None or label is None or not label.strip():
                    raise DataError(
                        f"{path}, line {reader.line_num}: the row lacks a "
                        f"{'label' if text is not None else 'text'}; fill it in or drop the row"
                    )
                texts.append(text)
                labels.append(label.strip())
    except UnicodeDecodeError as exc:
        raise DataError(
            f"cannot decode {path} as {encoding}: {exc.reason} at byte {exc.start}; pass the "
            f"file's encoding=, e.g. encoding='latin-1'"
        ) from exc
    except csv.Error as exc:
        raise DataError(f"cannot parse {path} as CSV: {exc}; check delimiter= and quoting") from exc
    finally:
        csv.field_size_limit(limit)
    if not texts:
        raise DataError(f"{path} holds no rows; it needs a header and one row per text")
    return texts, labels


def _label_order(values: Iterable[str]) -> list[str]:
    """Distinct labels, in numeric order when every label is an integer, else sorted as text."""
    distinct = set(values)
    if all(re.fullmatch(r"[+-]?\d+", v) for v in distinct):
        as_int = {int(v) for v in distinct}
        if len(as_int) == len(distinct):  # "1" and "01" would merge: keep them as text
            return [str(v) for v in sorted(as_int)]
    return sorted(distinct)


def load_text_csv(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    test_path: str | Path | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    min_freq: int = 1,
    max_vocab: int | None = None,
    max_len: int = 256,
    encoding: str = "utf-8",
    delimiter: str = ",",
    name: str | None = None,
) -> DatasetBundle:
    """Load a CSV file of (text, label) rows as a text bundle of token ids.

    Labels are the values of ``label_column`` (surrounding spaces dropped), mapped to
    ``0..K-1`` in sorted order: numeric order when every label is an integer (``"2"`` before
    ``"10"``), alphabetical otherwise; ``bundle.class_names`` lists them. Without ``test_path``
    the rows are split into train/validation/test, stratified by label and seeded; with it, that
    file (same columns) is the test split and the validation split is carved from ``path``. The
    vocabulary comes from the training split only.

    Args:
        path: the CSV file (a header row, then one row per text).
        text_column, label_column: the columns holding the text and the label.
        test_path: an optional CSV file for the test split.
        seed: seed of the split.
        val_fraction: fraction of the training rows held out for validation, in [0, 1).
        test_fraction: fraction of the rows held out for testing when there is no
            ``test_path``, in (0, 1).
        min_freq, max_vocab: vocabulary options (:meth:`Vocabulary.build`).
        max_len: token ids per text (longer texts are truncated, shorter ones padded).
        encoding, delimiter: how to read the files.
        name: the bundle's name (default: the file's stem).

    Raises:
        DataError: a missing file or column, an empty label, undecodable text, a test file with
            labels the training file lacks, fewer than 2 labels, an empty split, or a bad option.
    """
    fractions_ok = {
        "val_fraction": (val_fraction, lambda f: 0.0 <= f < 1.0, "[0, 1)"),
        "test_fraction": (test_fraction, lambda f: 0.0 < f < 1.0, "(0, 1)"),
    }
    for what, (frac, inside, interval) in fractions_ok.items():
        number = isinstance(frac, (int, float, np.floating)) and not isinstance(frac, bool)
        if not number or not inside(float(frac)):
            raise DataError(f"{what} must lie in {interval}, got {frac!r}")
    _positive_int(max_len, "max_len")
    p = Path(path).expanduser()
    texts, raw_labels = _read_csv(p, text_column, label_column, encoding, delimiter)
    test_texts: list[str] | None = None
    test_labels: list[str] = []
    if test_path is not None:
        tp = Path(test_path).expanduser()
        test_texts, test_labels = _read_csv(tp, text_column, label_column, encoding, delimiter)
        unseen = sorted(set(test_labels) - set(raw_labels))
        if unseen:
            raise DataError(
                f"{tp} holds labels the training file lacks ({', '.join(map(repr, unseen[:5]))}); "
                f"a model cannot learn classes it never sees: add them to {p} or drop those rows"
            )
    order = _label_order(raw_labels)
    if len(order) < 2:
        raise DataError(
            f"{p}: column {label_column!r} holds one label only ({order[0]!r}); a classifier "
            f"needs at least 2 classes"
        )
    index = {label: i for i, label in enumerate(order)}
    y = np.array([index[v] for v in raw_labels], dtype=np.int64)
    if test_texts is None:
        test_share = float(test_fraction)
        val_share = (1.0 - test_share) * float(val_fraction)
        fractions = {"train": 1.0 - test_share - val_share, "val": val_share, "test": test_share}
        parts = stratified_split(y, fractions, seed)
        test_texts = [texts[i] for i in parts["test"]]
        y_test = y[parts["test"]]
        source = {"source": "CSV file", "path": str(p), "test_from": "the same file"}
    else:
        fractions = {"train": 1.0 - float(val_fraction), "val": float(val_fraction)}
        parts = (
            stratified_split(y, fractions, seed)
            if val_fraction > 0
            else {"train": np.arange(len(y)), "val": np.arange(0)}
        )
        y_test = np.array([index[v] for v in test_labels], dtype=np.int64)
        source = {"source": "CSV files", "path": str(p), "test_path": str(test_path)}
    if not len(parts["train"]) or not len(test_texts):
        empty = "training" if not len(parts["train"]) else "test"
        raise DataError(
            f"{p}: {len(texts)} rows leave the {empty} split empty with these fractions; add "
            f"rows, lower val_fraction/test_fraction, or pass test_path"
        )
    return from_texts(
        [texts[i] for i in parts["train"]],
        y[parts["train"]],
        test_texts,
        y_test,
        val_texts=[texts[i] for i in parts["val"]],
        y_val=y[parts["val"]],
        class_names=order,
        min_freq=min_freq,
        max_vocab=max_vocab,
        max_len=max_len,
        name=name or p.stem,
        split_info={
            **source,
            "seed": seed,
            "fractions": fractions,
            "stratified": True,
            "columns": {"text": text_column, "label": label_column},
        },
    )
