"""Device preprocessing on a real CUDA device: its strips equal the `exact` path's (Pillow + pack_slices) bit for
bit. Skipped, with the reason, where pycuda, a CUDA device or nvcc is missing (run it on a GPU machine)."""
from __future__ import annotations

import numpy as np
import pytest

from edge.preprocess.device.selection import device_support
from edge.preprocess.device.strip_map import batch_layouts
from edge.preprocess.graph_inputs import pack_slices
from edge.preprocess.pillow_resample import RULE_SHRINK_HEIGHT, VERTICAL, resample_passes, resize_reference
from edge.preprocess.preprocessor import Preprocessor
from edge.preprocess.scenes import synthetic_scene
from edge.preprocess.slicing import DEFAULT
from tests.standins.fake_pycuda import real_pycuda

SUPPORT = device_support()
pytestmark = pytest.mark.skipif(not SUPPORT.ready, reason="device preprocessing cannot run here: " + SUPPORT.found)

WORKED_EXAMPLES = [(1920, 1080), (1344, 1344), (800, 600), (640, 480), (500, 300), (3000, 500)]


@pytest.fixture(scope="module")
def memory():
    from edge.engines.tensorrt.device_memory import PycudaMemory

    return PycudaMemory()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("kernels")


def random_frames(count=216, seed=15):
    """Frame sizes: landscape and portrait, tiny (upscaled), large, extreme aspect ratios, and frames whose
    overview keeps one side (a pass skipped)."""
    rng = np.random.default_rng(seed)
    frames = [(448, 448), (448, 300), (300, 448), (602, 1000), (14, 14), (1, 1), (4000, 50), (50, 3000),
              (20, 20000), (30, 9000)]  # over 100x taller than wide: Pillow 12.2-12.3 go vertical first
    while len(frames) < count:
        kind = len(frames) % 4
        if kind == 0:
            frames.append((int(rng.integers(1, 2600)), int(rng.integers(1, 2600))))
        elif kind == 1:  # small: the overview is upscaled
            frames.append((int(rng.integers(1, 500)), int(rng.integers(1, 500))))
        elif kind == 2:  # portrait: Pillow 13 often resizes vertically first
            width = int(rng.integers(50, 900))
            frames.append((width, int(width * rng.uniform(1.5, 6))))
        else:  # wide strips
            height = int(rng.integers(20, 300))
            frames.append((int(height * rng.uniform(4, 20)), height))
    return frames


def frame_pixels(size, index):
    if index % 2:
        return np.random.default_rng(index).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return synthetic_scene(*size, seed=index)


def check_frame(device, rgb, max_batch, dtype, layout="masked-2d", rule=None):
    """Device feeds of every batch equal pack_slices of the exact slices (pixels bit for bit, index inputs); with
    `rule`, of slices resized by the numpy reference under that pass-order rule instead of the installed Pillow."""
    exact = Preprocessor(DEFAULT, "exact")
    if rule is not None:
        exact._resize = lambda image, size: resize_reference(image, size, rule)
    plan = exact.plan(rgb)
    slices = exact.slices(rgb, plan)
    batches = [(first, min(max_batch, len(slices) - first)) for first in range(0, len(slices), max_batch)]
    got = device(rgb, plan, batches)
    for (first, size), feeds in zip(batches, got):
        want = pack_slices(slices[first:first + size], layout, dtype)
        pixels = feeds.vpm["pixel_values"].to_host()
        assert pixels.dtype == want.vpm["pixel_values"].dtype and pixels.shape == want.vpm["pixel_values"].shape
        assert np.array_equal(pixels.view(np.uint8), want.vpm["pixel_values"].view(np.uint8)), (rgb.shape, first)
        for name in ("position_ids", "patch_counts"):
            assert np.array_equal(feeds.vpm[name], want.vpm[name])
        assert np.array_equal(feeds.resampler["tgt_sizes"], want.resampler["tgt_sizes"])
    return plan


def test_random_frames_equal_exact(memory, cache_dir):
    from edge.preprocess.device.preprocessor import DevicePreprocessor

    device = DevicePreprocessor(memory, "masked-2d", np.float32, cache_dir=cache_dir)
    orders = set()
    try:
        for index, size in enumerate(random_frames()):
            plan = check_frame(device, frame_pixels(size, index), max_batch=16, dtype=np.float32)
            orders.add(tuple(resample_passes(plan.image_size, plan.source_size, device.rule)))
    finally:
        device.close()
    assert len(orders) >= 3  # several pass orders ran, not only horizontal then vertical


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("layout", ["masked-2d", "unmasked-1d"])
def test_worked_examples_equal_exact(memory, cache_dir, dtype, layout):
    from edge.preprocess.device.preprocessor import DevicePreprocessor

    device = DevicePreprocessor(memory, layout, dtype, cache_dir=cache_dir)
    try:
        for index, size in enumerate(WORKED_EXAMPLES):
            check_frame(device, frame_pixels(size, index), max_batch=16 if layout == "unmasked-1d" else 4,
                        dtype=dtype, layout=layout)
    finally:
        device.close()


def test_pillow_13_pass_order_on_the_device(memory, cache_dir):
    """Pillow 13 resizes vertically first when the height loses over twice the width's pixels; whatever Pillow
    this machine has, the device under that rule equals the numpy reference (which equals Pillow 13 bit for bit,
    tests/edge/preprocess/test_pillow_resample.py)."""
    from edge.preprocess.device.preprocessor import DevicePreprocessor

    device = DevicePreprocessor(memory, "masked-2d", np.float32, rule=RULE_SHRINK_HEIGHT, cache_dir=cache_dir)
    vertical_first = 0
    try:
        for index, size in enumerate(random_frames(count=60, seed=16)):
            plan = check_frame(device, frame_pixels(size, index), 16, np.float32, rule=RULE_SHRINK_HEIGHT)
            vertical_first += resample_passes(size, plan.source_size, RULE_SHRINK_HEIGHT)[:1] == [VERTICAL]
    finally:
        device.close()
    assert vertical_first >= 10


def test_kernels_are_cached_on_disk(memory, cache_dir):
    from edge.preprocess.device.kernels import cached_kernel_files, compile_kernels

    compile_kernels(cache_dir)
    assert cached_kernel_files(cache_dir) >= 1


def test_encoder_on_the_device_gives_exact_tokens(make_bundle):
    """resize="device" through VisionEncoder (ONNX Runtime copies the device strips to the host): the same tokens
    as resize="exact", since the pixels are the same."""
    from edge.encoder.vision_encoder import VisionEncoder

    bundle = make_bundle("2.6")
    rgb = synthetic_scene(1280, 720, seed=9)
    with VisionEncoder.from_bundle(bundle, resize="device") as device, \
            VisionEncoder.from_bundle(bundle, resize="exact") as exact:
        assert device.preprocess_path == "device"
        assert np.array_equal(device.encode(rgb).tokens, exact.encode(rgb).tokens)


@pytest.mark.skipif(not real_pycuda(), reason="needs MINICPMV_REAL_PYCUDA=1 (real pycuda behind the stand-in TensorRT)")
def test_tensorrt_runner_binds_the_device_strips(converted_bundle, tmp_path):
    """With real pycuda memory and the stand-in TensorRT: the VPM's pixel_values address is the device strips
    buffer (no host copy), and the tokens equal the exact path's."""
    from edge.bundle.manifest import Bundle
    from edge.encoder.vision_encoder import VisionEncoder
    from edge.engines.factory import open_engines
    from edge.engines.tensorrt.build import BuildSettings
    from tests.standins.fake_pycuda import device_memory
    from tests.standins.fake_tensorrt import RELEASES, make_tensorrt

    bundle = Bundle.load(converted_bundle)
    memory, adapter = device_memory()
    settings = BuildSettings(timing_cache=tmp_path / "timing.cache", workspace_bytes=1 << 28, check=False)
    engines = open_engines(bundle, "tensorrt", "fp32", tmp_path / "cache", settings,
                           runtime=(make_tensorrt(RELEASES[-1], adapter), memory))
    rgb = synthetic_scene(1280, 720, seed=3)
    encoder = VisionEncoder(bundle, engines, resize="device")
    try:
        tokens = encoder.encode(rgb).tokens
        plan = encoder.preprocessor.plan(rgb)
        last = batch_layouts(plan.patch_grids(), encoder._batches(len(plan.slice_sizes)))[-1]
        strips = encoder.device_preprocessor.buffers.get("strips", 0)  # the last batch bound is at its offset
        assert engines["vpm"].context._addresses["pixel_values"] == strips + last.offset * 4
        want = VisionEncoder.from_bundle(converted_bundle, precision="fp32").encode(rgb).tokens
        np.testing.assert_allclose(tokens, want, rtol=0, atol=1e-5)
    finally:
        encoder.close()
