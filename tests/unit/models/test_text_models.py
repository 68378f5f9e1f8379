"""The text models: padding is ignored, the vocabulary comes from the bundle or the call, and
image/text mix-ups fail at build time with a message naming what fits."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import unlearnkit as uk
from unlearnkit.methods._loop import last_linear, penultimate_features
from unlearnkit.testing import TINY_VOCAB, tiny_bundle, tiny_text_bundle

from ..._helpers import one_line

TEXT = {
    "embedding_bag": {"dim": 8, "hidden": 6},
    "text_transformer": {"dim": 8, "depth": 2, "heads": 2, "mlp_dim": 16},
}


def _model(name: str, length: int = 6, seed: int = 0):
    kw = TEXT[name]
    return uk.models.build(
        name, input_shape=(length,), num_classes=3, vocab_size=20, seed=seed, **kw
    ).eval()


@pytest.mark.parametrize("name", sorted(TEXT))
def test_padding_never_changes_a_prediction(name: str) -> None:
    model = _model(name)
    short = torch.tensor([[5, 7, 9, 0], [3, 0, 0, 0]])
    longer = torch.cat([short, torch.zeros(2, 2, dtype=torch.long)], dim=1)  # more padding
    with torch.no_grad():
        out = model(short)
        assert out.shape == (2, 3)
        assert torch.allclose(model(longer), out, atol=1e-6)
        alone = model(torch.tensor([[3]]))  # the second row without any padding
    assert torch.allclose(alone, out[1:], atol=1e-6)


@pytest.mark.parametrize("name", sorted(TEXT))
def test_a_row_of_padding_only_gives_the_head_bias(name: str) -> None:
    model = _model(name)
    with torch.no_grad():
        out = model(torch.zeros(2, 6, dtype=torch.long))
    expected = model.head.bias if name == "text_transformer" else None
    assert torch.isfinite(out).all()
    if expected is not None:  # the transformer pools nothing: zero features
        assert torch.allclose(out, expected.expand(2, -1))


@pytest.mark.parametrize("name", sorted(TEXT))
def test_head_is_the_last_linear_and_features_are_captured(name: str) -> None:
    model = _model(name)
    assert last_linear(model) is model.head
    x = torch.randint(0, 20, (4, 6))
    with penultimate_features(model) as feats, torch.no_grad():
        model(x)
    assert feats[0].shape == (4, model.head.in_features)


@pytest.mark.parametrize("name", sorted(TEXT))
def test_seeding_and_reinit_reach_every_parameter(name: str) -> None:
    a, b = _model(name, seed=4), _model(name, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with torch.no_grad():
        for p in a.parameters():
            p.fill_(7.0)
    uk.models.reinit_(a, seed=1)
    assert [n for n, p in a.named_parameters() if bool((p == 7.0).all())] == []
    embedding = a.bag.weight if name == "embedding_bag" else a.embed.weight
    assert torch.equal(embedding[0], torch.zeros_like(embedding[0]))  # padding row stays 0


@pytest.mark.parametrize(
    "name, x, match",
    [
        ("embedding_bag", torch.randn(2, 6), "takes integer token ids"),
        ("text_transformer", torch.tensor([[1, 2, 25]]), "vocabulary of 20 ids"),
        ("embedding_bag", torch.tensor([[1, 2, 25]]), "vocabulary of 20 ids"),
        ("text_transformer", torch.ones(2, 7, dtype=torch.long), "at most 6 tokens, got 7"),
        ("text_transformer", torch.ones(2, 2, 3, dtype=torch.long), "shape \\(N, L\\)"),
    ],
)
def test_bad_token_inputs_are_named_by_the_model(name: str, x: torch.Tensor, match: str) -> None:
    one_line(uk.DataError, _model(name), x, match=match)


def test_vocab_size_from_the_bundle_or_the_call() -> None:
    bundle = tiny_text_bundle()
    assert bundle.vocab_size == TINY_VOCAB and bundle.modality == "text"
    model = uk.models.build("text_transformer", bundle, dim=8, heads=2, mlp_dim=8)
    assert model.embed.num_embeddings == TINY_VOCAB
    factory = uk.models.ModelFactory.for_bundle("embedding_bag", bundle, dim=4)
    assert factory.kwargs["vocab_size"] == TINY_VOCAB
    assert factory(0).bag.num_embeddings == TINY_VOCAB
    explicit = uk.models.build("embedding_bag", bundle, vocab_size=64, dim=4)
    assert explicit.bag.num_embeddings == 64  # the call wins
    one_line(
        uk.ConfigError, uk.models.build, "embedding_bag", bundle, vocab_size=10, match="token id"
    )
    undeclared = dataclasses.replace(bundle, vocab_size=None)  # integer ids, no vocabulary
    msg = one_line(uk.ConfigError, uk.models.build, "embedding_bag", undeclared, match="vocab")
    assert "pass vocab_size=" in msg
    model = uk.models.build("embedding_bag", undeclared, vocab_size=TINY_VOCAB, dim=4)
    assert model.bag.num_embeddings == TINY_VOCAB


def test_missing_vocab_without_a_bundle() -> None:
    msg = one_line(
        uk.ConfigError,
        uk.models.build,
        "text_transformer",
        input_shape=(12,),
        num_classes=3,
        match="needs vocab_size",
    )
    assert "pass vocab_size=" in msg


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny", "mlp", "cnn_small"])
def test_image_or_vector_models_refuse_token_data(name: str) -> None:
    msg = one_line(uk.ConfigError, uk.models.build, name, tiny_text_bundle(), match="token ids")
    assert "embedding_bag or text_transformer" in msg


def test_text_models_refuse_images_and_float_features() -> None:
    msg = one_line(
        uk.ConfigError,
        uk.models.build,
        "text_transformer",
        tiny_bundle(shape=(3, 8, 8)),
        vocab_size=10,
        match="holds images",
    )
    assert "resnet18" in msg
    msg = one_line(
        uk.ConfigError, uk.models.build, "embedding_bag", tiny_bundle(image=False), match="float"
    )
    assert "mlp" in msg
    one_line(
        uk.ConfigError,
        uk.models.build,
        "embedding_bag",
        input_shape=(3, 8, 8),
        num_classes=3,
        vocab_size=10,
        match="shape \\(L,\\)",
    )


def test_text_models_learn_the_tiny_text_task() -> None:
    bundle = tiny_text_bundle()
    recipe = uk.TrainRecipe(epochs=15, batch_size=16, lr=0.1)
    model = uk.models.build("embedding_bag", bundle, vocab_size=TINY_VOCAB, dim=16)
    model = uk.train(model, bundle.train, recipe, seed=0).eval()
    with torch.no_grad():
        acc = (model(bundle.test.x).argmax(1) == bundle.test.y).float().mean()
    assert acc >= 0.8
