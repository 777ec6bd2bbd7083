"""The Resampler (2.5, 2.6, o-2.6, 4.0, 4.5 still images): Q learned queries attend over the VPM features.

Graph inputs: ``vision_embeds`` [B, L, width] and ``tgt_sizes`` int32 [B, 2] (rows, cols of each slice).
Output: ``image_tokens`` [B, Q, D]. The 2-D sin-cos key position term is gathered from a float32 table
(rows = column/row index) by indices derived in the graph from ``tgt_sizes``, so no per-frame position tensor
crosses into the graph and the sin/cos values keep float32 precision in an fp16 model.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch
from torch import nn

from ..checkpoint import VisionSpec
from .layers import Fp32LayerNorm, attend, key_padding_bias, split_heads


def sincos_table(embed_dim: int, positions: int) -> np.ndarray:
    """float32 [positions, D/2]: row n = concat(sin(n * omega), cos(n * omega)), omega_i = 10000^(-i / (D/4)).

    A key at (row r, col c) takes concat(table[c], table[r]) (column half first), which is the official
    get_2d_sincos_pos_embed; the arithmetic is float32 numpy as in the official code.
    """
    quarter = embed_dim // 4
    omega = np.arange(quarter, dtype=np.float32)
    omega /= np.float32(quarter)
    omega = np.float32(1.0) / np.float32(10000) ** omega
    angles = np.einsum("m,d->md", np.arange(positions, dtype=np.float32), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


class Resampler(nn.Module):
    """ln_kv(kv_proj(x)) + 2-D sin-cos keys, ln_q(query) queries, multi-head cross-attention, ln_post, @ proj."""

    FP32_BUFFERS = ("pos_table",)  # sin/cos values must keep float32 precision in an fp16 model

    def __init__(self, spec: VisionSpec, max_side: int) -> None:
        super().__init__()
        d = spec.embed_dim
        self.heads = spec.resampler_heads
        self.scale = (d // self.heads) ** -0.5
        self.query = nn.Parameter(torch.zeros(spec.query_num, d))
        self.kv_proj = nn.Linear(spec.width, d, bias=False)
        self.attn = nn.Module()
        self.attn.in_proj_weight = nn.Parameter(torch.zeros(3 * d, d))
        self.attn.in_proj_bias = nn.Parameter(torch.zeros(3 * d))
        self.attn.out_proj = nn.Linear(d, d)
        self.ln_q, self.ln_kv, self.ln_post = (Fp32LayerNorm(d, eps=1e-6) for _ in range(3))
        self.proj = nn.Parameter(torch.zeros(d, d))
        self.register_buffer("pos_table", torch.from_numpy(sincos_table(d, max_side)), persistent=False)

    @classmethod
    def from_tensors(cls, spec: VisionSpec, tensors: Dict[str, torch.Tensor], max_side: int) -> Resampler:
        """Build from the checkpoint's ``resampler.*`` tensors; `max_side` bounds a slice's rows and cols."""
        module = cls(spec, max_side)
        state = {n[len("resampler."):]: t for n, t in tensors.items() if n.startswith("resampler.")}
        module.load_state_dict(state, strict=True)
        return module.eval()

    def key_positions(self, tgt_sizes: torch.Tensor, length: int) -> torch.Tensor:
        """float32 [B, L, D] sin-cos term of each key from its slice's (rows, cols)."""
        index = torch.arange(length, dtype=torch.int32, device=tgt_sizes.device).unsqueeze(0)
        cols = tgt_sizes[:, 1:2].to(torch.int32)
        row = torch.div(index, cols, rounding_mode="floor")
        col = index - row * cols
        return torch.cat([self.pos_table[col], self.pos_table[row]], dim=-1)

    def forward(self, vision_embeds: torch.Tensor, tgt_sizes: torch.Tensor) -> torch.Tensor:
        length = vision_embeds.shape[1]
        kv = self.ln_kv(self.kv_proj(vision_embeds))
        keys = kv + self.key_positions(tgt_sizes, length).to(kv.dtype)
        counts = tgt_sizes[:, 0].to(torch.int32) * tgt_sizes[:, 1].to(torch.int32)
        return self.cross_attend(keys, kv, key_padding_bias(counts, length))

    def cross_attend(self, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The attention block: ln_q(query) [Q, D] attends over `keys` / `values` [B, K, D] with the additive float32
        key bias [B, 1, 1, K]; then out_proj, ln_post and @ proj -> [B, Q, D]. The still image (K = one slice's
        keys) and the video group (K = the keys of its frames, one after another) share it."""
        w_q, w_k, w_v = self.attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.attn.in_proj_bias.chunk(3)
        queries = self.ln_q(self.query).unsqueeze(0)  # [1, Q, D]
        q = split_heads(torch.matmul(queries, w_q.t()) + b_q, self.heads)
        k = split_heads(torch.matmul(keys, w_k.t()) + b_k, self.heads)
        v = split_heads(torch.matmul(values, w_v.t()) + b_v, self.heads)
        attended = attend(q, k, v, bias, self.scale)  # [B, H, Q, d]
        out = attended.transpose(1, 2).reshape(keys.shape[0], q.shape[2], -1)
        return torch.matmul(self.ln_post(self.attn.out_proj(out)), self.proj)
