"""Preprocessing: exact mode equals the official processor bit for bit; colour inputs; fast mode stays close."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edge.preprocess.graph_inputs import pack_slices
from edge.preprocess.preprocessor import Preprocessor
from edge.preprocess.strips import to_strip
from references.slicing import official_geometry, official_pixel_values, official_slice_images


def noise_image(width, height, channels=3, seed=0):
    shape = (height, width, channels) if channels else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def smooth_image(width, height):
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 255 * x / max(width - 1, 1)
    green = 255 * y / max(height - 1, 1)
    blue = 127.5 + 127.5 * np.sin(x / 37.0) * np.cos(y / 23.0)
    return np.ascontiguousarray(np.stack([red, green, blue], axis=2).round().astype(np.uint8))


def natural_image(width, height, seed=0):
    """Gradients, filled rectangles and discs, mild noise: edges and flat areas as in camera frames."""
    rng = np.random.default_rng(seed)
    image = smooth_image(width, height).astype(np.float64)
    y, x = np.mgrid[0:height, 0:width]
    for _ in range(12):
        colour = rng.integers(0, 256, 3)
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        if rng.random() < 0.5:
            w, h = rng.integers(width // 20, width // 4), rng.integers(height // 20, height // 4)
            image[y0:y0 + h, x0:x0 + w] = colour
        else:
            radius = rng.integers(min(width, height) // 20, min(width, height) // 5)
            image[(x - x0) ** 2 + (y - y0) ** 2 <= radius ** 2] = colour
    image += rng.normal(0, 3, image.shape)
    return image.clip(0, 255).round().astype(np.uint8)


def bits(array):
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)


def assert_packed_equals_official(packed, reference):
    """Each packed strip's valid part is the official slice, bit for bit; the rest is exactly +0.0."""
    pixels = packed.vpm["pixel_values"]
    assert pixels.dtype == np.float32 and pixels.shape[0] == len(reference)
    for index, expected in enumerate(reference):
        strip = to_strip(expected)
        valid = strip.shape[2]
        np.testing.assert_array_equal(bits(pixels[index, :, :, :valid]), bits(strip))
        assert (bits(pixels[index, :, :, valid:]) == 0).all()


EXACT_CASES = [((1920, 1080), "noise"), ((500, 300), "noise"), ((3000, 500), "noise"), ((812, 247), "noise"),
               ((4000, 50), "noise"), ((10, 10), "noise"), ((1, 1), "noise"), ((333, 517), "noise"),
               ((1291, 733), "noise"), ((1920, 1080), "smooth"), ((641, 479), "smooth")]


@pytest.mark.parametrize("size,content", EXACT_CASES)
def test_exact_mode_equals_the_official_processor(size, content):
    width, height = size
    rgb = noise_image(width, height, seed=width * height) if content == "noise" else smooth_image(width, height)
    prepared = Preprocessor(resize="exact")(rgb)
    reference = official_pixel_values(Image.fromarray(rgb, "RGB"))
    grid, source, _ = official_geometry(width, height)
    assert prepared.plan.grid == grid and prepared.plan.source_size == source
    assert [s.shape[:2] for s in prepared.slices] == [r.shape[1:] for r in reference]
    assert_packed_equals_official(pack_slices(prepared.slices, "masked-2d"), reference)


@pytest.mark.parametrize("size", [(1920, 1080), (3000, 500)])
def test_unmasked_layout_pads_with_exact_zeros(size):
    rgb = noise_image(*size, seed=7)
    prepared = Preprocessor(resize="exact")(rgb)
    assert_packed_equals_official(pack_slices(prepared.slices, "unmasked-1d"),
                                  official_pixel_values(Image.fromarray(rgb, "RGB")))


def slices_of(image, color="rgb"):
    return Preprocessor(resize="exact")(image, color).slices


def assert_same_slices(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == np.uint8
        np.testing.assert_array_equal(a, np.asarray(b))


def test_rgb_bgr_and_pil_inputs_give_identical_slices():
    rgb = noise_image(900, 700, seed=3)
    reference = slices_of(rgb)
    assert_same_slices(reference, official_slice_images(Image.fromarray(rgb, "RGB")))
    assert_same_slices(slices_of(np.ascontiguousarray(rgb[:, :, ::-1]), color="bgr"), reference)
    assert_same_slices(slices_of(rgb[:, :, ::-1], color="bgr"), reference)  # a negative-stride view
    assert_same_slices(slices_of(Image.fromarray(rgb, "RGB")), reference)


def test_strided_view_of_a_larger_frame():
    frame = noise_image(1000, 800, seed=4)
    view = frame[50:750:2, 100:900]
    assert_same_slices(slices_of(view), official_slice_images(Image.fromarray(np.ascontiguousarray(view), "RGB")))


def test_alpha_is_dropped_as_pil_convert_does():
    rgba = noise_image(700, 500, channels=4, seed=5)
    reference = official_slice_images(Image.fromarray(rgba, "RGBA").convert("RGB"))
    assert_same_slices(slices_of(rgba), reference)
    assert_same_slices(slices_of(np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]]), color="bgr"), reference)
    assert_same_slices(slices_of(Image.fromarray(rgba, "RGBA")), reference)
    composited = Image.alpha_composite(Image.new("RGBA", (700, 500), "white"), Image.fromarray(rgba, "RGBA"))
    assert not np.array_equal(slices_of(rgba)[0], np.asarray(official_slice_images(composited)[0]))


def test_grayscale_is_replicated_as_pil_convert_does():
    gray = noise_image(640, 480, channels=0, seed=6)
    reference = official_slice_images(Image.fromarray(gray, "L").convert("RGB"))
    assert_same_slices(slices_of(gray), reference)
    assert_same_slices(slices_of(gray[:, :, None]), reference)
    assert_same_slices(slices_of(Image.fromarray(gray, "L")), reference)


def test_palette_pil_image_follows_pil_convert():
    image = Image.fromarray(noise_image(300, 200, seed=8), "RGB").convert("P")
    assert_same_slices(slices_of(image), official_slice_images(image))


@pytest.mark.parametrize("array", [
    np.zeros((20, 20, 3), np.float32), np.zeros((20, 20, 3), np.uint16), np.zeros((20, 20), np.int64),
    np.zeros((20, 20, 2), np.uint8), np.zeros((20, 20, 5), np.uint8), np.zeros((2, 20, 20, 3), np.uint8),
    np.zeros((20,), np.uint8), np.zeros((0, 20, 3), np.uint8), np.zeros((20, 0), np.uint8),
])
def test_bad_arrays_refused(array):
    with pytest.raises(ValueError):
        Preprocessor()(array)


def test_bad_color_refused():
    rgb = noise_image(20, 20)
    with pytest.raises(ValueError):
        Preprocessor()(rgb, color="xyz")
    with pytest.raises(ValueError):
        Preprocessor()(Image.fromarray(rgb, "RGB"), color="bgr")


@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720), (500, 300), (3000, 500), (4000, 50), (333, 517)])
def test_fast_mode_same_geometry_and_close_pixels(size):
    rgb = natural_image(*size, seed=size[0])
    exact = Preprocessor(resize="exact")(rgb)
    fast = Preprocessor(resize="fast")(rgb)
    assert fast.plan == exact.plan
    assert [s.shape for s in fast.slices] == [s.shape for s in exact.slices]
    assert all(s.dtype == np.uint8 for s in fast.slices)
    differences = [np.abs(f.astype(np.int16) - e.astype(np.int16)) for f, e in zip(fast.slices, exact.slices)]
    mean_difference = np.concatenate([d.ravel() for d in differences]).mean()
    assert mean_difference < 3, mean_difference
    assert any(d.any() for d in differences)  # fast is its own resize, not Pillow's


def test_unknown_resize_mode_refused():
    with pytest.raises(ValueError):
        Preprocessor(resize="nearest")


def test_changing_max_slice_nums_between_calls():
    rgb = noise_image(1920, 1080, seed=9)
    preprocessor = Preprocessor(resize="exact")
    assert preprocessor(rgb).plan.grid == official_geometry(1920, 1080, 9)[0]
    preprocessor.config = preprocessor.config._replace(max_slice_nums=4)
    prepared = preprocessor(rgb)
    assert prepared.plan.grid == official_geometry(1920, 1080, 4)[0] != official_geometry(1920, 1080, 9)[0]
    assert_same_slices(prepared.slices, official_slice_images(Image.fromarray(rgb, "RGB"), max_slice_nums=4))
