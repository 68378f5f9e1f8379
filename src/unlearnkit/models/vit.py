"""Vision Transformers for small images (ViT-Tiny, ViT-Small), written without torchvision.

The image is cut into ``patch x patch`` squares (4x4 by default, so a 32x32 image gives 64
patches), each projected linearly to ``dim`` features by a strided convolution. A learned class
token is prepended and a learned position table added; then ``depth`` pre-norm transformer
blocks (``x + attention(LayerNorm(x))``, ``x + MLP(LayerNorm(x))`` with a GELU MLP), a final
LayerNorm, and a linear head reading the class token.

The class token and the position table live in :class:`Positions`, which defines
``reset_parameters()``, so :func:`unlearnkit.models.reinit_` reaches them. Every weight is
initialised by its module's own ``reset_parameters()`` (PyTorch's defaults for the linear and
norm layers, a truncated normal with std 0.02 for the class token and positions), so a
re-initialised model is drawn from the same distribution as a freshly built one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._common import ImageClassifier, positive_int, unit_fraction

__all__ = ["Block", "Positions", "SelfAttention", "ViT", "vit_small", "vit_tiny"]


class Positions(nn.Module):
    """A learned position table added to the tokens, with an optional class token prepended.

    Args:
        n_tokens: the most tokens an input may have (without the class token).
        dim: the token width.
        class_token: prepend a learned class token (it gets the first position).
    """

    def __init__(self, n_tokens: int, dim: int, *, class_token: bool):
        super().__init__()
        extra = 1 if class_token else 0
        self.table = nn.Parameter(torch.empty(1, n_tokens + extra, dim))
        if class_token:
            self.cls = nn.Parameter(torch.empty(1, 1, dim))
        else:
            self.register_parameter("cls", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.table, std=0.02)
        if self.cls is not None:
            nn.init.trunc_normal_(self.cls, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.cls is not None:
            tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return tokens + self.table[:, : tokens.shape[1]]


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused query/key/value projection.

    ``keep`` (optional, ``(N, T)`` booleans) marks the tokens that may be attended to; padding
    tokens are ``False``.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        mask = None if keep is None else keep[:, None, None, :]
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """A pre-norm transformer block: attention and a GELU MLP, each on a residual branch."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), keep))
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.norm2(x)))))


def transformer_sizes(
    name: str, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float
) -> tuple[int, int, int, int, float]:
    """Validated transformer sizes (ConfigError naming the bad one)."""
    dim = positive_int(dim, f"{name} dim", "dim=192")
    depth = positive_int(depth, f"{name} depth", "depth=12")
    heads = positive_int(heads, f"{name} heads", "heads=3")
    mlp_dim = positive_int(mlp_dim, f"{name} mlp_dim", "mlp_dim=768")
    dropout = unit_fraction(dropout, "dropout")
    if dim % heads:
        raise ConfigError(f"{name}: dim={dim} must be divisible by heads={heads}")
    return dim, depth, heads, mlp_dim, dropout


class ViT(ImageClassifier):
    """A Vision Transformer classifying from its class token.

    Args:
        image_shape: ``(C, H, W)``; ``H`` and ``W`` must be multiples of ``patch``. The model
            accepts only images of this size (its position table has one row per patch).
        num_classes: K.
        patch: side of the square patches.
        dim, depth, heads, mlp_dim: token width, number of blocks, attention heads, MLP width.
        dropout: dropout on the residual branches (0 by default).
        name: the architecture's name in error messages.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_classes: int,
        *,
        patch: int = 4,
        dim: int = 192,
        depth: int = 12,
        heads: int = 3,
        mlp_dim: int = 768,
        dropout: float = 0.0,
        name: str = "vit",
    ):
        super().__init__(name, image_shape, exact_size=True)
        patch = positive_int(patch, f"{name} patch", "patch=4")
        dim, depth, heads, mlp_dim, dropout = transformer_sizes(
            name, dim, depth, heads, mlp_dim, dropout
        )
        c, h, w = self.image_shape
        if h % patch or w % patch:
            raise ConfigError(
                f"{name}: patch={patch} must divide the image height and width ({h}x{w}); "
                "pass a patch= that divides both"
            )
        self.patches = nn.Conv2d(c, dim, patch, stride=patch)
        self.positions = Positions((h // patch) * (w // patch), dim, class_token=True)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._images(x)
        tokens = self.positions(self.patches(x).flatten(2).transpose(1, 2))
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens)[:, 0])


def vit_tiny(
    image_shape: tuple[int, int, int],
    num_classes: int,
    *,
    patch: int = 4,
    dim: int = 192,
    depth: int = 12,
    heads: int = 3,
    mlp_dim: int = 768,
    dropout: float = 0.0,
) -> ViT:
    """ViT-Tiny: width 192, 12 blocks, 3 heads, MLP 768."""
    return ViT(
        image_shape,
        num_classes,
        patch=patch,
        dim=dim,
        depth=depth,
        heads=heads,
        mlp_dim=mlp_dim,
        dropout=dropout,
        name="vit_tiny",
    )


def vit_small(
    image_shape: tuple[int, int, int],
    num_classes: int,
    *,
    patch: int = 4,
    dim: int = 384,
    depth: int = 12,
    heads: int = 6,
    mlp_dim: int = 1536,
    dropout: float = 0.0,
) -> ViT:
    """ViT-Small: width 384, 12 blocks, 6 heads, MLP 1536."""
    return ViT(
        image_shape,
        num_classes,
        patch=patch,
        dim=dim,
        depth=depth,
        heads=heads,
        mlp_dim=mlp_dim,
        dropout=dropout,
        name="vit_small",
    )
