"""What the fp32 parity tests share: seeded random normalised slices, and closeness within a share of the output
scale (max |reference|)."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

RELATIVE_TOLERANCE = 1e-4  # of the output scale (max |reference|), fp32


def random_slices(sizes: Sequence[Tuple[int, int]], seed: int) -> List[np.ndarray]:
    """Normalised float32 [3, 14*rows, 14*cols] slices, one per (rows, cols)."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (3, 14 * r, 14 * c)).astype(np.float32) for r, c in sizes]


def assert_close(got: np.ndarray, want: np.ndarray, what: str) -> float:
    """Same shape, and the largest difference at most RELATIVE_TOLERANCE of the reference's largest value; that
    difference as a share of the scale."""
    assert got.shape == want.shape, "%s: shape %s, expected %s" % (what, got.shape, want.shape)
    scale = float(np.abs(want).max())
    error = float(np.abs(got - want).max())
    assert error <= RELATIVE_TOLERANCE * scale, "%s: max abs error %.3g > %.0e x scale %.3g" % (
        what, error, RELATIVE_TOLERANCE, scale)
    return error / scale
