"""The 20 Newsgroups loader, on a tiny archive in the official layout and scikit-learn's cache.

The archive holds ``20news-bydate-train/<group>/<post>`` and ``20news-bydate-test/...`` with
latin-1 posts (headers, a quoted reply, a signature). scikit-learn's cache is written the way
``fetch_20newsgroups`` writes it (``load_files`` of both folders, pickled, zlib-compressed), and
once by scikit-learn's own download code with its network call replaced. No test touches the
network.
"""

from __future__ import annotations

import codecs
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import _twenty_newsgroups as sk_news
from sklearn.datasets import fetch_20newsgroups, load_files

import unlearnkit as uk
from unlearnkit.datasets import text
from unlearnkit.errors import DataError

GROUPS = ("sci.space", "alt.atheism", "comp.graphics")  # written unsorted on purpose
NAMES = {"train": ("9", "10", "51234", "51240"), "test": ("9", "10")}
ARGS = {"val_fraction": 0.25, "max_len": 64, "max_vocab": None}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)


def _post(group: str, split: str, name: str) -> bytes:
    word = group.split(".")[-1] + "word"
    body = (
        f"From: user{name}@example.com\n"
        f"Subject: Re: {group}\n"
        f"\n"
        f"In article <1@example.com> someone writes:\n"
        f"> quotedword earlier\n"
        f"{word} caf\xe9 post{name} {split}only{name}\n"
        f"\n"
        f"-- \n"
        f"sigword\n"
    )
    return body.encode("latin-1")


def _write_folders(root: Path) -> Path:
    for split, names in NAMES.items():
        for group in GROUPS:
            folder = root / f"20news-bydate-{split}" / group
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                (folder / name).write_bytes(_post(group, split, name))
    return root


def _write_archive(path: Path, source: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for split in NAMES:
            tar.add(source / f"20news-bydate-{split}", arcname=f"20news-bydate-{split}")
    return path


def _write_cache(root: Path, source: Path) -> None:
    """The cache as ``fetch_20newsgroups`` writes it after a download."""
    cache = {
        split: load_files(source / f"20news-bydate-{split}", encoding="latin1") for split in NAMES
    }
    data = codecs.encode(pickle.dumps(cache), "zlib_codec")
    (root / "20news-bydate_py3.pkz").write_bytes(data)


@pytest.fixture
def archive_root(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    root.mkdir()
    _write_archive(root / "20news-bydate.tar.gz", _write_folders(tmp_path / "src"))
    return root


def test_archive_is_read_in_place(archive_root: Path) -> None:
    b = uk.datasets.load("20newsgroups", root=archive_root, seed=0, **ARGS)
    assert [p.name for p in archive_root.iterdir()] == ["20news-bydate.tar.gz"]  # no extraction
    assert b.name == "20newsgroups" and b.modality == "text" and b.num_classes == 3
    assert b.class_names == ("alt.atheism", "comp.graphics", "sci.space")
    assert (len(b.train), len(b.val), len(b.test)) == (9, 3, 6)
    assert np.bincount(b.val.y.numpy(), minlength=3).tolist() == [1, 1, 1]  # stratified
    assert b.split_info["official_sizes"] == {"train": 12, "test": 6}
    assert b.split_info["source"] == "20 newsgroups bydate (20news-bydate.tar.gz)"
    vocab = text.Vocabulary.from_bundle(b)
    assert {"café", "from", "sigword", "quotedword", "spaceword"} <= set(vocab.tokens)
    # the test split in order: by group, then by file name (as text: "10" before "9")
    posts = [w for row in b.test.x for w in vocab.decode(row) if w.startswith("post")]
    assert posts == ["post10", "post9"] * 3
    assert b.test.y.tolist() == [0, 0, 1, 1, 2, 2]
    # labels travel with their posts; held-out posts' own words are unknown
    for row, label in zip(b.train.x, b.train.y):
        assert f"{b.class_names[int(label)].split('.')[-1]}word" in vocab.decode(row)
    assert not [t for t in vocab.tokens if t.startswith("testonly")]
    seen = {t for t in vocab.tokens if t.startswith("trainonly")}
    assert seen and seen <= {f"trainonly{n}" for n in NAMES["train"]}
    other = uk.datasets.load("20newsgroups", root=archive_root, seed=1, **ARGS)
    assert other.fingerprint != b.fingerprint and torch.equal(other.test.y, b.test.y)


def test_folders_archive_and_sklearn_cache_give_the_same_bundle(
    tmp_path: Path, archive_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from_archive = uk.datasets.load("20newsgroups", root=archive_root, **ARGS)
    from_folders = uk.datasets.load("20newsgroups", root=tmp_path / "src", **ARGS)
    cache_root = tmp_path / "cache"
    cache_root.mkdir()
    _write_cache(cache_root, tmp_path / "src")
    from_cache = uk.datasets.load("20newsgroups", root=cache_root, **ARGS)
    assert from_cache.split_info["source"] == "20 newsgroups bydate (20news-bydate_py3.pkz)"
    assert from_archive.fingerprint == from_folders.fingerprint == from_cache.fingerprint
    assert capsys.readouterr().out == ""


def test_remove_matches_scikit_learn(tmp_path: Path, archive_root: Path) -> None:
    remove = ("headers", "footers", "quotes")
    b = uk.datasets.load("20newsgroups", root=archive_root, remove=list(remove), **ARGS)
    assert b.split_info["remove"] == list(remove)
    assert not {"from", "sigword", "quotedword", "writes"} & set(b.vocabulary)
    assert {"café", "spaceword"} <= set(b.vocabulary)
    _write_cache(tmp_path, tmp_path / "src")
    ref = fetch_20newsgroups(
        data_home=str(tmp_path), subset="test", remove=remove, download_if_missing=False
    )
    key = [(int(t), Path(f).name) for t, f in zip(ref.target, ref.filenames)]
    ordered = [ref.data[i] for i in sorted(range(len(key)), key=key.__getitem__)]
    assert torch.equal(uk.datasets.encode_like(b, ordered), b.test.x)
    headers_only = uk.datasets.load("20newsgroups", root=archive_root, remove=("headers",), **ARGS)
    assert "from" not in headers_only.vocabulary and "sigword" in headers_only.vocabulary


def test_download_goes_through_scikit_learn(
    tmp_path: Path, archive_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = archive_root / "20news-bydate.tar.gz"
    calls: list[str] = []

    def fake_fetch_remote(remote, dirname=None, n_retries=3, delay=1):
        calls.append(remote.url)
        target = Path(dirname) / remote.filename
        shutil.copyfile(served, target)
        return str(target)

    monkeypatch.setattr(sk_news, "_fetch_remote", fake_fetch_remote)
    root = tmp_path / "fresh"
    with pytest.raises(DataError, match=r"found neither the folders.*pass download=True"):
        uk.datasets.load("20newsgroups", root=root)
    b = uk.datasets.load("20newsgroups", root=root, download=True, **ARGS)
    assert calls == [sk_news.ARCHIVE.url]
    assert [p.name for p in root.iterdir()] == ["20news-bydate_py3.pkz"]
    assert b.fingerprint == uk.datasets.load("20newsgroups", root=archive_root, **ARGS).fingerprint
    uk.datasets.load("20newsgroups", root=root, download=True)
    assert len(calls) == 1  # the cache is used, nothing is fetched again

    def offline(remote, dirname=None, n_retries=3, delay=1):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(sk_news, "_fetch_remote", offline)
    with pytest.raises(DataError) as err:
        uk.datasets.load("20newsgroups", root=tmp_path / "offline", download=True)
    msg = str(err.value)
    assert sk_news.ARCHIVE.url in msg and "place the official 20news-bydate.tar.gz" in msg
    assert "\n" not in msg


def test_categories_select_and_relabel(archive_root: Path) -> None:
    b = uk.datasets.load(
        "20newsgroups", root=archive_root, categories=["sci.space", "alt.atheism"], **ARGS
    )
    assert b.class_names == ("alt.atheism", "sci.space") and b.num_classes == 2
    assert (len(b.train) + len(b.val), len(b.test)) == (8, 4)
    assert "graphicsword" not in b.vocabulary and b.split_info["categories"] == list(b.class_names)
    with pytest.raises(DataError, match=r"categories holds 'sci\.med', not one of the groups"):
        uk.datasets.load("20newsgroups", root=archive_root, categories=["sci.med"])
    with pytest.raises(DataError, match="needs 2 or more groups"):
        uk.datasets.load("20newsgroups", root=archive_root, categories=["sci.space"])


def test_bad_files_and_options_are_named(tmp_path: Path, archive_root: Path, capsys) -> None:
    archive = archive_root / "20news-bydate.tar.gz"
    archive.write_bytes(archive.read_bytes()[:300])
    with pytest.raises(DataError, match=r"cannot read .*20news-bydate\.tar\.gz.*corrupt"):
        uk.datasets.load("20newsgroups", root=archive_root)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "20news-bydate-train", arcname="20news-bydate-train")
    with pytest.raises(DataError, match="holds no posts under 20news-bydate-test/"):
        uk.datasets.load("20newsgroups", root=archive_root)
    cache_root = tmp_path / "cache"
    cache_root.mkdir()
    (cache_root / "20news-bydate_py3.pkz").write_bytes(b"not a zlib stream")
    with pytest.raises(
        DataError, match=r"cannot read .*20news-bydate_py3\.pkz as scikit-learn"
    ) as err:
        uk.datasets.load("20newsgroups", root=cache_root)
    assert "\n" not in str(err.value) and "delete it and pass download=True" in str(err.value)
    assert capsys.readouterr().out == ""  # scikit-learn's printout is folded into the error
    for remove, match in (("headers", "remove must be a tuple"), (("body",), "holds 'body'")):
        with pytest.raises(DataError, match=match):
            uk.datasets.load("20newsgroups", root=tmp_path / "src", remove=remove)
    shutil.rmtree(tmp_path / "src" / "20news-bydate-train" / "comp.graphics")
    with pytest.raises(DataError, match="test split holds groups the training split lacks"):
        uk.datasets.load("20newsgroups", root=tmp_path / "src")
