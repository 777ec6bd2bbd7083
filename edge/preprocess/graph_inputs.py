"""Host-side inputs of the VPM and Resampler graphs for a batch of normalised slices.

The graphs hold no data-dependent Python: everything that depends on slice sizes (the official position ids,
the valid patch counts, the (rows, cols) of each slice) is computed here, in numpy, and fed as small int32
tensors (TensorRT 8.x has no int64). Two layouts exist, recorded per model version in the bundle manifest:

- ``masked-2d`` (2.6, o-2.6, 4.0, 4.5): per-slice 2-D ids, padded patches keep id 0 and are masked as keys.
- ``merger-16x`` / ``merger-4x`` (4.6, 4.7, per downsample mode): patches in merge order, see
  edge.preprocess.merger_inputs; the Resampler's place is taken by the downsample MLP, which needs no feed but
  ``vision_embeds``, and slice i yields ``slice_token_counts(...)[i]`` tokens, the first of its output row.
- ``unmasked-1d`` (2.5): the official mask bug makes every patch valid, so ids are 1-D over the batch's
  longest strip, nothing is masked, and the zero padding takes part in attention. One image's slices must
  therefore be packed into one batch, padded to that image's longest slice.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

from .position_ids import slice_position_ids, strip_position_ids

PATCH = 14
NORMALISE = (np.arange(256, dtype=np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
LAYOUTS = ("masked-2d", "unmasked-1d", "merger-16x", "merger-4x")


class PackedSlices(NamedTuple):
    """Graph feeds for one batch: VPM inputs, Resampler inputs and the per-slice (rows, cols)."""

    vpm: Dict[str, np.ndarray]
    resampler: Dict[str, np.ndarray]
    sizes: List[Tuple[int, int]]


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


def _tile_strip(tile: np.ndarray) -> np.ndarray:
    """An RGB [14h, 14w, 3] tile as a [3, 14, h, w, 14] view whose C-order is the official strip layout."""
    rows, cols = patch_grid(tile)
    return tile.reshape(rows, PATCH, cols, PATCH, 3).transpose(4, 1, 0, 2, 3)


def _normalise(values: np.ndarray, out: np.ndarray) -> None:
    """out[...] = NORMALISE[values] for C-contiguous 2-D arrays; OpenCV's LUT where present (~10x numpy's)."""
    try:
        import cv2
    except ImportError:
        out[...] = NORMALISE[values]
        return
    if out.dtype == np.float32:
        cv2.LUT(values, NORMALISE, dst=out)
    else:
        out[...] = cv2.LUT(values, NORMALISE)


def _pack_pixels(slices: Sequence[np.ndarray], sizes: Sequence[Tuple[int, int]], longest: int,
                 dtype: np.dtype) -> np.ndarray:
    """[B, 3, 14, 14*longest] strips, zero beyond each slice's patches (2.5 attends to that padding)."""
    pixels = np.zeros((len(slices), 3, PATCH, PATCH * longest), dtype=dtype)
    if slices[0].dtype != np.uint8:
        for index, (slice_, (rows, cols)) in enumerate(zip(slices, sizes)):
            pixels[index, :, :, : PATCH * rows * cols] = to_strip(slice_)
        return pixels
    # RGB tiles: lay the strips out in uint8 (a quarter of the bytes), normalise the batch in one pass,
    # then restore the zero padding that the table lookup turned into -1.
    staging = np.zeros(pixels.shape, dtype=np.uint8)
    for index, (tile, (rows, cols)) in enumerate(zip(slices, sizes)):
        target = staging[index, :, :, : PATCH * rows * cols].reshape(3, PATCH, rows, cols, PATCH)
        np.copyto(target, _tile_strip(tile))
    _normalise(staging.reshape(-1, PATCH * longest), pixels.reshape(-1, PATCH * longest))
    for index, (rows, cols) in enumerate(sizes):
        pixels[index, :, :, PATCH * rows * cols:] = 0
    return pixels


def pack_slices(slices: Sequence[np.ndarray], layout: str, dtype: np.dtype = np.float32) -> PackedSlices:
    """Pack slices into zero-padded strips and their int32 index inputs.

    A slice is either normalised float [3, 14h, 14w] or an RGB uint8 [14h, 14w, 3] tile, normalised here with
    the official ``(x / 255 - 0.5) / 0.5``.
    """
    if layout not in LAYOUTS:
        raise ValueError("unknown slice layout %r (expected one of %s)" % (layout, ", ".join(LAYOUTS)))
    if not slices:
        raise ValueError("pack_slices needs at least one slice")
    if layout.startswith("merger-"):
        from .merger_inputs import LAYOUT_MODES, pack_merger_slices

        merged = pack_merger_slices(slices, LAYOUT_MODES[layout], dtype=dtype)
        return PackedSlices(vpm=merged.vpm, resampler={}, sizes=merged.sizes)
    if len({s.dtype == np.uint8 for s in slices}) > 1:
        raise ValueError("pack_slices takes either RGB uint8 tiles or normalised float slices, not both")
    sizes = [patch_grid(s) for s in slices]
    longest = max(rows * cols for rows, cols in sizes)
    pixels = _pack_pixels(slices, sizes, longest, dtype)
    position_ids = np.zeros((len(slices), longest), dtype=np.int32)
    patch_counts = np.empty(len(slices), dtype=np.int32)
    for index, (rows, cols) in enumerate(sizes):
        count = rows * cols
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


def slice_token_counts(sizes: Sequence[Tuple[int, int]], layout: str, query_num: int) -> List[int]:
    """Tokens each slice of a batch yields: the fixed query count, or (merger layouts) its patches / 4^levels."""
    if not layout.startswith("merger-"):
        return [query_num] * len(sizes)
    from .merger_inputs import LAYOUT_MODES, token_count

    return [token_count(rows, cols, LAYOUT_MODES[layout]) for rows, cols in sizes]
