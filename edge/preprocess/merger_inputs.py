"""Host-side feeds of the MiniCPM-V 4.6 / 4.7 vision graphs (layout ``merger``) for a batch of slices.

The graphs (converter.modeling.merger) join four consecutive sequence entries at every 2x2 merge, so each slice's
patches are laid out here in *merge order*: blocks of 2^levels x 2^levels patches in raster order, inside a block
its four quadrants in raster order, recursively (levels = 2 for "16x": the window merger, then the downsample MLP;
1 for "4x"; one more per extra ``merger_times``). A slice's rows and cols must be multiples of 2^levels (the 4.6
image processor makes them so). Position ids are transformers' ``get_vision_nearest_position_ids`` (bucketize of
``arange(n) / n`` against ``arange(1/G, 1, 1/G)``), permuted with the patches. Slices are zero-padded to the
batch's longest; ``patch_counts`` masks the padding. Slice i yields ``token_counts[i]`` tokens, the first of its
output row, in raster order over its (rows / 2^levels, cols / 2^levels) token grid.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import List, NamedTuple, Sequence, Tuple

import numpy as np

from .strips import NORMALISE, PATCH, patch_grid, to_strip

MODE_LEVELS = {"4x": 1, "16x": 2}  # 2x2 merges between patches and tokens with merger_times 1
LAYOUT_MODES = {"merger-16x": "16x", "merger-4x": "4x"}  # bundle slice layouts (merger_times 1) -> downsample_mode
POSITION_GRID = 70  # vision_config.image_size 980 / patch 14


class MergerFeeds(NamedTuple):
    """Graph feeds for one batch: the vpm inputs, the tokens each slice yields and its (rows, cols) of patches."""

    vpm: dict
    token_counts: List[int]
    sizes: List[Tuple[int, int]]


def merge_levels(mode: str, merger_times: int = 1) -> int:
    """2x2 merges between a slice's patches and its tokens."""
    if mode not in MODE_LEVELS:
        raise ValueError("unknown downsample mode %r (expected 4x or 16x)" % mode)
    return MODE_LEVELS[mode] + merger_times - 1


@lru_cache(maxsize=1024)
def merge_order(rows: int, cols: int, levels: int) -> np.ndarray:
    """int32 [rows*cols]: the raster index (r*cols + c) of the patch at each position of the merge order."""
    block = 2 ** levels
    if rows % block or cols % block or rows < 1 or cols < 1:
        raise ValueError("a %dx%d patch grid is not divisible by %d (%d 2x2 merges): resize the slice to multiples "
                         "of %d patches" % (rows, cols, block, levels, block))
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    key = (r // block) * (cols // block) + c // block  # block raster index, then quadrant digits coarse to fine
    for level in range(levels - 1, -1, -1):
        key = key * 4 + ((r >> level) & 1) * 2 + ((c >> level) & 1)
    order = np.argsort(key.reshape(-1), kind="stable").astype(np.int32)
    order.setflags(write=False)
    return order


@lru_cache(maxsize=8)
def _boundaries(grid: int) -> np.ndarray:
    """torch.arange(1/grid, 1.0, 1/grid) in float32: length ceil((1 - 1/grid) * grid) computed in double, values
    float32(1/grid + i/grid) computed in double."""
    step = 1.0 / grid
    count = math.ceil((1.0 - step) / step)
    return np.array([step + i * step for i in range(count)], dtype=np.float32)


def nearest_position_ids(rows: int, cols: int, grid: int = POSITION_GRID) -> np.ndarray:
    """transformers' nearest-bucket ids of a rows x cols slice in raster order: int32 [rows * cols]."""
    def coords(n: int) -> np.ndarray:
        fractions = np.arange(n, dtype=np.float32) / np.float32(n)
        return np.searchsorted(_boundaries(grid), fractions, side="right").astype(np.int32)
    return (coords(rows)[:, None] * grid + coords(cols)[None, :]).reshape(-1)


def token_count(rows: int, cols: int, mode: str, merger_times: int = 1) -> int:
    """LLM tokens of a rows x cols slice."""
    return rows * cols // 4 ** merge_levels(mode, merger_times)


def _strip(slice_: np.ndarray) -> np.ndarray:
    """[3, 14, 14*n] raster strip of a float [3, 14h, 14w] slice or (normalised here) an RGB uint8 tile."""
    if slice_.dtype == np.uint8:
        rows, cols = patch_grid(slice_)
        strip = slice_.reshape(rows, PATCH, cols, PATCH, 3).transpose(4, 1, 0, 2, 3)  # [3, py, rows, cols, px]
        return NORMALISE[strip.reshape(3, PATCH, rows * cols * PATCH)]
    return to_strip(slice_)


def pack_merger_slices(slices: Sequence[np.ndarray], mode: str, merger_times: int = 1,
                       dtype: np.dtype = np.float32, grid: int = POSITION_GRID) -> MergerFeeds:
    """Pack slices (float [3, 14h, 14w] normalised, or RGB uint8 [14h, 14w, 3]) into the vpm feeds."""
    if not slices:
        raise ValueError("pack_merger_slices needs at least one slice")
    levels = merge_levels(mode, merger_times)
    sizes = [patch_grid(s) for s in slices]
    longest = max(r * c for r, c in sizes)
    pixels = np.zeros((len(slices), 3, PATCH, PATCH * longest), dtype=dtype)
    position_ids = np.zeros((len(slices), longest), dtype=np.int32)
    for index, (slice_, (rows, cols)) in enumerate(zip(slices, sizes)):
        order = merge_order(rows, cols, levels)
        count = rows * cols
        strip = _strip(slice_).reshape(3, PATCH, count, PATCH)[:, :, order, :]
        pixels[index, :, :, : PATCH * count] = strip.reshape(3, PATCH, PATCH * count)
        position_ids[index, :count] = nearest_position_ids(rows, cols, grid)[order]
    counts = np.array([r * c for r, c in sizes], dtype=np.int32)
    return MergerFeeds(vpm={"pixel_values": pixels, "position_ids": position_ids, "patch_counts": counts},
                       token_counts=[token_count(r, c, mode, merger_times) for r, c in sizes], sizes=sizes)
