"""The official MiniCPM-V (NaViT SigLIP) position ids, reproduced in numpy without torch.

The official code computes, for a slice of n patches along one side,
``bucketize(arange(0, 1 - 1e-6, 1 / tensor(n)), arange(1/70, 1.0, 1/70), right=True)`` in float32 on the CPU.
torch's CPU ``arange`` fills float32 tensors eight lanes at a time: the first value of each group of eight is
``float32(step * i0)`` and the others are ``float32(double(first) + j * step)``, with the last ``count % 8``
values computed as ``float32(step * i)``. Reproducing that is what makes the ids equal the official ones at
the sizes where ``floor(70 * i / n)`` (llama.cpp) and ``i * step`` (transformers 5.x) are one bucket off
(n = 25, 49, 58, ...). The tests check this module against torch for every n up to 4096.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

POSITION_GRID = 70  # vision_config.image_size 980 / patch 14: the learned table is 70 x 70
_TORCH_ARANGE_LANES = 8  # float32 lanes of torch's vectorised CPU arange kernel (x86 builds)

# arange(1/70, 1.0, 1/70) in float32: each value is float32(1/70 + i * (1/70)) computed in double.
_BOUNDARIES = np.array([1 / POSITION_GRID + i * (1 / POSITION_GRID) for i in range(POSITION_GRID - 1)],
                       dtype=np.float32)


def _torch_float32_arange(stop: float, step_f32: np.float32) -> np.ndarray:
    """Values of ``torch.arange(0, stop, step)`` for a float32 tensor step, as torch's CPU kernel writes them."""
    step = float(step_f32)
    count = int(np.ceil(stop / step))
    index = np.arange(count, dtype=np.float64)
    lane = index % _TORCH_ARANGE_LANES
    group_start = np.float32(step * (index - lane)).astype(np.float64)
    values = (group_start + lane * step).astype(np.float32)
    tail = count % _TORCH_ARANGE_LANES
    if tail:
        values[count - tail:] = (index[count - tail:] * step).astype(np.float32)
    return values


@lru_cache(maxsize=4096)
def bucket_coords(n: int) -> np.ndarray:
    """Bucket (0..69) of each of n patches along one side, as the official code computes it."""
    if n < 1:
        raise ValueError("a slice side needs at least one patch, got %d" % n)
    step = np.float32(1.0) / np.float32(n)
    fractions = _torch_float32_arange(1 - 1e-6, step)
    coords = np.searchsorted(_BOUNDARIES, fractions, side="right").astype(np.int32)
    coords.setflags(write=False)
    return coords


def slice_position_ids(rows: int, cols: int) -> np.ndarray:
    """Official 2-D ids (row-major, rows outer) of a slice of rows x cols patches: int32 [rows * cols]."""
    return (bucket_coords(rows)[:, None] * POSITION_GRID + bucket_coords(cols)[None, :]).reshape(-1)


def strip_position_ids(length: int) -> np.ndarray:
    """MiniCPM-V 2.5's 1-D ids for a zero-padded strip of `length` patches (its mask bug makes h = 1)."""
    return bucket_coords(length).copy()
