"""Deterministic synthetic scenes (numpy only): stand-in camera frames for benchmarks, demos and calibration.

Not photographs, but not noise either: a lit gradient background, filled rectangles and discs with hard edges,
fine stripes (detail that resizing must antialias) and mild sensor noise, so resize and token differences look
like those of real frames.
"""
from __future__ import annotations

import numpy as np


def synthetic_scene(width: int, height: int, seed: int = 0, shapes: int = 24) -> np.ndarray:
    """An HxWx3 uint8 RGB scene, the same for the same (width, height, seed)."""
    rng = np.random.default_rng(seed)
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    low, high = rng.uniform(20, 90, 3).astype(np.float32), rng.uniform(140, 230, 3).astype(np.float32)
    image = low + (high - low) * (0.6 * xs + 0.4 * ys)
    for _ in range(shapes):
        color = rng.uniform(0, 255, 3).astype(np.float32)
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w = max(1, int(rng.uniform(0.02, 0.3) * width))
        h = max(1, int(rng.uniform(0.02, 0.3) * height))
        box = image[y0:y0 + h, x0:x0 + w]
        kind = rng.integers(0, 3)
        if kind == 0:
            box[...] = color
        elif kind == 1:
            yy, xx = np.ogrid[: box.shape[0], : box.shape[1]]
            disc = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2 <= 1
            box[disc] = color
        else:
            period = int(rng.integers(2, 9))
            stripes = (np.arange(box.shape[1]) // period) % 2 == 0
            box[:, stripes] = color
    image += rng.normal(0.0, 3.0, image.shape).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)
