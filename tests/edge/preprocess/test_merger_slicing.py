"""MiniCPM-V 4.6 / 4.7 slicing (edge.preprocess with SliceConfig.for_mode) equals transformers' image processor:
the geometry for thousands of sizes, the pixels of every slice for odd, extreme and small sizes, in both modes."""
from __future__ import annotations

import random
import types

import numpy as np
import pytest

from edge.preprocess.preprocessor import Preprocessor, slice_config
from edge.preprocess.resize import resize_exact, resize_torchvision
from edge.preprocess.slicing import DEFAULT, SliceConfig, plan_slices
from edge.preprocess.strips import NORMALISE, to_strip

pytest.importorskip("transformers.models.minicpmv4_6")
MODES = ["16x", "4x"]
# odd sizes, extreme aspect ratios (both ways), small images, camera frames, a size with ties in the grid choice
SIZES = [(1, 1), (7, 5), (33, 17), (100, 61), (448, 448), (449, 447), (500, 300), (640, 480), (1000, 300),
         (1344, 1344), (1920, 1080), (60, 2000), (3000, 90), (4000, 50), (27, 1500), (901, 899)]


@pytest.fixture(scope="module")
def image_processor():
    from transformers.models.minicpmv4_6 import MiniCPMV4_6ImageProcessorPil

    return MiniCPMV4_6ImageProcessorPil()


def _reference_geometry(processor, size, mode, max_slice_nums=9):
    """(grid (cols, rows) or None, source (w, h), refine (w, h) or None) by transformers' own methods."""
    width, height = size
    grid = processor.get_sliced_grid((height, width), max_slice_nums, 448)
    source = processor.find_best_resize((height, width), 448, 14, mode, allow_upscale=grid is None)
    if grid is None:
        return None, source[::-1], None
    refine = processor.get_refine_size((height, width), grid, 448, 14, mode, allow_upscale=True)
    return (grid[1], grid[0]), source[::-1], refine[::-1]


@pytest.mark.parametrize("mode", MODES)
def test_geometry_equals_transformers_for_many_sizes(image_processor, mode):
    rng = random.Random(46)
    sizes = SIZES + [(rng.randint(1, 5000), rng.randint(1, 5000)) for _ in range(1500)]
    for max_slice_nums in (9, 4, 1):
        config = SliceConfig(max_slice_nums=max_slice_nums).for_mode(mode)
        for size in sizes:
            plan = plan_slices(size, config)
            expected = _reference_geometry(image_processor, size, mode, max_slice_nums)
            assert (plan.grid, plan.source_size, plan.refine_size) == expected, (size, max_slice_nums)
            step = 28 if mode == "4x" else 56
            assert all(w % step == 0 and h % step == 0 for w, h in plan.slice_sizes)


def _image(width, height, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _our_pixel_values(preprocessor, image):
    prepared = preprocessor(np.asarray(image))
    strips = [to_strip(NORMALISE[s].transpose(2, 0, 1)) for s in prepared.slices]
    return prepared, np.concatenate(strips, axis=-1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", SIZES, ids=["%dx%d" % s for s in SIZES])
def test_slices_and_token_counts_equal_transformers(image_processor, mode, size):
    image = _image(*size, seed=size[0] * 7 + size[1])
    config = DEFAULT.for_mode(mode)
    prepared, ours = _our_pixel_values(Preprocessor(config), image)
    reference = image_processor(image, downsample_mode=mode, return_tensors="np")
    assert [tuple(t) for t in reference["target_sizes"].tolist()] == prepared.plan.patch_grids()
    np.testing.assert_allclose(ours, reference["pixel_values"][0], rtol=0, atol=1e-6)
    divisor = 4 if mode == "4x" else 16
    assert prepared.plan.token_counts(config) == [h * w // divisor for h, w in reference["target_sizes"].tolist()]


def test_resampler_versions_keep_patch_alignment():
    assert DEFAULT.step == 14 and DEFAULT.for_mode("16x").step == 56 and DEFAULT.for_mode("4x").step == 28
    assert plan_slices((1920, 1080)).source_size == (602, 336)  # docs/minicpmv.md worked example, unchanged
    assert plan_slices((1920, 1080), DEFAULT.for_mode("16x")).source_size == (616, 336)
    with pytest.raises(ValueError, match="downsample_mode"):
        DEFAULT.for_mode("8x")


def _bundle(layout, version):
    facts = types.SimpleNamespace(scale_resolution=448, max_slice_nums=9, patch_size=14, layout=layout)
    return types.SimpleNamespace(model=types.SimpleNamespace(slice=facts, version=version),
                                 target=types.SimpleNamespace(max_slices=4))


def test_slice_config_follows_the_bundle_layout():
    assert slice_config(_bundle("merger-16x", "4.6")) == SliceConfig(448, 4, 14, 4)
    assert slice_config(_bundle("merger-4x", "4.7")) == SliceConfig(448, 4, 14, 2)
    assert slice_config(_bundle("merger-4x", "4.7"), "4x") == SliceConfig(448, 4, 14, 2)
    assert slice_config(_bundle("masked-2d", "2.6")) == SliceConfig(448, 4, 14, 1)
    with pytest.raises(ValueError, match="exported for downsample_mode 16x"):
        slice_config(_bundle("merger-16x", "4.6"), "4x")
    with pytest.raises(ValueError, match="4.6 and 4.7 only"):
        slice_config(_bundle("masked-2d", "2.6"), "16x")


@pytest.mark.parametrize("size,target", [((1920, 1080), (616, 336)), ((640, 480), (504, 392)),
                                         ((300, 200), (448, 280)), ((50, 4000), (56, 4004))])
def test_torchvision_mode_is_within_two_levels_of_pillow(size, target):
    """What transformers' default (torchvision) processor changes against its PIL one: a few pixels by 1-2."""
    pytest.importorskip("torch")
    from PIL import Image

    rng = np.random.default_rng(3)
    smooth = rng.integers(0, 256, (size[1] // 8 + 2, size[0] // 8 + 2, 3), dtype=np.uint8)
    rgb = np.asarray(Image.fromarray(smooth).resize(size, Image.BILINEAR))
    ours, pillow = resize_torchvision(rgb, target), resize_exact(rgb, target)
    difference = np.abs(ours.astype(int) - pillow)
    assert ours.shape == pillow.shape and difference.max() <= 2 and 0 < (difference > 0).mean() < 0.01


@pytest.mark.parametrize("mode", MODES)
def test_torchvision_mode_equals_transformers_default_processor(mode):
    """Runs where torchvision is installed (not in this project's environment: see docs/minicpmv.md)."""
    pytest.importorskip("torchvision")
    from transformers.models.minicpmv4_6 import MiniCPMV4_6ImageProcessor

    for size in [(1000, 300), (1920, 1080), (33, 17), (60, 2000)]:
        image = _image(*size, seed=1)
        _, ours = _our_pixel_values(Preprocessor(DEFAULT.for_mode(mode), resize="torchvision"), image)
        reference = MiniCPMV4_6ImageProcessor()(image, downsample_mode=mode, return_tensors="np")
        np.testing.assert_allclose(ours, reference["pixel_values"][0], rtol=0, atol=1e-6)


def test_a_real_merger_bundle_slices_as_transformers(make_bundle, image_processor):
    """The layout a 4.6 export writes (default mode 16x) picks the merger slicing, checked on the processor."""
    from edge.bundle.manifest import Bundle

    bundle = Bundle.load(make_bundle("4.6"))
    config = slice_config(bundle)
    mode = {"merger-16x": "16x", "merger-4x": "4x"}[bundle.model.slice.layout]
    for size in [(1000, 300), (33, 17)]:
        reference = image_processor(_image(*size, seed=2), downsample_mode=mode, return_tensors="np")
        plan = plan_slices(size, config._replace(max_slice_nums=9))
        assert plan.patch_grids() == [tuple(t) for t in reference["target_sizes"].tolist()]
