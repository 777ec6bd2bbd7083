"""MiniCPM-V 4.5's grouped ("3-D") Resampler: the Q queries attend jointly over the keys of N <= 6 frames.

Graph inputs: ``vision_embeds`` [G*N, L, width] (group-major: the N frames of group 0, then of group 1, ...),
``tgt_sizes`` int32 [G*N, 2] and ``temporal_ids`` int32 [G, N]. Output: ``image_tokens`` [G, Q, D], one block of Q
tokens per group. Each key gets the still-image 2-D sin-cos term of its slice plus a 1-D sin-cos term of its frame's
temporal id (id -1: none, as for a still image), computed in the graph in float32 from the id; the keys of the N
frames of a group are concatenated frame after frame, each frame's padded keys masked. With N = 1 and id -1 this is
the still-image Resampler exactly. The weights are the still-image Resampler's (no tensor is added).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .layers import key_padding_bias
from .resampler import Resampler

MAX_GROUP_FRAMES = 6  # the official video path packs at most 6 frames into one group


def temporal_omega(embed_dim: int) -> np.ndarray:
    """float32 [D/2]: omega_i = 1 / 10000^(i / (D/2)), the official 1-D temporal sin-cos frequencies."""
    half = embed_dim // 2
    omega = np.arange(half, dtype=np.float32)
    omega /= np.float32(half)
    return (np.float32(1.0) / np.float32(10000) ** omega).astype(np.float32)


class GroupResampler(nn.Module):
    """The still-image Resampler's weights, with a temporal key term and the keys of N frames per group."""

    FP32_BUFFERS = ("omega",)  # sin/cos arguments must keep float32 precision in an fp16 model

    def __init__(self, still: Resampler) -> None:
        super().__init__()
        self.still = still
        self.register_buffer("omega", torch.from_numpy(temporal_omega(still.query.shape[1])), persistent=False)

    def temporal_term(self, temporal_ids: torch.Tensor) -> torch.Tensor:
        """float32 [B, D] of flattened ids [B]: concat(sin(id * omega), cos(id * omega)); zeros for id -1."""
        ids = temporal_ids.reshape(-1, 1)
        angles = ids.to(torch.float32) * self.omega.to(torch.float32).unsqueeze(0)
        present = (ids >= 0).to(torch.float32)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1) * present

    def forward(self, vision_embeds: torch.Tensor, tgt_sizes: torch.Tensor,
                temporal_ids: torch.Tensor) -> torch.Tensor:
        r = self.still
        length = vision_embeds.shape[1]
        groups = temporal_ids.shape[0]
        kv = r.ln_kv(r.kv_proj(vision_embeds))
        position = r.key_positions(tgt_sizes, length) + self.temporal_term(temporal_ids).unsqueeze(1)
        keys = kv + position.to(kv.dtype)
        d = kv.shape[-1]
        counts = tgt_sizes[:, 0].to(torch.int32) * tgt_sizes[:, 1].to(torch.int32)
        bias = key_padding_bias(counts, length).reshape(groups, 1, 1, -1)  # frame after frame per group
        return r.cross_attend(keys.reshape(groups, -1, d), kv.reshape(groups, -1, d), bias)
