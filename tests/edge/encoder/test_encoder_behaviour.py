"""edge.VisionEncoder behaviour on tiny bundles: shapes, limits, slice budget, batching, precision, bad options.

Numerical parity with the official modules is tested elsewhere; here the encoder is compared with itself.
"""
from __future__ import annotations

import numpy as np
import pytest

import edge
from edge.bundle.manifest import Bundle
from edge.errors import InputError, SliceTooLarge
from references.slicing import official_geometry


def frame(width, height, seed=0, channels=3):
    shape = (height, width, channels) if channels else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def host_bundle(make_bundle):
    return make_bundle("2.6", "fp32", "host-x86")


@pytest.fixture(scope="module")
def encoder(host_bundle):
    return edge.VisionEncoder.from_bundle(host_bundle)


def test_tokens_shape_grid_and_timings(encoder, host_bundle):
    model = Bundle.load(host_bundle).model
    encoded = encoder.encode(frame(1920, 1080))
    grid, _, _ = official_geometry(1920, 1080, 9)
    assert encoded.grid == grid
    assert encoded.tokens.dtype == np.float32
    assert encoded.tokens.shape == (1 + grid[0] * grid[1], model.query_num, model.embed_dim)
    assert np.isfinite(encoded.tokens).all()
    assert {"preprocess", "vpm", "resampler"} <= set(encoded.timings)
    assert all(isinstance(encoded.timings[k], float) and encoded.timings[k] >= 0
               for k in ("preprocess", "vpm", "resampler"))


@pytest.mark.parametrize("image", [frame(10, 10), frame(4000, 50), frame(640, 480, channels=0),
                                   frame(640, 480, channels=1), frame(700, 500, channels=4)],
                         ids=["10x10", "4000x50", "gray", "gray1", "rgba"])
def test_odd_inputs_encode(encoder, image):
    encoded = encoder.encode(image)
    grid, _, _ = official_geometry(image.shape[1], image.shape[0], 9)
    assert encoded.grid == grid
    assert encoded.tokens.shape[0] == 1 + (grid[0] * grid[1] if grid else 0)
    assert np.isfinite(encoded.tokens).all()


def test_slice_over_the_patch_cap_is_refused_with_the_fix(encoder):
    grid, (width, height), _ = official_geometry(60000, 10, 9)
    patches = (width // 14) * (height // 14)
    assert patches > encoder.max_patches  # the overview alone is too long for host-x86's graphs
    with pytest.raises(SliceTooLarge) as error:
        encoder.encode(np.zeros((10, 60000), np.uint8))
    assert str(patches) in str(error.value) and "re-export" in str(error.value)
    assert isinstance(error.value, InputError)


def test_max_slice_nums_changes_the_grid(host_bundle):
    encoder = edge.VisionEncoder.from_bundle(host_bundle)
    image = frame(1920, 1080, seed=1)
    assert encoder.encode(image).tokens.shape[0] == 9
    encoder.max_slice_nums = 4
    grid, _, _ = official_geometry(1920, 1080, 4)
    encoded = encoder.encode(image)
    assert encoded.grid == grid and encoded.tokens.shape[0] == 1 + grid[0] * grid[1]
    max_slices = Bundle.load(host_bundle).manifest["target"]["max_slices"]
    for bad in (0, max_slices + 1):
        with pytest.raises(ValueError):
            encoder.max_slice_nums = bad
    assert encoder.max_slice_nums == 4


def test_small_batches_give_the_same_tokens(make_bundle, host_bundle):
    small_path = make_bundle("2.6", "fp32", "orin-nano-4gb")
    small_bundle, host = Bundle.load(small_path), Bundle.load(host_bundle)
    assert small_bundle.model.weights_sha256 == host.model.weights_sha256
    small = edge.VisionEncoder.from_bundle(small_path)
    assert small.max_batch == small_bundle.target.max_batch < 4
    assert small.max_slice_nums == min(small_bundle.model.slice.max_slice_nums,
                                       small_bundle.target.max_slices)
    with pytest.raises(ValueError):
        small.max_slice_nums = small_bundle.target.max_slices + 1
    large = edge.VisionEncoder.from_bundle(host_bundle)
    small.max_slice_nums = large.max_slice_nums = 4
    image = frame(1920, 1080, seed=2)
    small_tokens, large_tokens = small.encode(image), large.encode(image)
    assert small_tokens.grid == large_tokens.grid == official_geometry(1920, 1080, 4)[0]
    assert small_tokens.tokens.shape[0] > small.max_batch  # more slices than one batch holds
    np.testing.assert_allclose(small_tokens.tokens, large_tokens.tokens, rtol=0, atol=1e-5)


def test_fp16_graphs_close_to_fp32(make_bundle, encoder):
    fp16 = edge.VisionEncoder.from_bundle(make_bundle("2.6", "fp16"), precision="fp16")
    image = frame(1280, 720, seed=3)
    reference, half = encoder.encode(image).tokens, fp16.encode(image).tokens
    assert half.dtype == np.float32 and half.shape == reference.shape
    assert np.abs(half - reference).max() / np.abs(reference).max() < 1e-2


def test_missing_precision_refused(host_bundle):
    with pytest.raises(InputError):
        edge.VisionEncoder.from_bundle(host_bundle, precision="fp16")
    with pytest.raises(InputError):
        edge.VisionEncoder.from_bundle(host_bundle, precision={"vpm": "fp32", "resampler": "fp16"})


def test_bad_backend_and_resize_refused(host_bundle):
    with pytest.raises(InputError):
        edge.VisionEncoder.from_bundle(host_bundle, backend="no-such-backend")
    with pytest.raises(ValueError):
        edge.VisionEncoder.from_bundle(host_bundle, resize="nearest")
