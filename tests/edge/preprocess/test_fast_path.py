"""The fast CPU path: its strips against the official normalisation of the same tiles, its 2x halving against
numpy block means, its distance from Pillow, and the shared overview thread under concurrent callers."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from edge.preprocess.graph_inputs import pack_slices
from edge.preprocess.preprocessor import Preprocessor
from edge.preprocess.resize import _halve, resize_exact, resize_fast
from edge.preprocess.scenes import synthetic_scene
from edge.preprocess.strips import to_strip

RASTER_LAYOUTS = ("masked-2d", "unmasked-1d")  # strips in raster patch order (merger layouts nest 2x2 blocks)


def official_strip(tile: np.ndarray) -> np.ndarray:
    """The official processor's normalisation and layout of one RGB uint8 tile, in float32."""
    values = (tile.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    return to_strip(np.ascontiguousarray(values.transpose(2, 0, 1)))


def bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("size", [(1920, 1080), (640, 480), (2016, 1512), (1921, 1081), (3000, 500)])
@pytest.mark.parametrize("layout", RASTER_LAYOUTS)
def test_fast_strips_equal_the_official_normalisation_of_the_same_tiles(size, layout):
    tiles = Preprocessor(resize="fast")(synthetic_scene(*size, seed=size[1])).slices
    packed = pack_slices(tiles, layout)
    pixels = packed.vpm["pixel_values"]
    for index, tile in enumerate(tiles):
        expected = official_strip(tile)
        valid = expected.shape[2]
        np.testing.assert_array_equal(bits(pixels[index, :, :, :valid]), bits(expected))
        assert (bits(pixels[index, :, :, valid:]) == 0).all()  # padding is exactly +0.0
    contiguous = pack_slices([np.ascontiguousarray(tile) for tile in tiles], layout)
    for name, array in packed.vpm.items():
        np.testing.assert_array_equal(array, contiguous.vpm[name])


def test_tiles_of_any_strides_pack_alike():
    frame = synthetic_scene(900, 700, seed=3)
    tile = frame[7:7 + 14 * 20, 11:11 + 14 * 30]
    views = [tile, np.ascontiguousarray(tile), np.ascontiguousarray(tile.transpose(2, 0, 1)).transpose(1, 2, 0),
             np.ascontiguousarray(tile[::-1, ::-1])[::-1, ::-1]]
    reference = official_strip(tile)
    for view in views:
        np.testing.assert_array_equal(bits(pack_slices([view], "masked-2d").vpm["pixel_values"][0]), bits(reference))


@pytest.mark.parametrize("size,target", [((1920, 1080), (602, 336)), ((2016, 1512), (259, 196)),
                                         ((64, 36), (10, 6)), ((66, 40), (22, 13))])
def test_halving_is_the_rounded_2x2_block_mean(size, target):
    rgb = synthetic_scene(*size, seed=1)
    expected = rgb.astype(np.int32)
    while (expected.shape[0] % 2 == 0 and expected.shape[1] % 2 == 0 and expected.shape[1] >= 3 * target[0]
           and expected.shape[0] >= 3 * target[1]):
        h, w = expected.shape[0] // 2, expected.shape[1] // 2
        expected = (expected.reshape(h, 2, w, 2, 3).sum(axis=(1, 3)) + 2) // 4
    np.testing.assert_array_equal(_halve(cv2, rgb, target), expected)


@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720), (2016, 1512), (3000, 2000), (1921, 1081)])
def test_fast_overview_and_refined_image_stay_near_pillow(size):
    from edge.preprocess.slicing import plan_slices

    rgb = synthetic_scene(*size, seed=2)
    plan = plan_slices(size)
    for target in (plan.source_size, plan.refine_size):
        fast = resize_fast(rgb, target)
        exact = resize_exact(rgb, target)
        assert fast.shape == exact.shape and fast.dtype == np.uint8
        levels = np.abs(fast.astype(np.int16) - exact.astype(np.int16))
        assert levels.mean() < 1.0 and np.percentile(levels, 99) <= 16, (target, levels.mean())


def test_concurrent_callers_get_their_own_slices():
    frames = [synthetic_scene(960, 540, seed=seed) for seed in range(3)]
    for mode in ("exact", "fast"):
        preprocessor = Preprocessor(resize=mode)
        sequential = [preprocessor(frame).slices for frame in frames]
        with ThreadPoolExecutor(max_workers=4) as pool:
            concurrent = list(pool.map(lambda frame, p=preprocessor: p(frame).slices, frames * 2))
        for got, want in zip(concurrent, sequential * 2):
            assert len(got) == len(want)
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)


def test_a_forked_child_resizes_on_a_fresh_helper_thread():
    import os
    import signal

    frame = synthetic_scene(960, 540, seed=5)
    preprocessor = Preprocessor(resize="fast")
    want = preprocessor(frame).slices  # the parent's helper thread exists from here on
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if it resizes (a dead inherited thread would hang it)
        signal.signal(signal.SIGALRM, lambda *_: os._exit(2))
        signal.alarm(30)
        got = preprocessor(frame).slices
        os._exit(0 if all(np.array_equal(a, b) for a, b in zip(got, want)) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_fp16_strips_are_the_float32_strips_rounded():
    tiles = Preprocessor(resize="fast")(synthetic_scene(1280, 720, seed=6)).slices
    half = pack_slices(tiles, "masked-2d", np.float16).vpm["pixel_values"]
    full = pack_slices(tiles, "masked-2d", np.float32).vpm["pixel_values"]
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half.view(np.uint16), full.astype(np.float16).view(np.uint16))
