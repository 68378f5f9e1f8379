"""The ``image_folder`` loader: images read lazily from disk, never all in memory.

Folders (and the Tiny-ImageNet and CelebA layouts) are generated with Pillow. A read counter
patched over ``_lazy.read_image`` counts how often each file is decoded, and a wrapper over
``LazyImages._decode`` records how many rows each decode call reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import unlearnkit as uk
from unlearnkit.data import BatchLoader, DataView, concat_rows, take_rows
from unlearnkit.datasets import Split
from unlearnkit.datasets._lazy import LazyImages
from unlearnkit.datasets.image_folder import CropFlip
from unlearnkit.errors import DataError
from unlearnkit.metrics.signals import compute_signals

from ..._image_folders import Reads, count_reads

CLASSES = ("cat", "dog", "owl")


def _pixels(k: int, i: int, hw: tuple[int, int] = (8, 8)) -> np.ndarray:
    """Image i of class k: red ``40 k + i``, green the column index * 20, blue 200."""
    a = np.zeros((*hw, 3), dtype=np.uint8)
    a[..., 0] = 40 * k + i
    a[..., 1] = (20 * np.arange(hw[1], dtype=np.uint8))[None, :]
    a[..., 2] = 200
    return a


def _make_folder(root: Path, n_train: int, n_test: int, val: int = 0) -> Path:
    for split, n in (("train", n_train), ("test", n_test), ("val", val)):
        for k, c in enumerate(CLASSES):
            if n == 0:
                continue
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(_pixels(k, i)).save(root / split / c / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """75 training images (more than the divergence guard's 64-row probe), 18 test images."""
    return _make_folder(tmp_path_factory.mktemp("imgs"), n_train=25, n_test=6)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    return count_reads(monkeypatch)


# --- loading ----------------------------------------------------------------------------------


def test_loads_lazily_with_classes_and_a_seeded_stratified_val(folder, reads) -> None:
    b = uk.datasets.load("image_folder", root=folder, val_fraction=0.2, seed=3)
    assert not reads.files  # listing and statting read no image
    assert isinstance(b.train.x, LazyImages) and b.train.lazy
    assert b.class_names == CLASSES and b.num_classes == 3
    assert b.input_shape == b.image_shape == (3, 8, 8)
    assert (len(b.train), len(b.val), len(b.test)) == (60, 15, 18)
    assert torch.bincount(b.val.y).tolist() == [5, 5, 5]
    again = uk.datasets.load("image_folder", root=folder, val_fraction=0.2, seed=3)
    other = uk.datasets.load("image_folder", root=folder, val_fraction=0.2, seed=4)
    assert list(again.val.x.files) == list(b.val.x.files)
    assert list(other.val.x.files) != list(b.val.x.files)
    assert b.fingerprint == again.fingerprint != other.fingerprint
    assert isinstance(b.augment, CropFlip) and b.flip_invariant


def test_decoded_rows_are_the_images_over_255(folder) -> None:
    b = uk.datasets.load("image_folder", root=folder, val_fraction=0.0)
    first = b.train.x[0]
    assert first.shape == (3, 8, 8) and first.dtype == torch.float32
    want = torch.from_numpy(_pixels(0, 0)).permute(2, 0, 1).float() / 255
    assert torch.equal(first, want)
    last = b.test.x[-1]  # the test split's last file: owl/005
    assert torch.equal(last, torch.from_numpy(_pixels(2, 5)).permute(2, 0, 1).float() / 255)
    assert b.train.y[0] == 0 and b.test.y[-1] == 2
    norm = uk.datasets.load("image_folder", root=folder, val_fraction=0.0, normalize="imagenet")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(norm.train.x[0], (want - mean) / std)
    raw = torch.from_numpy(_pixels(0, 0)).permute(2, 0, 1).float()
    assert torch.equal(norm.normalization.to_raw(norm.train.x[:1])[0], raw)


def test_indexing_decodes_only_the_rows_asked_for(folder, reads) -> None:
    x = uk.datasets.load("image_folder", root=folder, val_fraction=0.0).train.x
    assert x[2:5].shape == (3, 3, 8, 8) and reads.max_rows == 3
    assert len(reads.files) == 3
    idx = torch.tensor([7, -1, 0])
    assert torch.equal(x[idx], torch.stack([x[7], x[74], x[0]]))
    mask = np.zeros(len(x), dtype=bool)
    mask[[1, 4]] = True
    assert torch.equal(x[mask], x[np.array([1, 4])])
    with pytest.raises(IndexError):
        x[75]
    with pytest.raises(TypeError):
        x[:, 0]
    reads.clear()
    sub = x.subset(np.array([5, 1]))
    joined = LazyImages.concat([sub, x.subset(slice(0, 2))])
    assert not reads.files  # selecting and joining rows reads nothing
    assert isinstance(take_rows(x, torch.tensor([1])), LazyImages)
    assert isinstance(concat_rows([sub, sub]), LazyImages)
    assert list(joined.files) == [x.files[5], x.files[1], x.files[0], x.files[1]]
    assert torch.equal(joined[:], x[np.array([5, 1, 0, 1])])
    with pytest.raises(DataError, match="disk-backed and in-memory"):
        concat_rows([sub, torch.zeros(1, 3, 8, 8)])


def test_val_folder_is_used_and_unknown_classes_refused(tmp_path: Path) -> None:
    root = _make_folder(tmp_path / "v", n_train=3, n_test=2, val=2)
    b = uk.datasets.load("image_folder", root=root)
    assert len(b.val) == 6 and b.split_info["val_from"] == "folder on disk"
    (root / "test" / "zebra").mkdir()
    Image.fromarray(_pixels(0, 0)).save(root / "test" / "zebra" / "z.png")
    with pytest.raises(DataError, match="zebra"):
        uk.datasets.load("image_folder", root=root)
    with pytest.raises(DataError, match="train"):
        uk.datasets.load("image_folder", root=tmp_path / "v" / "test")


def test_mixed_sizes_need_size_and_grayscale_gives_one_channel(tmp_path: Path) -> None:
    root = _make_folder(tmp_path / "m", n_train=2, n_test=1)
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(root / "train" / "dog" / "big.png")
    b = uk.datasets.load("image_folder", root=root, val_fraction=0.0)
    with pytest.raises(DataError, match=r"big.png is 10x12.*size=\(8, 8\)"):
        b.train.x[:]
    resized = uk.datasets.load("image_folder", root=root, val_fraction=0.0, size=6)
    assert resized.train.x[:].shape == (7, 3, 6, 6)
    gray = tmp_path / "g"
    for split in ("train", "test"):
        for c in ("a", "b"):
            (gray / split / c).mkdir(parents=True)
            Image.fromarray(np.full((5, 5), 9, np.uint8), "L").save(gray / split / c / "0.png")
    g = uk.datasets.load("image_folder", root=gray, val_fraction=0.0)
    assert g.input_shape == (1, 5, 5) and torch.all(g.train.x[:] == 9 / 255)


def test_fingerprint_reads_no_image_and_follows_the_files(tmp_path: Path, reads) -> None:
    root = _make_folder(tmp_path / "f", n_train=2, n_test=1)
    stat = uk.datasets.load("image_folder", root=root, val_fraction=0.0)
    content = uk.datasets.load("image_folder", root=root, val_fraction=0.0, fingerprint="content")
    fp_stat, fp_content = stat.fingerprint, content.fingerprint
    assert not reads.files and fp_stat != fp_content
    target = root / "train" / "cat" / "000.png"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes
    assert uk.datasets.load("image_folder", root=root, val_fraction=0.0).fingerprint != fp_stat
    same = uk.datasets.load("image_folder", root=root, val_fraction=0.0, fingerprint="content")
    assert same.fingerprint == fp_content
    Image.fromarray(_pixels(1, 1)).save(target)  # new bytes
    changed = uk.datasets.load("image_folder", root=root, val_fraction=0.0, fingerprint="content")
    assert changed.fingerprint != fp_content


# --- loaders, augmentation, training and evaluation --------------------------------------------


def test_loader_batches_equal_the_in_memory_ones(folder) -> None:
    b = uk.datasets.load("image_folder", root=folder, val_fraction=0.0)
    x, dense = b.train.x, b.train.x[:]
    runs = []
    for inputs, workers in ((x, 0), (dense, 0), (x, 2)):
        loader = BatchLoader(
            inputs,
            b.train.y,
            16,
            shuffle=True,
            generator=torch.Generator().manual_seed(5),
            augment=b.augment,
            num_workers=workers,
        )
        assert loader.lazy == (inputs is x)
        runs.append([(xb, yb) for _ in range(2) for xb, yb in loader])  # two epochs
    for other in runs[1:]:
        assert len(other) == len(runs[0]) == 10
        for (xa, ya), (xb, yb) in zip(runs[0], other):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    order = torch.tensor([3, 1, 2, 0])
    part = x.subset(slice(0, 4))
    got = [xb for xb, _ in BatchLoader(part, None, 3, order=order)]
    assert torch.equal(torch.cat(got), part[order])


def test_crop_flip_takes_a_window_of_the_padded_image() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    assert torch.equal(CropFlip(padding=0, flip=False)(x, torch.Generator()), x)
    fill = -7.0
    out = CropFlip(padding=2, flip=True, fill=(fill,))(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=fill)
    for n in range(2):
        windows = [padded[n, :, r : r + 4, c : c + 4] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[n], w) or torch.equal(out[n], w.flip(-1)) for w in windows)
    flips = CropFlip(padding=0, flip=True)(x.repeat(32, 1, 1, 1), torch.Generator())
    mirrored = [torch.equal(f, x[i % 2].flip(-1)) for i, f in enumerate(flips)]
    assert 0 < sum(mirrored) < 64


def test_training_on_disk_equals_training_in_memory(folder, reads) -> None:
    b = uk.datasets.load("image_folder", root=folder, val_fraction=0.0)
    recipe = uk.TrainRecipe(epochs=1, batch_size=16, lr=0.05)
    lazy_model = uk.train(uk.models.build("mlp", b), b.train, recipe, seed=1)
    assert len(reads.files) == 75 and max(reads.files.values()) <= 2  # once (two also probed)
    assert reads.max_rows == 16
    dense = Split(b.train.x[:], b.train.y)
    dense_model = uk.train(uk.models.build("mlp", b), dense, recipe, seed=1)
    for p, q in zip(lazy_model.parameters(), dense_model.parameters()):
        assert torch.equal(p, q)
    sig_lazy = compute_signals(lazy_model, b.test.x, b.test.y)
    sig_dense = compute_signals(lazy_model, b.test.x[:], b.test.y)
    assert np.array_equal(sig_lazy.logits, sig_dense.logits)


def test_views_keep_inputs_on_disk(folder, reads) -> None:
    b = uk.datasets.load("image_folder", root=folder, val_fraction=0.0, eval_batch_size=8)
    view = DataView("retain", b.train.x, b.train.y, normalization=b.normalization)
    assert view.lazy and isinstance(view.subset(np.arange(10)).x, LazyImages)
    assert not reads.files
    with pytest.raises(DataError, match="read from disk"):
        view.raw()
    sig = compute_signals(uk.models.build("mlp", b), b.train.x, b.train.y)
    assert len(sig) == 75 and reads.max_rows == 8


def test_evaluate_streams_every_split(folder, reads) -> None:
    b = uk.datasets.load("image_folder", root=folder, val_fraction=0.2, eval_batch_size=8)
    model = uk.models.build("mlp", b)
    task = uk.forget_task(b, "random", count=12, seed=0)
    assert isinstance(task.retain.x, LazyImages) and isinstance(task.forget.x, LazyImages)
    report = uk.evaluate(model, task)
    assert 0.0 <= report["acc_test"] <= 1.0
    # every file read a bounded number of times: two models (and ZRF's teacher), two test views
    assert len(reads.files) == 93 and max(reads.files.values()) <= 4
    assert reads.max_rows == 8  # never a whole split


CORE = [
    ("finetune", {}),
    ("gradient_ascent", {}),
    ("neggrad_plus", {}),
    ("scrub", {}),
    ("salun", {}),
    ("random_labels", {"schedule": "mixed"}),
    ("ssd", {"importance_batch_size": 8}),
    ("l1_sparse", {}),
    ("ugradsl", {}),
]


def test_core_methods_stream_from_disk(folder, reads) -> None:
    b = uk.datasets.load("image_folder", root=folder, val_fraction=0.0)
    recipe = uk.TrainRecipe(epochs=1, batch_size=8)
    model = uk.train(uk.models.build("mlp", b), b.train, recipe)
    task = uk.forget_task(b, "random", count=12, seed=0)
    for name, extra in CORE:
        reads.clear()
        cfg = {"epochs": 1, "batch_size": 8, **extra} if name != "ssd" else extra
        uk.unlearn(model, task, name, cfg, recipe=recipe)
        # batches (of 8 rows, or a method's own evaluation batches), and the divergence
        # guard's probe of 64 training rows; never the retain set (63 rows) decoded whole
        assert reads.rows and max(reads.rows) <= 64, (name, reads.rows)
        assert len(task.retain_idx) not in reads.rows, (name, reads.rows)


# --- Tiny-ImageNet and CelebA layouts -----------------------------------------------------------


def test_tiny_imagenet_layout(tmp_path: Path) -> None:
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01"]  # wnids.txt order is the class order
    for k, w in enumerate(wnids):
        (root / "train" / w / "images").mkdir(parents=True)
        (root / "train" / w / f"{w}_boxes.txt").write_text("ignored\n")
        for i in range(5):
            Image.fromarray(_pixels(k, i)).save(root / "train" / w / "images" / f"{w}_{i}.JPEG")
    (root / "val" / "images").mkdir(parents=True)
    lines = []
    for j in range(4):
        Image.fromarray(_pixels(j % 2, 9)).save(root / "val" / "images" / f"val_{j}.JPEG")
        lines.append(f"val_{j}.JPEG\t{wnids[j % 2]}\t0\t0\t7\t7")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("n01\tgoldfish, Carassius\nn02\ttabby, cat\n")
    b = uk.datasets.load("image_folder", root=root, layout="tiny_imagenet", val_fraction=0.2)
    assert b.name == "tiny_imagenet" and b.class_names == ("tabby", "goldfish")
    assert (len(b.train), len(b.val), len(b.test)) == (8, 2, 4)
    assert b.test.y.tolist() == [0, 1, 0, 1]
    assert b.test.x[:].shape == (4, 3, 8, 8)
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="line 1"):
        uk.datasets.load("image_folder", root=root, layout="tiny_imagenet")


def test_celeba_layout(tmp_path: Path) -> None:
    root = tmp_path / "celeba"
    images = root / "img_align_celeba" / "img_align_celeba"
    images.mkdir(parents=True)
    attr, part = ["image_id,Male,Smiling"], ["image_id,partition"]
    for i in range(9):
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(_pixels(i % 2, i)).save(images / name)
        attr.append(f"{name},{1 if i % 3 == 0 else -1},{1 if i % 2 else -1}")
        part.append(f"{name},{(0, 0, 0, 0, 0, 1, 2, 2, 2)[i]}")
    (root / "list_attr_celeba.csv").write_text("\n".join(attr) + "\n")
    (root / "list_eval_partition.csv").write_text("\n".join(part) + "\n")
    b = uk.datasets.load("image_folder", root=root, layout="celeba", attribute="Smiling", size=4)
    assert b.name == "celeba_Smiling" and b.class_names == ("not_Smiling", "Smiling")
    assert (len(b.train), len(b.val), len(b.test)) == (5, 1, 3)
    assert b.train.y.tolist() == [0, 1, 0, 1, 0] and b.test.y.tolist() == [0, 1, 0]
    assert b.train.x[:].shape == (5, 3, 4, 4)
    with pytest.raises(DataError, match="Male, Smiling"):
        uk.datasets.load("image_folder", root=root, layout="celeba", attribute="Bald")
    with pytest.raises(DataError, match="celeba"):
        uk.datasets.load("image_folder", root=root, attribute="Male")
    (images / "000009.jpg").unlink()
    with pytest.raises(DataError, match=r"000009\.jpg"):
        uk.datasets.load("image_folder", root=root, layout="celeba", attribute="Male")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layout": "coco"}, "layout"),
        ({"size": (4, 0)}, "size"),
        ({"channels": 2}, "channels"),
        ({"normalize": ((0.5,), (0.5,))}, "3 mean"),
        ({"normalize": (0.5, 0.5, 0.5)}, "normalize"),
        ({"fingerprint": "md5"}, "fingerprint"),
        ({"num_workers": -1}, "num_workers"),
        ({"val_fraction": 1.0}, "val_fraction"),
    ],
)
def test_bad_arguments(folder, kwargs, match) -> None:
    with pytest.raises(DataError, match=match):
        uk.datasets.load("image_folder", root=folder, **kwargs)
