"""Slice geometry of MiniCPM-V's LLaVA-UHD preprocessing (docs/minicpmv.md), as pure arithmetic on sizes.

A plan says how one image becomes model inputs: an overview ("source") resized to about S x S, and, when the
image is large enough, a refined copy cut into a cols x rows grid of tiles. Sizes are (width, height) in
pixels, as PIL writes them. Every rounding matches the official code: Python's banker's ``round`` in
``ensure_divide`` and ``int`` truncation in ``best_resize``.

The merger versions (4.6, 4.7) use the same rules with one change: sizes snap to multiples of ``patch_size *
align`` instead of ``patch_size``, where ``align`` is the number of patches one LLM token spans along each side
(2 for ``downsample_mode`` "4x", 4 for "16x"), so that every 2x2 merge divides the patch grid
(``SliceConfig.for_mode``). Each input then gives ``rows * cols / align^2`` tokens (``SlicePlan.token_counts``).
"""
from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Tuple

Size = Tuple[int, int]
MERGE_ALIGN = {"4x": 2, "16x": 4}  # patches per LLM token along each side, per downsample_mode (4.6, 4.7)


class SliceConfig(NamedTuple):
    """The processor's slicing settings; ``max_slice_nums`` is the one the governor lowers at run time."""

    scale_resolution: int = 448
    max_slice_nums: int = 9
    patch_size: int = 14
    align: int = 1  # sizes snap to patch_size * align: 1 for Resampler versions, MERGE_ALIGN[mode] for 4.6/4.7

    def for_mode(self, downsample_mode: str) -> SliceConfig:
        """This config for a merger version (4.6, 4.7) run in `downsample_mode` ("4x" or "16x")."""
        if downsample_mode not in MERGE_ALIGN:
            raise ValueError("downsample_mode must be one of %s, got %r" % (", ".join(MERGE_ALIGN), downsample_mode))
        return self._replace(align=MERGE_ALIGN[downsample_mode])

    @property
    def step(self) -> int:
        """The pixel multiple every resized side snaps to."""
        return self.patch_size * self.align


class SlicePlan(NamedTuple):
    """Where each model input comes from: the overview size, and the grid, refine size and tile size if sliced."""

    image_size: Size
    source_size: Size
    grid: Optional[Tuple[int, int]]  # (cols, rows), None when the image is not sliced
    refine_size: Optional[Size]

    @property
    def tile_size(self) -> Optional[Size]:
        if self.grid is None or self.refine_size is None:
            return None
        return self.refine_size[0] // self.grid[0], self.refine_size[1] // self.grid[1]

    @property
    def slice_sizes(self) -> List[Size]:
        """(width, height) of every model input in model order: overview, then tiles row-major."""
        tile = self.tile_size
        tiles = [] if tile is None or self.grid is None else [tile] * (self.grid[0] * self.grid[1])
        return [self.source_size] + tiles

    def patch_grids(self, patch_size: int = 14) -> List[Tuple[int, int]]:
        """(rows, cols) of patches of every model input: the Resampler's tgt_sizes."""
        return [(h // patch_size, w // patch_size) for w, h in self.slice_sizes]

    def token_counts(self, config: SliceConfig) -> List[int]:
        """LLM tokens of every model input of a merger version (4.6, 4.7): patches / align^2, overview first.
        The layout reads every count: an image's tiles share one size here, but the overview's differs."""
        return [rows * cols // (config.align * config.align) for rows, cols in self.patch_grids(config.patch_size)]


DEFAULT = SliceConfig()


def ensure_divide(length: float, patch_size: int) -> int:
    """The nearest multiple of `patch_size` (banker's rounding, as Python's round), at least one patch."""
    return max(round(length / patch_size) * patch_size, patch_size)


def best_resize(size: Tuple[float, float], config: SliceConfig, upscale: bool = False) -> Size:
    """Keep the aspect ratio, bring the area to about S^2 (only down unless `upscale`), snap to `config.step`."""
    width, height = size
    if width * height > config.scale_resolution * config.scale_resolution or upscale:
        ratio = width / height
        height = int(config.scale_resolution / math.sqrt(ratio))
        width = int(height * ratio)
    return ensure_divide(width, config.step), ensure_divide(height, config.step)


def best_grid(size: Size, config: SliceConfig) -> Optional[Tuple[int, int]]:
    """(cols, rows) whose aspect ratio is closest to the image's among 1 or 2 neighbours of its area in slices."""
    width, height = size
    multiple = min(math.ceil(width * height / (config.scale_resolution * config.scale_resolution)),
                   config.max_slice_nums)
    if multiple <= 1:
        return None
    log_ratio = math.log(width / height)
    grid, best_error = None, float("inf")
    for count in (multiple - 1, multiple, multiple + 1):
        if count == 1 or count > config.max_slice_nums:
            continue
        for cols in range(1, count + 1):
            if count % cols:
                continue
            error = abs(log_ratio - math.log(cols / (count // cols)))
            if error < best_error:  # strict: the first grid wins ties, as in the official loop
                grid, best_error = (cols, count // cols), error
    return grid


def refine_size(size: Size, grid: Tuple[int, int], config: SliceConfig) -> Size:
    """The size the image is resized to before it is cut into `grid` tiles of equal, patch-aligned size."""
    cols, rows = grid
    tile_width = ensure_divide(size[0], cols) / cols
    tile_height = ensure_divide(size[1], rows) / rows
    tile = best_resize((tile_width, tile_height), config, upscale=True)
    return tile[0] * cols, tile[1] * rows


def plan_slices(size: Size, config: SliceConfig = DEFAULT) -> SlicePlan:
    """The slice plan of an image of `size` (width, height)."""
    width, height = size
    if width < 1 or height < 1:
        raise ValueError("an image needs at least 1x1 pixels, got %dx%d" % (width, height))
    if config.max_slice_nums < 1:
        raise ValueError("max_slice_nums must be at least 1, got %d" % config.max_slice_nums)
    grid = best_grid(size, config)
    if grid is None:
        return SlicePlan(size, best_resize(size, config, upscale=True), None, None)
    return SlicePlan(size, best_resize(size, config), grid, refine_size(size, grid, config))
