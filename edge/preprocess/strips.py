"""The official patch-strip layout of a slice, and the official normalisation as a table: what both graph-input
layouts (edge.preprocess.graph_inputs and edge.preprocess.merger_inputs) are built from."""
from __future__ import annotations

from typing import Tuple

import numpy as np

PATCH = 14
NORMALISE = (np.arange(256, dtype=np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)


def patch_grid(slice_: np.ndarray) -> Tuple[int, int]:
    """(rows, cols) of patches of a normalised [3, 14*rows, 14*cols] slice or an RGB [14*rows, 14*cols, 3] tile."""
    tile = slice_.dtype == np.uint8
    shape = tuple(slice_.shape)
    channels, height, width = (shape[2], shape[0], shape[1]) if tile and len(shape) == 3 else (shape + (0, 0))[:3]
    if len(shape) != 3 or channels != 3 or height % PATCH or width % PATCH or not height or not width:
        raise ValueError("a slice must be float [3, 14*rows, 14*cols] or uint8 [14*rows, 14*cols, 3], got %s %s"
                         % (slice_.dtype, shape))
    return height // PATCH, width // PATCH


def to_strip(slice_chw: np.ndarray) -> np.ndarray:
    """[3, 14h, 14w] -> the official [3, 14, 14*h*w] strip: patch l = r*w + c in columns 14l..14l+13."""
    rows, cols = patch_grid(slice_chw)
    patches = slice_chw.reshape(3, rows, PATCH, cols, PATCH).transpose(0, 2, 1, 3, 4)
    return patches.reshape(3, PATCH, rows * cols * PATCH)
