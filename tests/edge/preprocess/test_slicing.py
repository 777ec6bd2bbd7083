"""Slice plans equal the worked examples of docs/minicpmv.md and the official processor's arithmetic
(references/slicing.py)."""
from __future__ import annotations

import math
import random

import pytest

from edge.preprocess.slicing import SliceConfig, plan_slices
from references.slicing import official_geometry, split_to_patches

# docs/minicpmv.md, Slicing, worked examples: (W, H) -> grid (cols, rows), source size, slice size.
SPEC_EXAMPLES = [
    ((1344, 1344), (3, 3), (448, 448), (448, 448)),
    ((1920, 1080), (4, 2), (602, 336), (420, 476)),
    ((800, 600), (2, 2), (518, 392), (518, 392)),
    ((640, 480), (2, 1), (518, 392), (364, 546)),
    ((448, 448), None, (448, 448), None),
    ((500, 300), None, (574, 350), None),
    ((3000, 500), (7, 1), (1092, 182), (420, 476)),
    ((4000, 50), None, (4004, 56), None),  # not a worked example: the orin-nano-4gb profile note (4x286 patches)
]


class _SizeOnly:
    """Stands in for a PIL image in the official split_to_patches, which reads only .size and calls .crop."""

    def __init__(self, size):
        self.size = size

    def crop(self, box):
        return _SizeOnly((box[2] - box[0], box[3] - box[1]))


def reference_slice_sizes(source, grid, refine):
    """(W, H) of every model input as the official code makes them: source, then its crops row by row."""
    if grid is None:
        return [source]
    return [source] + [tile.size for row in split_to_patches(_SizeOnly(refine), grid) for tile in row]


@pytest.mark.parametrize("size,grid,source,tile", SPEC_EXAMPLES)
def test_spec_worked_examples(size, grid, source, tile):
    plan = plan_slices(size)
    assert (plan.grid, plan.source_size, plan.tile_size) == (grid, source, tile)
    assert len(plan.slice_sizes) == 1 + (grid[0] * grid[1] if grid else 0)
    reference_grid, reference_source, refine = official_geometry(*size)  # the reference agrees with the docs too
    assert (reference_grid, reference_source) == (grid, source)
    assert reference_slice_sizes(reference_source, reference_grid, refine)[1:] == [tile] * (len(plan.slice_sizes) - 1)


def test_wide_strip_is_one_slice_of_4_by_286_patches():
    assert plan_slices((4000, 50)).patch_grids() == [(4, 286)]


def random_sizes(count, seed):
    """Sides in 1..5000, half uniform, half log-uniform (aspect ratios up to 5000:1), slice budgets 1..9."""
    rng = random.Random(seed)
    sizes = [(1, 1), (1, 5000), (5000, 1), (5000, 5000), (449, 448), (448, 449), (4000, 50), (50, 4000)]
    cases = [(w, h, 9) for w, h in sizes]
    def side():
        if rng.random() < 0.5:
            return rng.randint(1, 5000)
        return max(1, min(5000, round(math.exp(rng.uniform(0, math.log(5000))))))

    while len(cases) < count:
        cases.append((side(), side(), rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9])))
    return cases


@pytest.mark.parametrize("seed", [0, 1])
def test_random_sizes_equal_the_official_arithmetic(seed):
    mismatched = []
    cases = random_sizes(150, seed)
    for width, height, max_slice_nums in cases:
        plan = plan_slices((width, height), SliceConfig(max_slice_nums=max_slice_nums))
        grid, source, refine = official_geometry(width, height, max_slice_nums)
        sizes = reference_slice_sizes(source, grid, refine)
        got = (plan.grid, plan.source_size, plan.refine_size, plan.slice_sizes, plan.patch_grids())
        want = (grid, source, refine, sizes, [(h // 14, w // 14) for w, h in sizes])
        if got != want:
            mismatched.append(((width, height, max_slice_nums), got, want))
    assert mismatched == []
    assert sum(1 for w, h, m in cases if official_geometry(w, h, m)[0] is not None) > 50  # slicing was exercised


def test_every_slice_is_patch_aligned_and_tiles_cover_the_refined_image():
    for width, height, max_slice_nums in random_sizes(200, 2):
        plan = plan_slices((width, height), SliceConfig(max_slice_nums=max_slice_nums))
        assert all(w % 14 == 0 and h % 14 == 0 and w and h for w, h in plan.slice_sizes)
        if plan.grid is not None:
            assert 2 <= plan.grid[0] * plan.grid[1] <= max_slice_nums
            (cols, rows), (tile_w, tile_h) = plan.grid, plan.tile_size
            assert (tile_w * cols, tile_h * rows) == plan.refine_size


def test_ties_go_to_the_first_grid_as_in_the_official_loop():
    # Square images tie between (cols, rows) and (rows, cols) whenever no square grid is a candidate.
    cases = [(side, budget) for side in range(449, 1500, 3) for budget in range(1, 10)]
    tied = [(s, m) for s, m in cases if official_geometry(s, s, m)[0] not in (None, (2, 2), (3, 3))]
    assert len(tied) > 100
    mismatched = [(s, m) for s, m in tied
                  if plan_slices((s, s), SliceConfig(max_slice_nums=m)).grid != official_geometry(s, s, m)[0]]
    assert mismatched == []


@pytest.mark.parametrize("size,max_slice_nums", [((0, 10), 9), ((10, 0), 9), ((-3, 10), 9), ((100, 100), 0),
                                                 ((1920, 1080), -1)])
def test_invalid_input_refused(size, max_slice_nums):
    with pytest.raises(ValueError):
        plan_slices(size, SliceConfig(max_slice_nums=max_slice_nums))
