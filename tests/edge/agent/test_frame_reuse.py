"""Skip unchanged frames: what is reused, what is encoded, and the share reused on a static-scene video."""
from __future__ import annotations

import numpy as np
import pytest

from edge.agent.frame_reuse import FrameReuse, block_means, thumbnail
from edge.errors import InputError
from edge.preprocess.scenes import synthetic_scene
from tests.edge.camera.fakes import RED_BGR, moving_frames, write_video

TOKENS = np.zeros((1, 4, 8), dtype=np.float32)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def scene(width=320, height=180, seed=5):
    return np.ascontiguousarray(synthetic_scene(width, height, seed)[:, :, ::-1])  # BGR, as a camera gives


def noisy(image, sigma, seed):
    noise = np.random.default_rng(seed).normal(0.0, sigma, image.shape)
    return np.clip(image + noise + 0.5, 0, 255).astype(np.uint8)


def encode_if_needed(reuse, frame):
    if reuse.should_encode(frame):
        reuse.remember(frame, TOKENS + reuse.counters["encoded"])
        return True
    return False


def test_identical_frames_reuse_the_tokens():
    reuse = FrameReuse()
    frame = scene()
    assert reuse.should_encode(frame) and reuse.last_reason == "first"
    reuse.remember(frame, TOKENS)
    assert not reuse.should_encode(frame.copy())
    assert reuse.result is TOKENS and reuse.last_difference == 0.0
    assert reuse.stats()["encoded"] == 1 and reuse.stats()["reused"] == 1 and reuse.stats()["reuse_share"] == 0.5


def test_sensor_noise_under_the_threshold_is_reused():
    reuse = FrameReuse(threshold=2.0)
    base = scene()
    encode_if_needed(reuse, noisy(base, 3.0, seed=0))
    decisions = [encode_if_needed(reuse, noisy(base, 3.0, seed=s)) for s in range(1, 11)]
    assert not any(decisions)
    assert reuse.last_difference < 1.0 and reuse.last_region_difference < 24.0
    assert reuse.counters == dict(encoded=1, reused=10, first=1, changed=0, region=0, aged=0)


def test_a_changed_region_above_the_threshold_is_encoded():
    reuse = FrameReuse(threshold=2.0)
    base = scene()
    encode_if_needed(reuse, base)
    changed = base.copy()
    changed[40:140, 60:260] = scene(seed=9)[40:140, 60:260]  # a third of the picture
    assert reuse.should_encode(changed) and reuse.last_reason == "changed" and reuse.last_difference > 2.0
    reuse.remember(changed, TOKENS + 1)
    assert not reuse.should_encode(changed.copy()), "compared with the last *encoded* frame now"
    assert reuse.counters["encoded"] == 2 and reuse.counters["changed"] == 1


def test_a_small_object_moves_the_mean_little_but_its_cells_a_lot():
    base = scene()
    small = base.copy()
    small[80:100, 150:170] = RED_BGR  # 20x20 px: under 1% of the frame
    with_region, mean_only = FrameReuse(), FrameReuse(region_threshold=None)
    for reuse in (with_region, mean_only):
        encode_if_needed(reuse, base)
    assert with_region.should_encode(small) and with_region.last_reason == "region"
    assert with_region.last_difference < 2.0 < 24.0 < with_region.last_region_difference
    assert not mean_only.should_encode(small)


def test_a_change_of_hue_at_equal_brightness_is_seen():
    gray = np.full((180, 320, 3), 128, np.uint8)
    patch = gray.copy()
    patch[80:100, 150:170] = (83, 100, 200)  # BGR with BT.601 luma 128, as the background's
    reuse = FrameReuse()
    encode_if_needed(reuse, gray)
    assert reuse.should_encode(patch) and reuse.last_reason == "region"


def test_a_slow_drift_adds_up_against_the_last_encoded_frame():
    reuse = FrameReuse(threshold=2.0, region_threshold=None)
    base = scene().astype(np.int16)
    decisions = [encode_if_needed(reuse, np.clip(base + step // 2, 0, 255).astype(np.uint8)) for step in range(12)]
    # +0.5 level per frame: never 2 levels from one frame to the next, but 2 levels from the encoded one
    assert decisions[0] and any(decisions[1:]) and not all(decisions[1:])
    assert reuse.counters["changed"] >= 1


def test_a_static_scene_is_re_encoded_after_max_reuse_age():
    clock = Clock()
    reuse = FrameReuse(max_reuse_age_s=10.0, clock=clock)
    frame = scene()
    encode_if_needed(reuse, frame)
    clock.now += 9.5
    assert not reuse.should_encode(frame)
    clock.now += 1.0
    assert reuse.should_encode(frame) and reuse.last_reason == "aged"
    reuse.remember(frame, TOKENS)
    clock.now += 5.0
    assert not reuse.should_encode(frame), "the age counts from the new encode"
    assert reuse.counters == dict(encoded=2, reused=2, first=1, changed=0, region=0, aged=1)
    never = FrameReuse(max_reuse_age_s=None, clock=clock)
    encode_if_needed(never, frame)
    clock.now += 1e6
    assert not never.should_encode(frame)


def test_a_new_frame_size_or_a_reset_forces_an_encode():
    reuse = FrameReuse()
    encode_if_needed(reuse, scene(320, 180))
    assert reuse.should_encode(scene(640, 360)) and reuse.last_reason == "first"
    reuse.remember(scene(640, 360), TOKENS)
    reuse.reset()
    assert reuse.result is None and reuse.should_encode(scene(640, 360))


def test_remember_takes_a_camera_frame_an_image_or_a_signature():
    from edge.camera.source import Frame

    image = scene()
    frame = Frame(image, 1.0, 0, 0, 1)
    reuse = FrameReuse()
    assert reuse.should_encode(frame)
    reuse.remember(frame, TOKENS)
    assert not reuse.should_encode(Frame(image.copy(), 2.0, 1, 0, 1))
    by_signature = FrameReuse()
    by_signature.remember(by_signature.signature(image), TOKENS)
    assert not by_signature.should_encode(image)
    rgb = FrameReuse()
    rgb.remember(np.ascontiguousarray(image[:, :, ::-1]), TOKENS, color="rgb")
    assert not rgb.should_encode(image) and rgb.last_difference < 0.01


def test_the_numpy_thumbnail_matches_opencvs_inter_area():
    pytest.importorskip("cv2")
    for width, height in ((640, 360), (333, 211)):
        image = noisy(scene(width, height), 3.0, seed=1)
        with_opencv = thumbnail(image, use_opencv=True)
        with_numpy = thumbnail(image, use_opencv=False)
        assert with_opencv.shape == with_numpy.shape == (36, 64, 3)
        exact_blocks = width % 64 == 0 and height % 36 == 0
        assert np.abs(with_opencv - with_numpy).mean() < (1.0 if exact_blocks else 3.0)
    tiny = thumbnail(np.full((10, 20, 3), 7, np.uint8), use_opencv=False)
    assert tiny.shape == (36, 64, 3) and np.allclose(tiny, 7.0, atol=1e-3)
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.allclose(block_means(gray, (2, 1)), [[4.5, 6.5]])


def test_without_opencv_reuse_still_works():
    reuse = FrameReuse(use_opencv=False)
    base = scene()
    encode_if_needed(reuse, base)
    assert not reuse.should_encode(noisy(base, 3.0, seed=2))
    moved = base.copy()
    moved[80:100, 150:170] = RED_BGR
    assert reuse.should_encode(moved)


def test_config_errors_name_the_setting():
    assert FrameReuse.from_dict({"threshold": 3, "size": [32, 32]}).size == (32, 32)
    for settings, message in (({"treshold": 2}, "unknown setting treshold"),
                              ({"threshold": -1}, "threshold must be a number"),
                              ({"size": 32}, "size must be"),
                              ({"max_reuse_age_s": "10s"}, "max_reuse_age_s must be")):
        with pytest.raises(InputError, match=message):
            FrameReuse.from_dict(settings)


def test_most_frames_of_a_static_scene_video_are_reused_and_few_of_a_moving_one(tmp_path):
    from edge.camera.source import FrameSource

    base = scene(160, 120)
    static = write_video(tmp_path / "static.avi", [noisy(base, 2.0, seed=s) for s in range(30)])
    moving = write_video(tmp_path / "moving.avi", moving_frames(30))
    shares = {}
    for name, video in (("static", static), ("moving", moving)):
        reuse = FrameReuse()
        with FrameSource({"kind": "file", "path": str(video), "fps": 100}) as source:
            checked = sum(1 for frame in source.frames() if encode_if_needed(reuse, frame) or True)
        assert checked >= 3
        shares[name] = reuse.stats()["reuse_share"]
        assert reuse.counters["encoded"] >= 1
    assert shares["static"] > 0.5
    assert shares["moving"] < 0.5
