"""The numpy Pillow resize (coefficients, pass order, fixed-point passes) equals PIL's BICUBIC bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edge.preprocess.pillow_resample import (
    HORIZONTAL,
    RULE_HORIZONTAL,
    RULE_SHRINK_HEIGHT,
    RULE_TALL,
    VERTICAL,
    axis_coefficients,
    pillow_pass_rule,
    resample_passes,
    resize_plan,
    resize_reference,
)
from edge.preprocess.scenes import synthetic_scene
from edge.preprocess.slicing import plan_slices

# The SPEC's worked examples: (frame size) -> the overview and, when sliced, the refined image.
WORKED_EXAMPLES = [(1920, 1080), (1344, 1344), (800, 600), (640, 480), (500, 300), (3000, 500)]


def pil_resize(rgb, size):
    return np.asarray(Image.fromarray(rgb, "RGB").resize(size, Image.BICUBIC))


def random_cases(count=240, seed=2026):
    """(input (w, h), output (w, h)) pairs: mixed up/down scaling, one axis unchanged, extreme aspect ratios."""
    rng = np.random.default_rng(seed)
    cases = []
    for index in range(count):
        kind = index % 6
        w, h = (int(v) for v in rng.integers(1, 260, 2))
        ow, oh = (int(v) for v in rng.integers(1, 320, 2))
        if kind == 1:  # width unchanged
            ow = w
        elif kind == 2:  # height unchanged
            oh = h
        elif kind == 3:  # very wide or very tall inputs
            w, h = (int(rng.integers(200, 900)), int(rng.integers(1, 6)))[:: 1 if rng.random() < 0.5 else -1]
        elif kind == 4:  # strong shrink
            ow, oh = max(1, w // int(rng.integers(3, 12))), max(1, h // int(rng.integers(3, 12)))
        cases.append(((w, h), (ow, oh)))
    return cases


def test_random_sizes_equal_pil_bit_for_bit():
    rng = np.random.default_rng(7)
    orders = set()
    for (w, h), size in random_cases():
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        got = resize_reference(rgb, size)
        want = pil_resize(rgb, size)
        assert got.shape == want.shape and np.array_equal(got, want), ((w, h), size)
        orders.add(tuple(resample_passes((w, h), size)))
    # the sample exercises every order Pillow 13 has: both passes either way round, one pass, none
    assert orders >= {(HORIZONTAL, VERTICAL), (VERTICAL, HORIZONTAL), (HORIZONTAL,), (VERTICAL,)}


@pytest.mark.parametrize("frame", WORKED_EXAMPLES, ids=lambda s: "%dx%d" % s)
def test_worked_examples_equal_pil(frame):
    rgb = synthetic_scene(*frame, seed=1)
    plan = plan_slices(frame)
    sizes = [plan.source_size] + ([plan.refine_size] if plan.refine_size else [])
    for size in sizes:
        assert np.array_equal(resize_reference(rgb, size), pil_resize(rgb, size)), (frame, size)


def test_worked_example_sizes_are_the_specs():
    plan = plan_slices((1920, 1080))
    assert (plan.source_size, plan.grid, plan.refine_size) == ((602, 336), (4, 2), (1680, 952))
    assert plan_slices((500, 300)).grid is None


def test_the_pass_order_decides_pixels():
    """Where Pillow 13 goes vertical first, horizontal first gives other pixels: the order is not cosmetic."""
    rgb = np.random.default_rng(3).integers(0, 256, (200, 100, 3), dtype=np.uint8)
    size = (90, 170)  # height loses 30 pixels, more than twice the width's 10
    assert resample_passes((100, 200), size, RULE_SHRINK_HEIGHT) == [VERTICAL, HORIZONTAL]
    assert resample_passes((100, 200), (90, 180), RULE_SHRINK_HEIGHT) == [HORIZONTAL, VERTICAL]
    assert np.array_equal(resize_reference(rgb, size, RULE_SHRINK_HEIGHT), pil_resize(rgb, size))
    assert not np.array_equal(resize_reference(rgb, size, RULE_HORIZONTAL), pil_resize(rgb, size))


def test_pass_rules_per_pillow_version():
    assert pillow_pass_rule() == RULE_SHRINK_HEIGHT  # the Pillow 13 installed with the project
    assert pillow_pass_rule("12.1.1") == RULE_HORIZONTAL
    assert pillow_pass_rule("12.3.0") == RULE_TALL
    assert pillow_pass_rule("13.0.0") == RULE_SHRINK_HEIGHT
    assert resample_passes((3, 400), (2, 100), RULE_TALL) == [VERTICAL, HORIZONTAL]
    assert resample_passes((4, 400), (2, 100), RULE_TALL) == [HORIZONTAL, VERTICAL]
    assert resample_passes((30, 40), (30, 40)) == []
    with pytest.raises(ValueError, match="unknown pass-order rule"):
        resample_passes((3, 4), (5, 6), "diagonal")


def test_plan_reads_only_the_rows_the_vertical_pass_needs():
    plan = resize_plan((1920, 1080), (602, 336))
    assert [step.axis for step in plan] == [HORIZONTAL, VERTICAL]
    rows = axis_coefficients(1080, 336)
    assert plan[0].row_start == rows.first[0] == 0
    assert plan[0].rows == rows.first[-1] + rows.count[-1] == 1080
    cropped = resize_plan((50, 400), (80, 5))[0]  # few output rows: the horizontal pass skips unread rows
    assert cropped.rows <= 400 and cropped.row_start == axis_coefficients(400, 5).first[0]


def test_coefficients_shape_and_rounding():
    """Upscaling uses at most 4 taps (support 2); shrinking widens the window by the scale; the fixed-point
    weights of every output pixel sum to 2**22 within the rounding of each tap."""
    up, down = axis_coefficients(300, 500), axis_coefficients(1920, 602)
    assert int(up.count.max()) == 4 and up.taps == 5
    assert down.taps == 15 and int(down.count.max()) <= 15
    for table in (up, down):
        sums = table.weights.sum(axis=1, dtype=np.int64)
        assert np.all(np.abs(sums - (1 << 22)) <= table.count)
    with pytest.raises(ValueError, match="at least 1"):
        axis_coefficients(0, 3)
