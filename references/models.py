"""Independent references for parity tests, written from the official MiniCPM-V code's behaviour.

- VPM: transformers' Idefics2VisionTransformer (encoder + post_layernorm) fed embeddings that the reference
  builds itself: the patch conv on the normal [3, 14h, 14w] image layout (not the strip layout) and the
  official ids computed with torch exactly as the official code does (bucketize over a float32 arange).
- Resampler: torch.nn.MultiheadAttention with the checkpoint's tensors and its own sin-cos positions.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from transformers import Idefics2Config
from transformers.models.idefics2.modeling_idefics2 import Idefics2VisionTransformer

GRID = 70


def official_bucket_coords(n: int) -> torch.Tensor:
    """The official code: bucketize(arange(0, 1 - 1e-6, 1 / tensor(n)), arange(1/70, 1, 1/70), right=True)."""
    boundaries = torch.arange(1 / GRID, 1.0, 1 / GRID)
    fractions = torch.arange(0, 1 - 1e-6, 1 / torch.tensor(n))
    return torch.bucketize(fractions, boundaries, right=True)


def official_ids_2d(rows: int, cols: int) -> torch.Tensor:
    return (official_bucket_coords(rows)[:, None] * GRID + official_bucket_coords(cols)).flatten()


def vpm_reference(tensors: Dict[str, torch.Tensor], spec) -> Idefics2VisionTransformer:
    """transformers' Idefics2 vision tower with the checkpoint's vpm.* tensors (eager attention)."""
    config = Idefics2Config(vision_config={
        "hidden_size": spec.width, "intermediate_size": spec.mlp, "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads, "patch_size": spec.patch_size, "image_size": spec.position_grid * 14,
        "layer_norm_eps": spec.layer_norm_eps, "hidden_act": "gelu_pytorch_tanh"}).vision_config
    config._attn_implementation = "eager"
    model = Idefics2VisionTransformer(config)
    state = {k[len("vpm."):]: v for k, v in tensors.items() if k.startswith("vpm.")}
    model.load_state_dict(state, strict=True)
    return model.eval()


def vpm_reference_forward(model: Idefics2VisionTransformer, slices: Sequence[np.ndarray],
                          layout: str) -> List[torch.Tensor]:
    """Official VPM output rows of each [3, 14h, 14w] slice, batched and padded as the official code does.

    masked-2d: 2-D ids per slice, padded keys masked. unmasked-1d (2.5): 1-D ids over the longest slice for
    every slice, zero-pixel padding (conv bias only) attends as keys, no mask.
    """
    emb = model.embeddings
    sizes = [(s.shape[1] // 14, s.shape[2] // 14) for s in slices]
    longest = max(r * c for r, c in sizes)
    rows = []
    mask = torch.zeros(len(slices), longest, dtype=torch.bool)
    with torch.no_grad():
        for index, (pixels, (r, c)) in enumerate(zip(slices, sizes)):
            patches = emb.patch_embedding(torch.from_numpy(pixels)[None]).flatten(2).transpose(1, 2)[0]
            pad = emb.patch_embedding.bias.expand(longest - r * c, -1)  # conv of zero pixels
            if layout == "masked-2d":
                ids = torch.cat([official_ids_2d(r, c), torch.zeros(longest - r * c, dtype=torch.long)])
                mask[index, : r * c] = True
            else:
                ids = official_bucket_coords(longest)
                mask[index] = True
            rows.append(torch.cat([patches, pad]) + emb.position_embedding(ids))
        hidden = torch.stack(rows)
        additive = (~mask).float()[:, None, None, :] * torch.finfo(torch.float32).min
        additive = additive.expand(-1, 1, longest, -1)
        out = model.post_layernorm(model.encoder(inputs_embeds=hidden, attention_mask=additive).last_hidden_state)
    return [out[i, : r * c] for i, (r, c) in enumerate(sizes)]


def sincos_2d(embed_dim: int, rows: int, cols: int) -> torch.Tensor:
    """Official 2-D sin-cos key positions [rows*cols, D] (column half first), float32 torch arithmetic."""
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)

    def one_d(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.float()[:, None] * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    return torch.cat([one_d(c.flatten()), one_d(r.flatten())], dim=1)


class ReferenceResampler(nn.Module):
    """The official Resampler forward on torch.nn.MultiheadAttention."""

    def __init__(self, tensors: Dict[str, torch.Tensor], heads: int) -> None:
        super().__init__()
        t = {k[len("resampler."):]: v for k, v in tensors.items() if k.startswith("resampler.")}
        d = t["query"].shape[1]
        self.query, self.proj = t["query"], t["proj"]
        self.kv_proj = nn.Linear(t["kv_proj.weight"].shape[1], d, bias=False)
        self.kv_proj.weight.data = t["kv_proj.weight"]
        self.attn = nn.MultiheadAttention(d, heads)
        self.attn.load_state_dict({k[len("attn."):]: v for k, v in t.items() if k.startswith("attn.")})
        self.norms = {}
        for name in ("ln_q", "ln_kv", "ln_post"):
            norm = nn.LayerNorm(d, eps=1e-6)
            norm.load_state_dict({"weight": t[name + ".weight"], "bias": t[name + ".bias"]})
            self.norms[name] = norm

    def forward(self, features: Sequence[torch.Tensor], sizes: Sequence[Tuple[int, int]]) -> torch.Tensor:
        """features: per slice [h*w, width] (valid rows only) -> [B, Q, D]."""
        longest = max(r * c for r, c in sizes)
        width = features[0].shape[1]
        x = torch.zeros(len(features), longest, width)
        pos = torch.zeros(len(features), longest, self.query.shape[1])
        padding = torch.ones(len(features), longest, dtype=torch.bool)
        for i, (f, (r, c)) in enumerate(zip(features, sizes)):
            x[i, : r * c] = f
            pos[i, : r * c] = sincos_2d(self.query.shape[1], r, c)
            padding[i, : r * c] = False
        with torch.no_grad():
            kv = self.norms["ln_kv"](self.kv_proj(x)).permute(1, 0, 2)
            q = self.norms["ln_q"](self.query)[:, None].expand(-1, len(features), -1)
            out, _ = self.attn(q, kv + pos.permute(1, 0, 2), kv, key_padding_mask=padding, need_weights=False)
            return self.norms["ln_post"](out.permute(1, 0, 2)) @ self.proj


class ReferenceChain:
    """Both references for one checkpoint, judging the VPM and the Resampler each on its own."""

    def __init__(self, tensors: Dict[str, torch.Tensor], spec) -> None:
        self.vpm = vpm_reference(tensors, spec)
        self.resampler = ReferenceResampler(tensors, spec.resampler_heads)

    def expected(self, slices: Sequence[np.ndarray], layout: str, features: np.ndarray,
                 sizes: Sequence[Tuple[int, int]]) -> Tuple[List[np.ndarray], np.ndarray]:
        """Reference VPM rows of each slice, and reference tokens computed from the valid rows of `features`
        (the graph's own VPM output, so a Resampler error is not hidden behind a VPM one)."""
        vpm_rows = [rows.numpy() for rows in vpm_reference_forward(self.vpm, slices, layout)]
        valid = [torch.from_numpy(features[i, : r * c]) for i, (r, c) in enumerate(sizes)]
        return vpm_rows, self.resampler(valid, sizes).numpy()

    def tokens(self, slices: Sequence[np.ndarray], layout: str) -> np.ndarray:
        """The official chain end to end: reference VPM rows of every slice, then the reference Resampler."""
        sizes = [(s.shape[1] // 14, s.shape[2] // 14) for s in slices]
        return self.resampler(vpm_reference_forward(self.vpm, slices, layout), sizes).numpy()
