"""Building blocks shared by the VPM and the Resampler graphs."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Fp32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the model dtype: SigLIP's large-magnitude channels overflow
    fp16 variance (x^2 > 65504 for |x| > 256). Its parameters stay float32 in an fp16 model (see to_fp16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)


def to_fp16(model: nn.Module) -> nn.Module:
    """fp16 weights, except the float32-only pieces: Fp32LayerNorm parameters and buffers that a module
    names in its ``FP32_BUFFERS``."""
    model.half()
    for module in model.modules():
        if isinstance(module, Fp32LayerNorm):
            module.float()
        for name in getattr(module, "FP32_BUFFERS", ()):
            setattr(module, name, getattr(module, name).float())
    return model


def key_padding_bias(patch_counts: torch.Tensor, length: int, stride: int = 1) -> torch.Tensor:
    """Additive float32 key bias [B, 1, 1, L]: 0 for keys < count, float32 min (as the official mask) after.
    With `stride` k, key i stands for patches k*i .. k*i+k-1 (a merged sequence) and is valid while k*i < count."""
    positions = torch.arange(0, length * stride, stride, dtype=torch.int32, device=patch_counts.device).unsqueeze(0)
    padded = positions >= patch_counts.to(torch.int32).unsqueeze(1)
    return (padded.to(torch.float32) * torch.finfo(torch.float32).min)[:, None, None, :]


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor,
           scale: float) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v with the softmax in float32, as the official SigLIP attention.

    query [B|1, H, Q, d], key/value [B, H, L, d], bias [B, 1, 1, L] float32 -> [B, H, Q, d].
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    weights = torch.softmax(scores.to(torch.float32) + bias, dim=-1).to(value.dtype)
    return torch.matmul(weights, value)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, L, H*d] -> [B, H, L, d]."""
    return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, d] -> [B, L, H*d]."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)
