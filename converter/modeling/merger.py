"""MiniCPM-V 4.6 / 4.7's vision tower as two export-friendly modules (transformers' ``minicpmv4_6`` math).

Graph contract (the host builds the feeds: edge.preprocess.merger_inputs):

- ``vpm`` = ``MergerVisionTower``: inputs ``pixel_values`` [B, 3, 14, 14*L] (strips), ``position_ids`` int32 [B, L],
  ``patch_counts`` int32 [B]; output ``vision_embeds`` [B, L/4, width] ("16x": the window merger ran after layer
  ``insert_layer_id``) or [B, L, width] ("4x": it did not). One graph per mode.
- ``resampler`` = ``MergerHead``: input ``vision_embeds``; output ``image_tokens`` [B, L/16 or L/4, D] after
  ``merger_times`` downsample MLPs (the last projects to the LLM width).

Every 2x2 merge joins four *consecutive* sequence entries: the host lays each slice's patches out in nested 2x2
order ("merge order": blocks of 2^levels x 2^levels patches in raster order, inside a block its four quadrants in
raster order, recursively down to single patches), so the graphs need no gather and no data-dependent shapes.
SigLIP attention does not depend on the order of its tokens (positions enter only through ``position_ids``), so
this reordering leaves the math unchanged, and the tokens come out in raster order over the merged grid, as
transformers' ``pooler_output``. Slices are zero-padded to the batch's longest ``L`` (a multiple of 4^levels);
keys beyond a slice's ``patch_counts`` (``/4`` after the window merger) are masked; the window merger's windows
never mix padding with patches. A slice of ``n`` patches gives ``n / 4^levels`` tokens, the first of its row.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn
from torch.nn import functional as F

from ..checkpoint_layout import VisionSpec
from ..merger_layout import MERGE, MERGER, VISION_TOWER
from .layers import Fp32LayerNorm, attend, key_padding_bias, merge_heads, split_heads
from .siglip import SiglipAttention, SiglipEmbeddings, SiglipLayer


def _merge_groups(x: torch.Tensor) -> torch.Tensor:
    """[B, N, C] -> [B, N/4, 4C]: four consecutive tokens (one 2x2 neighbourhood in merge order) side by side."""
    return x.reshape(x.shape[0], -1, MERGE * x.shape[2])


class WindowAttentionMerger(nn.Module):
    """transformers' ViT window-attention merger: attention inside each 2x2 window, then an MLP over the window's
    four tokens side by side plus their mean."""

    def __init__(self, spec: VisionSpec) -> None:
        super().__init__()
        w = spec.width
        self.heads = spec.heads
        self.self_attn = SiglipAttention(w, spec.heads)
        self.layer_norm1 = Fp32LayerNorm(w, eps=spec.layer_norm_eps)
        self.pre_norm = Fp32LayerNorm(MERGE * w, eps=spec.layer_norm_eps)
        self.linear_1 = nn.Linear(MERGE * w, MERGE * spec.mlp)
        self.linear_2 = nn.Linear(MERGE * spec.mlp, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, width = x.shape[0], x.shape[2]
        windows = self.layer_norm1(x).reshape(-1, MERGE, width)  # [B*L/4, 4, w]
        attn = self.self_attn
        q, k, v = (split_heads(proj(windows), self.heads) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        no_mask = torch.zeros((1, 1, 1, MERGE), dtype=torch.float32, device=x.device)
        attended = attn.out_proj(merge_heads(attend(q, k, v, no_mask, attn.scale)))
        hidden = x + attended.reshape(batch, -1, width)
        mean = hidden.reshape(batch, -1, MERGE, width).mean(dim=2)
        out = self.linear_2(F.gelu(self.linear_1(self.pre_norm(_merge_groups(hidden))), approximate="tanh"))
        return out + mean


class DownsampleMlp(nn.Module):
    """transformers' DownsampleMLP over four consecutive tokens: LayerNorm(4C) -> Linear -> GELU (erf) -> Linear."""

    def __init__(self, width: int, out: int) -> None:
        super().__init__()
        self.pre_norm = Fp32LayerNorm(MERGE * width, eps=1e-6)
        self.linear_1 = nn.Linear(MERGE * width, MERGE * width)
        self.linear_2 = nn.Linear(MERGE * width, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(self.pre_norm(_merge_groups(x)))))


class MergerVisionTower(nn.Module):
    """The ``vpm`` graph of a merger version: embeddings, ViT layers (the window merger after ``insert_layer_id``
    in "16x" mode), post_layernorm."""

    def __init__(self, spec: VisionSpec, mode: str) -> None:
        super().__init__()
        self.insert_after = spec.insert_layer_id if mode == "16x" else -1
        self.embeddings = SiglipEmbeddings(spec)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(SiglipLayer(spec) for _ in range(spec.layers))
        self.post_layernorm = Fp32LayerNorm(spec.width, eps=spec.layer_norm_eps)
        self.vit_merger = WindowAttentionMerger(spec)

    @classmethod
    def from_tensors(cls, spec: VisionSpec, tensors: Dict[str, torch.Tensor], mode: str) -> MergerVisionTower:
        """Build from the checkpoint's ``model.vision_tower.*`` tensors (strict)."""
        module = cls(spec, mode)
        state = {n[len(VISION_TOWER):]: t for n, t in tensors.items() if n.startswith(VISION_TOWER)}
        module.load_state_dict(state, strict=True)
        if module.insert_after < 0:
            del module.vit_merger  # the "4x" graph holds no window-merger weights
        return module.eval()

    def forward(self, pixel_values: torch.Tensor, position_ids: torch.Tensor,
                patch_counts: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(pixel_values, position_ids)
        key_bias = key_padding_bias(patch_counts, hidden.shape[1])
        for index, layer in enumerate(self.encoder.layers):
            hidden = layer(hidden, key_bias)
            if index == self.insert_after:
                hidden = self.vit_merger(hidden)
                key_bias = key_padding_bias(patch_counts, hidden.shape[1], stride=MERGE)
        return self.post_layernorm(hidden)


class MergerHead(nn.Module):
    """The ``resampler`` graph of a merger version: ``merger_times`` downsample MLPs, the last one to the LLM."""

    def __init__(self, spec: VisionSpec) -> None:
        super().__init__()
        outs = [spec.width] * (spec.merger_times - 1) + [spec.embed_dim]
        self.mlp = nn.ModuleList(DownsampleMlp(spec.width, out) for out in outs)

    @classmethod
    def from_tensors(cls, spec: VisionSpec, tensors: Dict[str, torch.Tensor]) -> MergerHead:
        """Build from the checkpoint's ``model.merger.*`` tensors (strict)."""
        module = cls(spec)
        module.load_state_dict({n[len(MERGER):]: t for n, t in tensors.items() if n.startswith(MERGER)}, strict=True)
        return module.eval()

    def forward(self, vision_embeds: torch.Tensor) -> torch.Tensor:
        hidden = vision_embeds
        for mlp in self.mlp:
            hidden = mlp(hidden)
        return hidden
