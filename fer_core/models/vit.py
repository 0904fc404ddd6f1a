"""Vision Transformer, configurable as in the paper's Table 2.

Patches are cut like Keras' `extract_patches(padding="VALID")`, which the paper's
implementation used: a patch size that does not divide 48 (14, say) gives
floor(48 / 14)^2 = 9 patches and ignores the last 48 mod 14 pixel rows and columns.
A class token and learnable positional embeddings (std 0.02) are added; each encoder
block is pre-norm multi-head self-attention plus a two-layer GELU MLP, both with
dropout 0.1. `kernel_init` sets the initial weights of the dense layers of the MLPs
and the head: "he_uniform", "zeros" (the paper's choice) or "trunc_normal" (ours).

stem="patch" (default, the paper's) embeds each patch with one linear map.
stem="conv" replaces it by a few 3x3 stride-2 convolutions with batch norm and ReLU and a
1x1 projection (Xiao et al. 2021, "Early convolutions help transformers see better"): the
same number of tokens and about one encoder block's compute more, but a ViT trained from
scratch on 28k small images then converges much faster and further. It needs a patch
size that is a power of two, one stride-2 conv per halving.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..classes import NUM_CLASSES


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.drop(self.attention(y, y, y, need_weights=False)[0])
        return x + self.mlp(self.norm2(x))


def conv_stem(in_channels: int, hidden_size: int, patch_size: int) -> nn.Sequential:
    """log2(patch_size) 3x3 stride-2 convs whose widths double up to hidden_size, as in Xiao et al."""
    halvings = patch_size.bit_length() - 1
    if patch_size < 2 or patch_size != 1 << halvings:
        raise ValueError(f"stem='conv' needs a patch_size that is a power of two, not {patch_size}")
    layers: list[nn.Module] = []
    channels = in_channels
    for i in reversed(range(halvings)):
        width = max(hidden_size // (2**i), 16)
        layers += [
            nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        channels = width
    return nn.Sequential(*layers, nn.Conv2d(channels, hidden_size, 1))


class ViT(nn.Module):
    def __init__(
        self,
        layers: int = 6,
        patch_size: int = 6,
        hidden_size: int = 192,
        heads: int = 6,
        mlp_dim: int = 384,
        kernel_init: str = "trunc_normal",
        dropout: float = 0.1,
        stem: str = "patch",
        image_size: int = 48,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
    ):
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by heads {heads}")
        if not 1 <= patch_size <= image_size:
            raise ValueError(f"patch_size must be 1-{image_size}")
        grid = image_size // patch_size
        if stem == "patch":
            self.patch_embed = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        elif stem == "conv":
            self.patch_embed = conv_stem(in_channels, hidden_size, patch_size)
        else:
            raise ValueError(f"unknown ViT stem {stem!r} (patch, conv)")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden_size))
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid + 1, hidden_size) * 0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[EncoderBlock(hidden_size, heads, mlp_dim, dropout) for _ in range(layers)])
        self.norm = nn.LayerNorm(hidden_size)
        self.head = nn.Linear(hidden_size, num_classes)
        self._init_dense(kernel_init)

    def _init_dense(self, kernel_init: str) -> None:
        dense = [m for b in self.blocks for m in b.mlp if isinstance(m, nn.Linear)] + [self.head]
        for m in dense:
            if kernel_init == "zeros":
                nn.init.zeros_(m.weight)
            elif kernel_init == "he_uniform":
                nn.init.kaiming_uniform_(m.weight, a=0, nonlinearity="relu")
            elif kernel_init == "trunc_normal":
                nn.init.trunc_normal_(m.weight, std=0.02)
            else:
                raise ValueError(f"unknown kernel_init {kernel_init!r} (he_uniform, zeros, trunc_normal)")
            nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if isinstance(self.patch_embed, nn.Conv2d):  # the conv stem keeps torch's defaults
            fan_in = self.patch_embed.in_channels * math.prod(self.patch_embed.kernel_size)
            nn.init.trunc_normal_(self.patch_embed.weight, std=math.sqrt(1 / fan_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # [B, patches, dim]
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = self.drop(torch.cat([cls, tokens], dim=1) + self.pos_embed)
        return self.head(self.norm(self.blocks(tokens))[:, 0])
