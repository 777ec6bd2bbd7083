"""Host-side inputs of the VPM and Resampler graphs for a batch of normalised slices.

The graphs hold no data-dependent Python: everything that depends on slice sizes (the official position ids,
the valid patch counts, the (rows, cols) of each slice) is computed here, in numpy, and fed as small int32
tensors (TensorRT 8.x has no int64). Two layouts exist, recorded per model version in the bundle manifest:

- ``masked-2d`` (2.6, o-2.6, 4.0, 4.5): per-slice 2-D ids, padded patches keep id 0 and are masked as keys.
- ``unmasked-1d`` (2.5): the official mask bug makes every patch valid, so ids are 1-D over the batch's
  longest strip, nothing is masked, and the zero padding takes part in attention. One image's slices must
  therefore be packed into one batch, padded to that image's longest slice.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

from .position_ids import slice_position_ids, strip_position_ids

PATCH = 14
LAYOUTS = ("masked-2d", "unmasked-1d")


class PackedSlices(NamedTuple):
    """Graph feeds for one batch: VPM inputs, Resampler inputs and the per-slice (rows, cols)."""

    vpm: Dict[str, np.ndarray]
    resampler: Dict[str, np.ndarray]
    sizes: List[Tuple[int, int]]


def patch_grid(slice_chw: np.ndarray) -> Tuple[int, int]:
    """(rows, cols) of patches of a [3, 14*rows, 14*cols] slice."""
    channels, height, width = slice_chw.shape
    if channels != 3 or height % PATCH or width % PATCH or not height or not width:
        raise ValueError("a slice must be [3, 14*rows, 14*cols], got %s" % (tuple(slice_chw.shape),))
    return height // PATCH, width // PATCH


def to_strip(slice_chw: np.ndarray) -> np.ndarray:
    """[3, 14h, 14w] -> the official [3, 14, 14*h*w] strip: patch l = r*w + c in columns 14l..14l+13."""
    rows, cols = patch_grid(slice_chw)
    patches = slice_chw.reshape(3, rows, PATCH, cols, PATCH).transpose(0, 2, 1, 3, 4)
    return patches.reshape(3, PATCH, rows * cols * PATCH)


def pack_slices(slices: Sequence[np.ndarray], layout: str, dtype: np.dtype = np.float32) -> PackedSlices:
    """Pack normalised [3, 14h, 14w] slices into zero-padded strips and their int32 index inputs."""
    if layout not in LAYOUTS:
        raise ValueError("unknown slice layout %r (expected one of %s)" % (layout, ", ".join(LAYOUTS)))
    if not slices:
        raise ValueError("pack_slices needs at least one slice")
    sizes = [patch_grid(s) for s in slices]
    longest = max(rows * cols for rows, cols in sizes)
    pixels = np.zeros((len(slices), 3, PATCH, PATCH * longest), dtype=dtype)
    position_ids = np.zeros((len(slices), longest), dtype=np.int32)
    patch_counts = np.empty(len(slices), dtype=np.int32)
    for index, (slice_chw, (rows, cols)) in enumerate(zip(slices, sizes)):
        count = rows * cols
        pixels[index, :, :, : PATCH * count] = to_strip(slice_chw)
        if layout == "masked-2d":
            position_ids[index, :count] = slice_position_ids(rows, cols)
            patch_counts[index] = count
        else:
            position_ids[index] = strip_position_ids(longest)
            patch_counts[index] = longest
    tgt_sizes = np.array(sizes, dtype=np.int32).reshape(len(slices), 2)
    return PackedSlices(
        vpm={"pixel_values": pixels, "position_ids": position_ids, "patch_counts": patch_counts},
        resampler={"tgt_sizes": tgt_sizes},
        sizes=sizes,
    )
