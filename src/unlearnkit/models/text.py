"""Two reference text classifiers over token ids: a bag of embeddings and a small transformer.

Inputs are integer token ids of shape ``(N, L)`` with ``0`` as padding (load text with
``from_arrays(..., keep_dtype=True)`` so the ids stay int64); ids run from 0 to
``vocab_size - 1``. Padding never contributes to a prediction: the bag's mean skips it, the
transformer masks it out of attention and out of its mean-pool. A row made only of padding
maps to a zero feature vector, so the head returns its bias.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import DataError
from ._common import positive_int
from .vit import Block, Positions, transformer_sizes

__all__ = ["EmbeddingBagClassifier", "TextTransformer"]


def _token_ids(x: torch.Tensor, name: str, max_len: int | None = None) -> torch.Tensor:
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise DataError(
            f"{name} takes integer token ids (N, L), got {str(x.dtype).replace('torch.', '')} "
            "inputs; load text with from_arrays(..., keep_dtype=True), or use an image or "
            "vector model for float features"
        )
    if x.dim() != 2:
        raise DataError(f"{name} takes token ids of shape (N, L), got {tuple(x.shape)}")
    if max_len is not None and x.shape[1] > max_len:
        raise DataError(
            f"{name} was built for sequences of at most {max_len} tokens, got {x.shape[1]}; "
            "build it for this data (uk.models.build(name, bundle))"
        )
    return x


def _lookup(module: nn.Module, x: torch.Tensor, name: str, vocab_size: int) -> torch.Tensor:
    """``module(x)``, with an out-of-vocabulary id reported plainly."""
    try:
        return module(x)
    except (IndexError, RuntimeError) as exc:
        text = str(exc).lower()
        if isinstance(exc, RuntimeError) and not any(w in text for w in ("idx", "index")):
            raise
        raise DataError(
            f"{name} has a vocabulary of {vocab_size} ids (0..{vocab_size - 1}) but the "
            "inputs hold ids outside it; build the model with the data's vocab_size"
        ) from exc


class EmbeddingBagClassifier(nn.Module):
    """The mean of the token embeddings (padding skipped), an optional ReLU layer, a head.

    Args:
        vocab_size: number of token ids, padding (0) included.
        num_classes: K.
        dim: embedding width.
        hidden: width of an optional ``Linear -> ReLU`` layer before the head (``None``: none).
    """

    def __init__(
        self, vocab_size: int, num_classes: int, *, dim: int = 64, hidden: int | None = None
    ):
        super().__init__()
        self.vocab_size = vocab_size
        dim = positive_int(dim, "embedding_bag dim", "dim=64")
        self.bag = nn.EmbeddingBag(vocab_size, dim, mode="mean", padding_idx=0)
        if hidden is None:
            self.hidden = nn.Identity()
            width = dim
        else:
            width = positive_int(hidden, "embedding_bag hidden", "hidden=128 (or None)")
            self.hidden = nn.Sequential(nn.Linear(dim, width), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _token_ids(x, "embedding_bag")
        return self.head(self.hidden(_lookup(self.bag, x, "embedding_bag", self.vocab_size)))


class TextTransformer(nn.Module):
    """Token and position embeddings, pre-norm transformer blocks with padding masked out,
    a final LayerNorm, the mean over non-padding tokens, and a linear head.

    Args:
        vocab_size: number of token ids, padding (0) included.
        max_len: the longest sequence accepted (rows of the position table).
        num_classes: K.
        dim, depth, heads, mlp_dim: token width, number of blocks, attention heads, MLP width.
        dropout: dropout on the residual branches (0 by default).
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        num_classes: int,
        *,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        mlp_dim: int = 256,
        dropout: float = 0.0,
    ):
        super().__init__()
        dim, depth, heads, mlp_dim, dropout = transformer_sizes(
            "text_transformer", dim, depth, heads, mlp_dim, dropout
        )
        self.vocab_size, self.max_len = vocab_size, max_len
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.positions = Positions(max_len, dim, class_token=False)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _token_ids(x, "text_transformer", self.max_len)
        keep = x != 0
        # A row of padding only would mask every key (NaN attention): let it attend to all.
        attend = keep | ~keep.any(dim=1, keepdim=True)
        h = self.positions(_lookup(self.embed, x, "text_transformer", self.vocab_size))
        for block in self.blocks:
            h = block(h, attend)
        weights = keep.unsqueeze(-1).to(h.dtype)
        pooled = (self.norm(h) * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)


def build_embedding_bag(
    input_shape: tuple[int, ...], num_classes: int, vocab_size: int, **kw: Any
) -> EmbeddingBagClassifier:
    return EmbeddingBagClassifier(vocab_size, num_classes, **kw)


def build_text_transformer(
    input_shape: tuple[int, ...], num_classes: int, vocab_size: int, **kw: Any
) -> TextTransformer:
    return TextTransformer(vocab_size, input_shape[0], num_classes, **kw)
