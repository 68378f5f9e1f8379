"""The paper-scale image architectures: parameter counts, shapes, seeding, re-initialisation,
the classifier head, and the errors a user can cause."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import unlearnkit as uk
from unlearnkit.methods._loop import last_linear, penultimate_features
from unlearnkit.testing import tiny_bundle

from ..._helpers import one_line

CIFAR10 = {"input_shape": (3, 32, 32), "num_classes": 10}

# Tiny settings of each new architecture and the image size its tiny test uses.
TINY = {
    "resnet18": ({"width": 4}, (3, 8, 8)),
    "resnet50": ({"width": 4}, (3, 8, 8)),
    "vgg16_bn": ({"width": 4}, (3, 32, 32)),
    "wrn28_10": ({"depth": 10, "widen": 1}, (3, 8, 8)),
    "vit_tiny": ({"dim": 16, "depth": 2, "heads": 2, "mlp_dim": 32}, (3, 8, 8)),
    "vit_small": ({"dim": 16, "depth": 1, "heads": 4, "mlp_dim": 32}, (3, 8, 8)),
}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _tiny(name: str, seed: int = 0, num_classes: int = 5) -> nn.Module:
    kw, shape = TINY[name]
    return uk.models.build(name, input_shape=shape, num_classes=num_classes, seed=seed, **kw)


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize(
    "name, published",
    [("resnet18", 11_173_962), ("resnet50", 23_520_842), ("vgg16_bn", 14_728_266)],
)
def test_published_parameter_counts_on_cifar10(name: str, published: int) -> None:
    assert _count(uk.models.build(name, **CIFAR10)) == published


def test_imagenet_stem_adds_exactly_the_larger_first_convolution() -> None:
    cifar = _count(uk.models.build("resnet18", **CIFAR10))
    imagenet = _count(uk.models.build("resnet18", stem="imagenet", **CIFAR10))
    assert imagenet - cifar == 3 * 64 * (7 * 7 - 3 * 3)  # 7x7 instead of 3x3, no bias


def _wrn_count(depth: int, k: int, in_ch: int = 3, classes: int = 10) -> int:
    """WRN parameters by formula: bias-free convs, BN (2 per channel), linear head."""
    n = (depth - 4) // 6
    total = in_ch * 16 * 9  # stem
    prev = 16
    for width in (16 * k, 32 * k, 64 * k):
        for j in range(n):
            c_in = prev if j == 0 else width
            total += 2 * c_in + c_in * width * 9 + 2 * width + width * width * 9
            if c_in != width:
                total += c_in * width  # 1x1 shortcut
        prev = width
    return total + 2 * prev + prev * classes + classes  # final BN and head


def test_wrn28_10_parameter_count_by_formula_and_by_building() -> None:
    # stem 432; group 1: 23040 + 230400 + 2560 + BN, ...; the formula sums it block by block.
    assert _wrn_count(28, 10) == 36_479_194  # the published figure
    assert _count(uk.models.build("wrn28_10", **CIFAR10)) == _wrn_count(28, 10)
    assert _count(uk.models.build("wrn28_10", depth=10, widen=2, **CIFAR10)) == _wrn_count(10, 2)


def test_vit_parameter_counts_by_formula() -> None:
    """A 32x32 image in 4x4 patches gives 64 patches, plus the class token: 65 positions."""

    def vit(dim: int, depth: int, mlp: int, classes: int = 10) -> int:
        patch_embed = 3 * 4 * 4 * dim + dim  # conv weight + bias
        tokens = dim + 65 * dim  # class token + position table
        block = (
            2 * dim  # LayerNorm 1
            + dim * 3 * dim + 3 * dim  # fused q, k, v
            + dim * dim + dim  # output projection
            + 2 * dim  # LayerNorm 2
            + dim * mlp + mlp  # MLP in
            + mlp * dim + dim  # MLP out
        )  # fmt: skip
        return patch_embed + tokens + depth * block + 2 * dim + dim * classes + classes

    # ViT-Tiny: 9,408 + 12,672 + 12 * 444,864 + 384 + 1,930 = 5,362,762
    assert vit(192, 12, 768) == 9_408 + 12_672 + 12 * 444_864 + 384 + 1_930 == 5_362_762
    # ViT-Small: 18,816 + 25,344 + 12 * 1,774,464 + 768 + 3,850 = 21,342,346
    assert vit(384, 12, 1536) == 18_816 + 25_344 + 12 * 1_774_464 + 768 + 3_850 == 21_342_346
    assert _count(uk.models.build("vit_tiny", **CIFAR10)) == 5_362_762
    assert _count(uk.models.build("vit_small", **CIFAR10)) == 21_342_346


# ---------------------------------------------------------------- shapes, head, seeding


@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_shape_flattened_inputs_and_the_head(name: str) -> None:
    model = _tiny(name).eval()
    shape = TINY[name][1]
    x = torch.randn(3, *shape)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (3, 5)
        assert torch.allclose(model(x.flatten(1)), out)  # flattened images are reshaped
    head = last_linear(model)
    assert head is model.head and head.out_features == 5
    with penultimate_features(model) as feats, torch.no_grad():
        model(x)
    assert feats[0].shape == (3, head.in_features)


@pytest.mark.parametrize("name", sorted(TINY))
def test_seeded_build_is_deterministic_and_leaves_the_global_rng(name: str) -> None:
    state = torch.random.get_rng_state()
    a, b, c = _tiny(name, seed=1), _tiny(name, seed=1), _tiny(name, seed=2)
    assert torch.equal(state, torch.random.get_rng_state())
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["head.weight"], sc["head.weight"])


@pytest.mark.parametrize("name", sorted(TINY))
def test_reinit_reaches_every_parameter(name: str) -> None:
    model = _tiny(name)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(7.0)
    uk.models.reinit_(model, seed=3)
    stuck = [n for n, p in model.named_parameters() if bool((p == 7.0).all())]
    assert stuck == []
    again = uk.models.reinit_(_tiny(name, seed=9), seed=3)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))


def test_wrn_dropout_is_active_only_in_train_mode() -> None:
    kw = {"depth": 10, "widen": 1, "dropout": 0.5}
    model = uk.models.build("wrn28_10", input_shape=(3, 8, 8), num_classes=3, **kw)
    x = torch.randn(4, 3, 8, 8)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    first = model(x)
    assert not torch.equal(first, model(x))


def test_build_from_a_bundle_reads_its_image_shape() -> None:
    bundle = tiny_bundle(shape=(3, 8, 8))
    model = uk.models.build("resnet18", bundle, width=4)
    with torch.no_grad():
        assert model(bundle.test.x[:2]).shape == (2, bundle.num_classes)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("vgg16_bn", {"input_shape": (3, 16, 16)}, "at least 32x32"),
        ("vit_tiny", {"input_shape": (3, 30, 30)}, "patch=4 must divide"),
        ("vit_tiny", {"dim": 10, "heads": 3}, "divisible by heads"),
        ("resnet18", {"stem": "imagent"}, "stem must be one of"),
        ("resnet50", {"width": 0}, "width must be a positive integer"),
        ("wrn28_10", {"depth": 27}, "6n \\+ 4"),
        ("wrn28_10", {"dropout": 1.0}, "dropout must be a number in \\[0, 1\\)"),
        ("resnet18", {"input_shape": (64,)}, "needs image inputs"),
        ("wrn28_10", {"input_shape": (48,), "image_shape": (3, 4, 5)}, "holding the 48 values"),
        ("resnet18", {"vocab_size": 100}, "vocab_size is an option of the text models"),
        ("vit_small", {"depth": 2.5}, "depth must be a positive integer"),
        ("vgg16_bn", {"colour": "red"}, "bad arguments for model 'vgg16_bn'"),
    ],
)
def test_bad_options_raise_one_line_config_errors(name: str, kwargs: dict, match: str) -> None:
    kw = {**CIFAR10, **kwargs}
    one_line(uk.ConfigError, uk.models.build, name, match=match, **kw)


@pytest.mark.parametrize(
    "name, x, match",
    [
        ("vit_tiny", torch.randn(2, 3, 16, 16), "built for 8x8 images, got 16x16"),
        ("resnet18", torch.randn(2, 1, 8, 8), "takes images of shape \\(N, 3, H, W\\)"),
        ("resnet50", torch.randint(0, 5, (2, 3, 8, 8)), "takes floating-point images"),
        ("vgg16_bn", torch.randn(2, 3, 16, 16), "at least 32x32"),
    ],
)
def test_mismatched_inputs_are_named_by_the_model(name: str, x: torch.Tensor, match: str) -> None:
    one_line(uk.DataError, _tiny(name), x, match=match)


def test_model_names_and_kinds() -> None:
    new = {*TINY, "embedding_bag", "text_transformer"}
    assert new | {"mlp", "cnn_small"} == set(uk.models.available())
    assert {uk.models.input_kind(n) for n in TINY} == {"image"}
    assert uk.models.input_kind("text_transformer") == "tokens"
    assert uk.models.input_kind("mlp") == "vector"
    one_line(uk.ConfigError, uk.models.input_kind, "resnet19", match="unknown model")
