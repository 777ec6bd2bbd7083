"""Cosine similarity of token (or patch) vectors: the accuracy measure the benchmarks and the converter share."""
from __future__ import annotations

import numpy as np


def token_cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Cosine of every vector along the last axis, in float64."""
    g, w = got.reshape(-1, got.shape[-1]).astype(np.float64), want.reshape(-1, want.shape[-1]).astype(np.float64)
    return (g * w).sum(1) / np.maximum(np.linalg.norm(g, axis=1) * np.linalg.norm(w, axis=1), 1e-30)
