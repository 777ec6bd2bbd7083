"""Independent reference of the official MiniCPM-V image processor's slicing (docs/minicpmv.md, Slicing).

Transcribed from the official ``MiniCPMVImageProcessor`` (``slice_image``, ``get_sliced_grid``,
``find_best_resize``, ``get_refine_size``, ``split_to_patches``, the normalise step of ``preprocess``) and
written the way that code does it, on PIL images; it does not import ``edge``.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image

Size = Tuple[int, int]
SCALE_RESOLUTION = 448
PATCH_SIZE = 14
MEAN = np.array([0.5, 0.5, 0.5], dtype=np.float32)  # the processor's mean/std, cast to the image's float32
STD = np.array([0.5, 0.5, 0.5], dtype=np.float32)


def ensure_divide(length, patch_size):
    return max(round(length / patch_size) * patch_size, patch_size)


def find_best_resize(original_size, scale_resolution, patch_size, allow_upscale=False):
    width, height = original_size
    if (width * height > scale_resolution * scale_resolution) or allow_upscale:
        r = width / height
        height = int(scale_resolution / math.sqrt(r))
        width = int(height * r)
    best_width = ensure_divide(width, patch_size)
    best_height = ensure_divide(height, patch_size)
    return (best_width, best_height)


def get_refine_size(original_size, grid, scale_resolution, patch_size, allow_upscale=False):
    width, height = original_size
    grid_x, grid_y = grid
    refine_width = ensure_divide(width, grid_x)
    refine_height = ensure_divide(height, grid_y)
    grid_width = refine_width / grid_x
    grid_height = refine_height / grid_y
    best_grid_size = find_best_resize((grid_width, grid_height), scale_resolution, patch_size,
                                      allow_upscale=allow_upscale)
    return (best_grid_size[0] * grid_x, best_grid_size[1] * grid_y)


def get_sliced_grid(image_size, max_slice_nums, scale_resolution=SCALE_RESOLUTION):
    original_width, original_height = image_size
    log_ratio = math.log(original_width / original_height)
    ratio = original_width * original_height / (scale_resolution * scale_resolution)
    multiple = min(math.ceil(ratio), max_slice_nums)
    if multiple <= 1:
        return None
    candidate_split_grids_nums = []
    for i in [multiple - 1, multiple, multiple + 1]:
        if i == 1 or i > max_slice_nums:
            continue
        candidate_split_grids_nums.append(i)
    candidate_grids = []
    for split_grids_nums in candidate_split_grids_nums:
        m = 1
        while m <= split_grids_nums:
            if split_grids_nums % m == 0:
                candidate_grids.append([m, split_grids_nums // m])
            m += 1
    best_grid = [1, 1]
    min_error = float("inf")
    for grid in candidate_grids:
        error = abs(log_ratio - math.log(grid[0] / grid[1]))
        if error < min_error:
            best_grid = grid
            min_error = error
    return best_grid


def split_to_patches(image, grid):
    patches = []
    width, height = image.size
    grid_x = int(width / grid[0])
    grid_y = int(height / grid[1])
    for i in range(0, height, grid_y):
        images = []
        for j in range(0, width, grid_x):
            box = (j, i, j + grid_x, i + grid_y)
            images.append(image.crop(box))
        patches.append(images)
    return patches


def official_geometry(width: int, height: int, max_slice_nums: int = 9, scale_resolution: int = SCALE_RESOLUTION,
                      patch_size: int = PATCH_SIZE) -> Tuple[Optional[Size], Size, Optional[Size]]:
    """(grid (cols, rows) or None, source size, refine size or None) of a width x height image, sizes only."""
    grid = get_sliced_grid((width, height), max_slice_nums, scale_resolution)
    if grid is None:
        return None, find_best_resize((width, height), scale_resolution, patch_size, allow_upscale=True), None
    source = find_best_resize((width, height), scale_resolution, patch_size)
    refine = get_refine_size((width, height), grid, scale_resolution, patch_size, allow_upscale=True)
    return (grid[0], grid[1]), source, refine


def official_slice(image: Image.Image, max_slice_nums: int = 9, scale_resolution: int = SCALE_RESOLUTION,
                   patch_size: int = PATCH_SIZE) -> Tuple[Image.Image, List[List[Image.Image]], Optional[List[int]]]:
    """``slice_image``: (source image, rows of PIL tiles, best grid or None)."""
    original_size = image.size
    best_grid = get_sliced_grid(original_size, max_slice_nums, scale_resolution)
    patches: List[List[Image.Image]] = []
    if best_grid is None:
        best_size = find_best_resize(original_size, scale_resolution, patch_size, allow_upscale=True)
        source_image = image.resize(best_size, resample=Image.BICUBIC)
    else:
        best_resize = find_best_resize(original_size, scale_resolution, patch_size)
        source_image = image.copy().resize(best_resize, resample=Image.BICUBIC)
        refine_size = get_refine_size(original_size, best_grid, scale_resolution, patch_size, allow_upscale=True)
        refine_image = image.resize(refine_size, resample=Image.BICUBIC)
        patches = split_to_patches(refine_image, best_grid)
    return source_image, patches, best_grid


def official_slice_images(image: Image.Image, max_slice_nums: int = 9) -> List[Image.Image]:
    """``get_sliced_images``: the RGB slices in model order (source, then tiles row-major)."""
    source_image, patches, _ = official_slice(image.convert("RGB"), max_slice_nums)
    return [source_image] + [tile for row in patches for tile in row]


def official_pixel_values(image: Image.Image, max_slice_nums: int = 9) -> List[np.ndarray]:
    """``preprocess``: the normalised float32 [3, H, W] slices in model order (before the strip reshape)."""
    slices = [np.asarray(s).astype(np.float32) / 255 for s in official_slice_images(image, max_slice_nums)]
    return [((s - MEAN) / STD).transpose(2, 0, 1) for s in slices]
