"""The VPM: NaViT SigLIP (transformers' Idefics2VisionTransformer math) with host-computed position ids.

Graph inputs: ``pixel_values`` [B, 3, 14, 14*L] (the official zero-padded strips), ``position_ids`` int32 [B, L]
(the official bucketed ids, edge.position_ids), ``patch_counts`` int32 [B] (keys at index >= count are masked).
Output: ``vision_embeds`` [B, L, width] after post_layernorm.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn
from torch.nn import functional as F

from ..checkpoint import VisionSpec
from .layers import Fp32LayerNorm, attend, key_padding_bias, merge_heads, split_heads


class SiglipAttention(nn.Module):
    """Multi-head self-attention with q/k/v/out projections (SigLIP key names)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (width // heads) ** -0.5
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(proj(x), self.heads) for proj in (self.q_proj, self.k_proj, self.v_proj))
        return self.out_proj(merge_heads(attend(q, k, v, key_bias, self.scale)))


class SiglipMlp(nn.Module):
    """fc1 -> gelu (tanh approximation, gelu_pytorch_tanh) -> fc2."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class SiglipLayer(nn.Module):
    """Pre-LN encoder block."""

    def __init__(self, spec: VisionSpec) -> None:
        super().__init__()
        self.layer_norm1 = Fp32LayerNorm(spec.width, eps=spec.layer_norm_eps)
        self.self_attn = SiglipAttention(spec.width, spec.heads)
        self.layer_norm2 = Fp32LayerNorm(spec.width, eps=spec.layer_norm_eps)
        self.mlp = SiglipMlp(spec.width, spec.mlp)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), key_bias)
        return x + self.mlp(self.layer_norm2(x))


class SiglipEmbeddings(nn.Module):
    """Patch convolution on the strip layout plus the learned 70x70 position table gathered by id."""

    def __init__(self, spec: VisionSpec) -> None:
        super().__init__()
        self.patch_embedding = nn.Conv2d(3, spec.width, spec.patch_size, stride=spec.patch_size)
        self.position_embedding = nn.Embedding(spec.position_grid ** 2, spec.width)

    def forward(self, pixel_values: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)  # [B, L, width]
        return patches + self.position_embedding(position_ids)


class NavitSiglipEncoder(nn.Module):
    """The VPM graph: embeddings -> encoder layers -> post_layernorm."""

    def __init__(self, spec: VisionSpec) -> None:
        super().__init__()
        self.embeddings = SiglipEmbeddings(spec)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(SiglipLayer(spec) for _ in range(spec.layers))
        self.post_layernorm = Fp32LayerNorm(spec.width, eps=spec.layer_norm_eps)

    @classmethod
    def from_tensors(cls, spec: VisionSpec, tensors: Dict[str, torch.Tensor]) -> NavitSiglipEncoder:
        """Build from the checkpoint's ``vpm.*`` tensors (strict: every parameter must be present)."""
        module = cls(spec)
        state = {name[len("vpm."):]: t for name, t in tensors.items() if name.startswith("vpm.")}
        module.load_state_dict(state, strict=True)
        return module.eval()

    def forward(self, pixel_values: torch.Tensor, position_ids: torch.Tensor,
                patch_counts: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(pixel_values, position_ids)
        key_bias = key_padding_bias(patch_counts, hidden.shape[1])
        for layer in self.encoder.layers:
            hidden = layer(hidden, key_bias)
        return self.post_layernorm(hidden)
