"""Host feeds of the 4.6/4.7 graphs: RGB tiles pack as their normalised float slices do, and the tokens each slice
yields."""
from __future__ import annotations

import numpy as np
import pytest

from edge.preprocess.graph_inputs import pack_slices, slice_token_counts
from edge.preprocess.merger_inputs import pack_merger_slices


def _tile(rows: int, cols: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (14 * rows, 14 * cols, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["16x", "4x"])
def test_rgb_tiles_pack_like_their_normalised_slices(mode):
    tiles = [_tile(4, 8, 0), _tile(12, 4, 1)]
    slices = [((t.astype(np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1) for t in tiles]
    from_tiles, from_slices = pack_merger_slices(tiles, mode), pack_merger_slices(slices, mode)
    for name in ("position_ids", "patch_counts"):
        assert np.array_equal(from_tiles.vpm[name], from_slices.vpm[name])
    assert np.allclose(from_tiles.vpm["pixel_values"], from_slices.vpm["pixel_values"], atol=1e-6)
    assert from_tiles.token_counts == from_slices.token_counts == [32 // 4 ** (2 if mode == "16x" else 1),
                                                                     48 // 4 ** (2 if mode == "16x" else 1)]


def test_token_counts_per_layout():
    sizes = [(12, 20), (4, 68)]
    assert slice_token_counts(sizes, "merger-16x", 0) == [15, 17]
    assert slice_token_counts(sizes, "merger-4x", 0) == [60, 68]
    assert slice_token_counts(sizes, "masked-2d", 64) == [64, 64]
    assert pack_slices([_tile(12, 20, 4)], "merger-16x").resampler == {}
