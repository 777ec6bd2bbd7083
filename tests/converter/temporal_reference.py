"""An independent transcription of MiniCPM-V 4.5's official temporal ("3-D") Resampler and video recipe, for parity
tests: torch.nn.MultiheadAttention, numpy float32 sin-cos tables built the way the official code builds them, and the
official way frames become temporal ids and groups. Written from the official code's structure, not from the
project's graph code (which shares nothing with it).

Official forward, per call: keys = ln_kv(kv_proj(x)) + the slice's 2-D table rows + its frame's temporal table row
(zeros for id -1); for each group of n frames, the keys of its frames are flattened into one sequence and the queries
attend over it once. The official default (`foreach`) path flattens the keys position-major ([L, n] -> L*n) but the
padding mask frame-major ([n, L] -> n*L); the two orders agree only when no key of the call is padding, which is the
case of the official video path (one slice per frame, every frame the same size). Its `batch_infer` path flattens
both frame-major. Both are transcribed: `forward(..., path="foreach" | "batch")`.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

TIME_SCALE = 0.1  # seconds per temporal id step in the official video recipe
MAX_PACKING = 6


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """[..., dim]: sin(p * w) | cos(p * w), w_i = 1 / 10000^(i / (dim/2)), float32 numpy like the official."""
    w = np.arange(dim // 2, dtype=np.float32)
    w /= dim / 2.0
    w = 1.0 / 10000 ** w
    angles = np.einsum("...,d->...d", positions, w)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)


def table_2d(dim: int, rows: int, cols: int) -> np.ndarray:
    """[rows, cols, dim]: the column coordinate's half first, then the row's (official meshgrid order)."""
    grid_c, grid_r = np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32))
    return np.concatenate([sincos_1d(dim // 2, grid_c), sincos_1d(dim // 2, grid_r)], axis=-1)


def table_temporal(dim: int, size: int) -> np.ndarray:
    """[size, dim]: the official temporal table rows 0..size-1 (rows do not depend on the table's length)."""
    return sincos_1d(dim, np.arange(size, dtype=np.float32))


class OfficialTemporalResampler(nn.Module):
    """The official 4.5 Resampler on a checkpoint's ``resampler.*`` tensors."""

    def __init__(self, tensors: Dict[str, torch.Tensor], heads: int) -> None:
        super().__init__()
        t = {k[len("resampler."):]: v for k, v in tensors.items() if k.startswith("resampler.")}
        self.dim = t["query"].shape[1]
        self.query, self.proj = t["query"], t["proj"]
        self.kv_proj = nn.Linear(t["kv_proj.weight"].shape[1], self.dim, bias=False)
        self.kv_proj.weight.data = t["kv_proj.weight"]
        self.attn = nn.MultiheadAttention(self.dim, heads)
        self.attn.load_state_dict({k[len("attn."):]: v for k, v in t.items() if k.startswith("attn.")})
        self.ln = {}
        for name in ("ln_q", "ln_kv", "ln_post"):
            norm = nn.LayerNorm(self.dim, eps=1e-6)
            norm.load_state_dict({"weight": t[name + ".weight"], "bias": t[name + ".bias"]})
            self.ln[name] = norm

    @torch.no_grad()
    def forward(self, x: torch.Tensor, tgt_sizes: Sequence[Tuple[int, int]], temporal_ids: List[List[int]],
                path: str = "foreach") -> torch.Tensor:
        """x [bs, L, width] (padded), one (rows, cols) per row, ids per group (flattened: one per row) -> [G, Q, D]."""
        bs, length = x.shape[0], x.shape[1]
        flat = [i for group in temporal_ids for i in group]
        assert len(flat) == bs
        rows = max(70, max(r for r, _ in tgt_sizes))
        cols = max(70, max(c for _, c in tgt_sizes))
        pos = torch.from_numpy(table_2d(self.dim, rows, cols))
        temporal = torch.from_numpy(table_temporal(self.dim, max(flat) + 1)) if max(flat) >= 0 else None
        padding = torch.zeros(bs, length, dtype=torch.bool)
        pos_2d = torch.zeros(length, bs, self.dim)
        for i, (r, c) in enumerate(tgt_sizes):
            pos_2d[: r * c, i] = pos[:r, :c].reshape(r * c, -1)
            padding[i, r * c:] = True
        kv = self.ln["ln_kv"](self.kv_proj(x)).permute(1, 0, 2)  # L, bs, D
        q = self.ln["ln_q"](self.query)
        k = kv + pos_2d
        k = k + torch.stack([torch.zeros(self.dim) if i == -1 else temporal[i] for i in flat])  # per frame
        outs, start = [], 0
        for group in temporal_ids:
            end = start + len(group)
            if path == "foreach":
                gk = k[:, start:end].reshape(-1, self.dim)
                gv = kv[:, start:end].reshape(-1, self.dim)
            else:
                gk = k[:, start:end].permute(1, 0, 2).reshape(-1, self.dim)
                gv = kv[:, start:end].permute(1, 0, 2).reshape(-1, self.dim)
            mask = padding[start:end].reshape(-1)
            outs.append(self.attn(q, gk, gv, key_padding_mask=mask, need_weights=False)[0])
            start = end
        out = torch.stack(outs, dim=0)  # G, Q, D
        return self.ln["ln_post"](out) @ self.proj


def official_temporal_ids(times_s: Sequence[float], duration_s: float, packing: int) -> List[List[int]]:
    """The official video recipe: each frame time mapped to the nearest point of arange(0, duration, 0.1), divided
    by 0.1 and truncated to int32, then consecutive frames grouped by `packing` (at most 6)."""
    scale = np.arange(0, duration_s, TIME_SCALE)
    nearest = scale[np.abs(np.asarray(times_s)[:, None] - scale[None, :]).argmin(axis=1)]
    ids = (nearest / TIME_SCALE).astype(np.int32)
    packing = min(packing, MAX_PACKING)
    return [ids[i:i + packing].tolist() for i in range(0, len(ids), packing)]


def parity_table(bundle_path: str, checkpoint_path: str, rows: int = 32, cols: int = 32, fps: float = 3.0
                 ) -> List[Dict[str, float]]:
    """The bundle's grouped graph (ONNX Runtime, fp32) vs this transcription, N = 1..6 frames of random features of
    one rows x cols slice each, ids of frames `fps` apart from 10 s: max abs error and output scale per N."""
    from converter.checkpoint import load_vision_checkpoint
    from edge.bundle.manifest import Bundle
    from edge.bundle.video import video_graph_path
    from edge.engines.onnxrt import open_session

    ck = load_vision_checkpoint(checkpoint_path)
    session = open_session(video_graph_path(Bundle.load(bundle_path), "fp32"))
    reference = OfficialTemporalResampler(ck.tensors, ck.spec.resampler_heads)
    table = []
    for n in range(1, MAX_PACKING + 1):
        x = np.random.default_rng(n).standard_normal((n, rows * cols, ck.spec.width)).astype(np.float32)
        ids = official_temporal_ids([10.0 + i / fps for i in range(n)], 60.0, n)
        got = session.run(None, {"vision_embeds": x, "tgt_sizes": np.array([(rows, cols)] * n, dtype=np.int32),
                                 "temporal_ids": np.array(ids, dtype=np.int32)})[0]
        want = reference(torch.from_numpy(x), [(rows, cols)] * n, ids).numpy()
        error, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
        table.append({"frames": n, "temporal_ids": ids[0], "max_abs_error": error, "output_scale": scale,
                      "relative": error / scale})
    return table


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="grouped Resampler graph vs the official temporal path, N = 1..6")
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--checkpoint", required=True)
    parsed = parser.parse_args()
    print(json.dumps(parity_table(parsed.bundle, parsed.checkpoint), indent=2))
