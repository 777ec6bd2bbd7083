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

from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

from .position_ids import slice_position_ids, strip_position_ids
from .strips import NORMALISE, PATCH, patch_grid, to_strip

_NORMALISE_FP16_BITS = NORMALISE.astype(np.float16).view(np.uint16)  # the same table for fp16 graph inputs
LAYOUTS = ("masked-2d", "unmasked-1d", "merger-16x", "merger-4x")


class PackedSlices(NamedTuple):
    """Graph feeds for one batch: VPM inputs, Resampler inputs and the per-slice (rows, cols)."""

    vpm: Dict[str, Any]  # numpy arrays; pixel_values may be a DeviceTensor
    resampler: Dict[str, np.ndarray]
    sizes: List[Tuple[int, int]]


def _copy_strip(tile: np.ndarray, target: np.ndarray) -> None:
    """Lay an RGB [14h, 14w, 3] tile (any strides) into `target`, a uint8 [3, 14, 14*h*w] strip.

    Strip row y of a channel is the tile's rows y, 14 + y, 28 + y, ... of that channel side by side, so each
    channel is one copy of whole tile rows: contiguous runs where the tile is channel-planar underneath.
    """
    rows, _ = patch_grid(tile)
    width = tile.shape[1]
    for channel in range(3):
        plane = tile[:, :, channel].reshape(rows, PATCH, width)
        np.copyto(target[channel].reshape(PATCH, rows, width), plane.transpose(1, 0, 2))


def _normalise(values: np.ndarray, out: np.ndarray) -> None:
    """out[...] = NORMALISE[values] for C-contiguous 2-D arrays; OpenCV's LUT where present (~10x numpy's),
    written straight into `out` for float32 and (as 16-bit patterns) float16."""
    try:
        import cv2
    except ImportError:
        out[...] = NORMALISE[values]
        return
    if out.dtype == np.float32:
        cv2.LUT(values, NORMALISE, dst=out)
    elif out.dtype == np.float16:
        cv2.LUT(values, _NORMALISE_FP16_BITS, dst=out.view(np.uint16))
    else:
        out[...] = cv2.LUT(values, NORMALISE)


def _pack_pixels(slices: Sequence[np.ndarray], sizes: Sequence[Tuple[int, int]], longest: int,
                 dtype: np.dtype) -> np.ndarray:
    """[B, 3, 14, 14*longest] strips, zero beyond each slice's patches (2.5 attends to that padding)."""
    if slices[0].dtype != np.uint8:
        pixels = np.zeros((len(slices), 3, PATCH, PATCH * longest), dtype=dtype)
        for index, (slice_, (rows, cols)) in enumerate(zip(slices, sizes)):
            pixels[index, :, :, : PATCH * rows * cols] = to_strip(slice_)
        return pixels
    pixels = np.empty((len(slices), 3, PATCH, PATCH * longest), dtype=dtype)
    # RGB tiles: lay the strips out in uint8 (a quarter of the bytes), normalise the batch in one pass into
    # uninitialised memory, then zero only the padding (which the table lookup turned into -1).
    staging = np.empty(pixels.shape, dtype=np.uint8)
    for index, (tile, (rows, cols)) in enumerate(zip(slices, sizes)):
        _copy_strip(tile, staging[index, :, :, : PATCH * rows * cols])
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
    return index_inputs(sizes, layout, _pack_pixels(slices, sizes, longest, dtype))


def index_inputs(sizes: Sequence[Tuple[int, int]], layout: str, pixels: Any) -> PackedSlices:
    """The feeds of a batch of slices with these (rows, cols): `pixels` (the [B, 3, 14, 14*longest] strips, on
    the host or on the device) with the int32 position ids, patch counts and tgt_sizes the layout asks for."""
    longest = max(rows * cols for rows, cols in sizes)
    position_ids = np.zeros((len(sizes), longest), dtype=np.int32)
    patch_counts = np.empty(len(sizes), dtype=np.int32)
    for index, (rows, cols) in enumerate(sizes):
        count = rows * cols
        if layout == "masked-2d":
            position_ids[index, :count] = slice_position_ids(rows, cols)
            patch_counts[index] = count
        else:
            position_ids[index] = strip_position_ids(longest)
            patch_counts[index] = longest
    tgt_sizes = np.array(sizes, dtype=np.int32).reshape(len(sizes), 2)
    return PackedSlices(
        vpm={"pixel_values": pixels, "position_ids": position_ids, "patch_counts": patch_counts},
        resampler={"tgt_sizes": tgt_sizes},
        sizes=list(sizes),
    )


def slice_token_counts(sizes: Sequence[Tuple[int, int]], layout: str, query_num: int) -> List[int]:
    """Tokens each slice of a batch yields: the fixed query count, or (merger layouts) its patches / 4^levels."""
    if not layout.startswith("merger-"):
        return [query_num] * len(sizes)
    from .merger_inputs import LAYOUT_MODES, token_count

    return [token_count(rows, cols, LAYOUT_MODES[layout]) for rows, cols in sizes]
