"""The 20 Newsgroups posts ("bydate" version) as a text bundle of token ids.

The loader reads, from ``root`` and in this order, the first of:

1. the extracted official archive: folders ``20news-bydate-train/<group>/<post>`` and
   ``20news-bydate-test/<group>/<post>``;
2. the official archive ``20news-bydate.tar.gz`` itself (read in place, nothing is extracted);
3. scikit-learn's cache ``20news-bydate_py3.pkz``, the file
   ``sklearn.datasets.fetch_20newsgroups(data_home=root)`` writes, read through that same
   function (with ``download_if_missing=False``).

Posts are decoded as latin-1 (as scikit-learn does). The groups are the classes, in sorted
order; within a split posts are ordered by group, then by file name, whatever the source, so
all three give the same bundle. With ``download=True`` and none of them present, scikit-learn's
downloader fetches the archive (it checks the archive's SHA-256 checksum) and writes its cache
into ``root``.

Security: the ``.pkz`` cache is a compressed Python pickle, and unpickling a file can run
arbitrary code; use only a cache that scikit-learn wrote on a machine you trust. The folders and
the archive hold plain text and carry no such risk.

>>> bundle = load_20newsgroups("~/data", remove=("headers", "footers", "quotes"))  # doctest: +SKIP
>>> bundle.num_classes, bundle.modality  # doctest: +SKIP
(20, 'text')
"""

from __future__ import annotations

import contextlib
import io
import re
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import DataError
from ._bundle import DatasetBundle, stratified_split
from ._download import check_split_args, resolve_root
from .text import from_texts

__all__ = ["load_20newsgroups"]

_SPLITS = {"train": "20news-bydate-train", "test": "20news-bydate-test"}
_ARCHIVE = "20news-bydate.tar.gz"
_CACHE = "20news-bydate_py3.pkz"  # scikit-learn's cache name (its "_py3" suffix included)
_REMOVABLE = ("headers", "footers", "quotes")

# one post: (group, file name, text)
_Post = tuple[str, str, str]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _sorted(posts: list[_Post]) -> list[_Post]:
    return sorted(posts, key=lambda p: (p[0], p[1]))


def _from_folders(root: Path) -> dict[str, list[_Post]]:
    out: dict[str, list[_Post]] = {}
    for split, folder in _SPLITS.items():
        posts: list[_Post] = []
        for group in sorted(p for p in (root / folder).iterdir() if p.is_dir()):
            for post in sorted(p for p in group.iterdir() if p.is_file()):
                try:
                    text = post.read_bytes().decode("latin-1")
                except OSError as exc:
                    raise DataError(
                        f"cannot read {post}: {_first_line(exc)}; check its permissions"
                    ) from exc
                posts.append((group.name, post.name, text))
        out[split] = posts
    return out


def _from_archive(archive: Path) -> dict[str, list[_Post]]:
    """Posts read straight from the archive's members (regular files only; nothing written)."""
    out: dict[str, list[_Post]] = {split: [] for split in _SPLITS}
    by_folder = {folder: split for split, folder in _SPLITS.items()}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = [p for p in PurePosixPath(member.name).parts if p != "."]
                if not member.isfile() or len(parts) != 3 or parts[0] not in by_folder:
                    continue
                f = tar.extractfile(member)
                text = f.read().decode("latin-1") if f is not None else ""
                out[by_folder[parts[0]]].append((parts[1], parts[2], text))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(
            f"cannot read {archive}: {_first_line(exc)}; the archive is corrupt or truncated; "
            f"delete it and place the official one there (or pass download=True)"
        ) from exc
    for split, folder in _SPLITS.items():
        if not out[split]:
            raise DataError(
                f"{archive} holds no posts under {folder}/<group>/; it is not the official "
                f"20news-bydate archive"
            )
    return out


def _from_cache(root: Path) -> dict[str, list[_Post]]:
    """Posts from scikit-learn's cache, read by scikit-learn's own loader."""
    from sklearn.datasets import fetch_20newsgroups

    out: dict[str, list[_Post]] = {}
    for split in _SPLITS:
        printed = io.StringIO()  # scikit-learn prints why a cache failed to load
        try:
            with contextlib.redirect_stdout(printed):
                bunch = fetch_20newsgroups(
                    data_home=str(root), subset=split, shuffle=False, download_if_missing=False
                )
            names = list(bunch.target_names)
            out[split] = [
                (names[int(t)], re.split(r"[\\/]", str(f))[-1], str(text))
                for t, f, text in zip(bunch.target, bunch.filenames, bunch.data, strict=True)
            ]
        except Exception as exc:  # noqa: BLE001 - any unreadable cache is a data error
            lines = [ln for ln in printed.getvalue().splitlines() if ln.strip("_ ")]
            why = lines[-1] if lines else _first_line(exc)
            raise DataError(
                f"cannot read {root / _CACHE} as scikit-learn's 20 newsgroups cache: {why}; "
                f"delete it and pass download=True, or place the official {_ARCHIVE} in {root}"
            ) from exc
    return out


def _download(root: Path) -> None:
    """Let scikit-learn download the archive (SHA-256 checked) and write its cache in ``root``."""
    from sklearn.datasets import _twenty_newsgroups as sk_news

    url = getattr(getattr(sk_news, "ARCHIVE", None), "url", "scikit-learn's mirror")
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            sk_news.fetch_20newsgroups(
                data_home=str(root), subset="train", shuffle=False, download_if_missing=True
            )
    except Exception as exc:  # noqa: BLE001 - network, checksum or disk failures
        raise DataError(
            f"could not download the 20 newsgroups archive from {url} with scikit-learn: "
            f"{_first_line(exc)}; check the network connection and retry, or place the official "
            f"{_ARCHIVE} in {root}"
        ) from exc


def _read(root: Path, fetch: bool) -> tuple[dict[str, list[_Post]], str]:
    if all((root / folder).is_dir() for folder in _SPLITS.values()):
        return _from_folders(root), "folders"
    if (root / _ARCHIVE).is_file():
        return _from_archive(root / _ARCHIVE), _ARCHIVE
    if not (root / _CACHE).is_file() and fetch:
        _download(root)
    if (root / _CACHE).is_file():
        return _from_cache(root), _CACHE
    raise DataError(
        f"20 newsgroups: found neither the folders {_SPLITS['train']}/ and {_SPLITS['test']}/, "
        f"nor {_ARCHIVE}, nor scikit-learn's {_CACHE} in {root}; pass download=True, or place "
        f"the official archive there"
    )


def _check_remove(remove: Any) -> tuple[str, ...]:
    if isinstance(remove, str) or not isinstance(remove, (tuple, list)):
        raise DataError(
            f"remove must be a tuple of {', '.join(map(repr, _REMOVABLE))}, got {remove!r}; "
            f"e.g. remove=('headers',)"
        )
    unknown = [r for r in remove if r not in _REMOVABLE]
    if unknown:
        raise DataError(
            f"remove holds {unknown[0]!r}; it may name only {', '.join(map(repr, _REMOVABLE))}"
        )
    return tuple(r for r in _REMOVABLE if r in remove)


def _strip(texts: list[str], remove: tuple[str, ...]) -> list[str]:
    """scikit-learn's own filters, applied in its order (headers, footers, quotes)."""
    from sklearn.datasets import _twenty_newsgroups as sk_news

    filters = {
        "headers": sk_news.strip_newsgroup_header,
        "footers": sk_news.strip_newsgroup_footer,
        "quotes": sk_news.strip_newsgroup_quoting,
    }
    for kind in remove:
        texts = [filters[kind](t) for t in texts]
    return texts


def _select(
    posts: dict[str, list[_Post]], categories: Sequence[str] | None, origin: str
) -> tuple[str, ...]:
    groups = sorted({p[0] for p in posts["train"]})
    stray = sorted({p[0] for p in posts["test"]} - set(groups))
    if stray:
        raise DataError(
            f"20 newsgroups ({origin}): the test split holds groups the training split lacks "
            f"({', '.join(stray)}); the files are incomplete or not the official ones"
        )
    if categories is None:
        return tuple(groups)
    if not isinstance(categories, (list, tuple)) or not all(isinstance(c, str) for c in categories):
        raise DataError(
            f"categories must be a list of group names, got {categories!r}; e.g. "
            f"categories=['sci.space', 'rec.autos']"
        )
    unknown = [c for c in categories if c not in groups]
    if unknown:
        raise DataError(
            f"categories holds {unknown[0]!r}, not one of the groups: {', '.join(groups)}"
        )
    return tuple(sorted(set(categories)))


def load_20newsgroups(
    root: str | Path,
    *,
    download: bool = False,
    remove: Sequence[str] = (),
    categories: Sequence[str] | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    min_freq: int = 1,
    max_vocab: int | None = 20_000,
    max_len: int = 256,
) -> DatasetBundle:
    """Load 20 Newsgroups ("bydate": 11,314 training and 7,532 test posts) from ``root``.

    The validation split is carved from the official training posts (stratified by group,
    seeded); the official test posts are the test split. The vocabulary comes from the training
    split only (:mod:`unlearnkit.datasets.text`); inputs are ``(max_len,)`` int64 token ids.

    Args:
        root: directory holding the extracted folders, the official archive, or
            scikit-learn's cache (see the module's description).
        download: when none of those is there, download through scikit-learn
            (``fetch_20newsgroups``), which writes its cache into ``root``.
        remove: any of ``"headers"``, ``"footers"``, ``"quotes"``: strip those parts of every
            post with scikit-learn's own filters, as ``fetch_20newsgroups(remove=...)`` does.
        categories: keep only these groups (labels follow their sorted order), or ``None``.
        seed: seed of the validation split.
        val_fraction: fraction of the training posts held out for validation, in [0, 1).
        min_freq, max_vocab: vocabulary options (``max_vocab`` counts padding and unknown).
        max_len: token ids per post (longer posts are truncated, shorter ones padded).

    Raises:
        DataError: no data in ``root`` (names what was looked for and the fix), a corrupt
            archive or cache, a failed download, an unknown group or ``remove`` entry, or a bad
            option.
    """
    check_split_args(val_fraction, None, None)
    remove_t = _check_remove(remove)
    if not isinstance(download, (bool, np.bool_)):
        raise DataError(f"download must be True or False, got {download!r}")
    root_path = resolve_root(root)
    posts, origin = _read(root_path, bool(download))
    groups = _select(posts, categories, origin)
    if len(groups) < 2:
        raise DataError(
            f"20 newsgroups: only {list(groups)} kept; a classifier needs 2 or more groups"
        )
    index = {g: i for i, g in enumerate(groups)}
    kept = {split: _sorted([p for p in ps if p[0] in index]) for split, ps in posts.items()}
    texts = {split: _strip([p[2] for p in ps], remove_t) for split, ps in kept.items()}
    labels = {
        split: np.array([index[p[0]] for p in ps], dtype=np.int64) for split, ps in kept.items()
    }
    v = float(val_fraction)
    y = labels["train"]
    parts = (
        stratified_split(y, {"train": 1.0 - v, "val": v}, seed)
        if v > 0
        else {"train": np.arange(len(y)), "val": np.arange(0)}
    )
    if not len(parts["train"]) or not len(labels["test"]):
        raise DataError(
            f"20 newsgroups: an empty training or test split ({origin}); lower val_fraction "
            f"or keep more groups"
        )
    train_texts = texts["train"]
    return from_texts(
        [train_texts[i] for i in parts["train"]],
        y[parts["train"]],
        texts["test"],
        labels["test"],
        val_texts=[train_texts[i] for i in parts["val"]],
        y_val=y[parts["val"]],
        class_names=groups,
        min_freq=min_freq,
        max_vocab=max_vocab,
        max_len=max_len,
        name="20newsgroups",
        split_info={
            "source": f"20 newsgroups bydate ({origin})",
            "root": str(root_path),
            "seed": seed,
            "fractions": {"train": 1.0 - v, "val": v},
            "val_from": "official train split",
            "stratified": True,
            "remove": list(remove_t),
            "categories": None if categories is None else list(groups),
            "official_sizes": {split: len(ps) for split, ps in posts.items()},
        },
    )
