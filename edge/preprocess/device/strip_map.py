"""Host-side tables of the strip writer: where each slice's strip goes in the device buffer and where it reads.

One device buffer holds the strips of every batch of a frame, batch after batch; batch b is a C-contiguous
[size, 3, 14, 14 * longest] array whose slices are zero-padded to its longest slice, as
``edge.preprocess.graph_inputs.pack_slices`` lays them out. The writer kernel reads one row of 8 int32 per slice.
"""
from __future__ import annotations

from typing import List, NamedTuple, Sequence, Tuple

import numpy as np

from ..slicing import SlicePlan
from ..strips import NORMALISE, PATCH

OVERVIEW, REFINED = 0, 1
PARAMS_PER_SLICE = 8  # image, x0, y0, cols, rows, output offset, strip patches, unused


class BatchLayout(NamedTuple):
    """One batch of slices in the strips buffer: its (rows, cols) of patches, its longest strip, where it starts."""

    first: int
    sizes: List[Tuple[int, int]]
    longest: int
    offset: int  # elements from the start of the buffer

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        return len(self.sizes), 3, PATCH, PATCH * self.longest

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape))


def batch_layouts(patch_grids: Sequence[Tuple[int, int]], batches: Sequence[Tuple[int, int]]) -> List[BatchLayout]:
    """Layouts of the (first, size) batches of a frame whose slices have these (rows, cols), packed back to back."""
    layouts, offset = [], 0
    for first, size in batches:
        sizes = list(patch_grids[first:first + size])
        layout = BatchLayout(first, sizes, max(rows * cols for rows, cols in sizes), offset)
        layouts.append(layout)
        offset += layout.elements
    return layouts


def strip_elements(layouts: Sequence[BatchLayout]) -> int:
    """Size of the strips buffer in elements."""
    return sum(layout.elements for layout in layouts)


def slice_params(plan: SlicePlan, layouts: Sequence[BatchLayout]) -> np.ndarray:
    """int32 [slices, 8]: for each slice in model order, its source image and pixel origin, its patch grid, the
    element offset of its strip and its batch's strip length. The overview is slice 0; tile k of the refined
    image (row-major) is slice k + 1."""
    tile_width, tile_height = plan.tile_size or (0, 0)
    columns = plan.grid[0] if plan.grid else 1
    params = np.zeros((sum(len(layout.sizes) for layout in layouts), PARAMS_PER_SLICE), dtype=np.int32)
    for layout in layouts:
        per_slice = 3 * PATCH * PATCH * layout.longest
        for position, (rows, cols) in enumerate(layout.sizes):
            index = layout.first + position
            tile = index - 1
            origin = (0, 0) if index == 0 else ((tile % columns) * tile_width, (tile // columns) * tile_height)
            params[index] = (OVERVIEW if index == 0 else REFINED, origin[0], origin[1], cols, rows,
                             layout.offset + position * per_slice, layout.longest, 0)
    return params


def normalise_table(dtype: np.dtype) -> np.ndarray:
    """The 256 normalised values ``(x / 255 - 0.5) / 0.5`` in `dtype` (float32, or float16 given as its uint16
    bits), the same numbers pack_slices writes."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return NORMALISE.copy()
    if dtype == np.float16:
        return NORMALISE.astype(np.float16).view(np.uint16)
    raise ValueError("device strips are float32 or float16, not %s" % dtype)
