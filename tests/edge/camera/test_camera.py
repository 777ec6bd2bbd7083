"""Camera sources: a real video file and image folder read through OpenCV, and fake captures (through the
`opener` seam) that freeze, repeat their last frame, fail to read, or fail to open. Time bounds are generous:
the tests assert that things happen, never how fast."""
from __future__ import annotations

import random
import threading
import time
from typing import List

import numpy as np
import pytest

from edge.camera.config import CameraConfig, redact
from edge.camera.pipelines import check_camera, gstreamer_pipeline, opencv_has_gstreamer
from edge.camera.source import Backoff, FrameSource, content_signature
from edge.errors import InputError
from tests.edge.camera.fakes import (
    NO_GSTREAMER,
    WAIT_S,
    WITH_GSTREAMER,
    FakeCapture,
    Opener,
    fake_config,
    frame_from,
    fresh_frame,
    moving_frames,
    wait_until,
    write_video,
)

cv2 = pytest.importorskip("cv2")

# ---------------------------------------------------------------------------------------------- video files


def test_a_video_file_is_read_end_to_end_as_bgr_frames(tmp_path):
    frames = moving_frames(40)
    video = write_video(tmp_path / "moving.avi", frames)
    received = []
    with FrameSource({"kind": "file", "path": str(video), "fps": 0}) as source:
        for frame in source.frames():
            received.append(frame)
        stats = source.stats()
    assert source.finished and stats["state"] == "finished"
    assert stats["end_of_stream"] == 1 and stats["reconnects"] == 0 and stats["read_errors"] == 0
    assert stats["frames"] == 40 and len(received) + stats["dropped"] == 40
    sequences = [f.sequence for f in received]
    assert sequences == sorted(set(sequences)) and sequences[-1] == 39
    assert all(b.timestamp_s >= a.timestamp_s for a, b in zip(received, received[1:]))
    last = received[-1]
    assert last.color == "bgr" and last.image.dtype == np.uint8 and last.image.shape == (120, 160, 3)
    x = (4 * last.sequence) % (160 - 24)
    square = last.image[44:60, x + 4:x + 20].reshape(-1, 3).mean(axis=0)
    assert square[2] > 200 and square[0] < 60 and square[1] < 60, "the red square must come out red in BGR order"
    assert last.signature == content_signature(last.image)


def test_a_slow_consumer_gets_the_newest_frames_and_the_rest_are_counted_as_dropped(tmp_path):
    video = write_video(tmp_path / "moving.avi", moving_frames(40))
    received = []
    with FrameSource({"kind": "file", "path": str(video), "fps": 200}) as source:
        for frame in source.frames():
            received.append(frame.sequence)
            time.sleep(0.03)  # a slow encoder: 6 frames arrive per frame taken
        stats = source.stats()
    assert stats["dropped"] > 0
    assert len(received) + stats["dropped"] == stats["frames"] == 40
    assert received == sorted(set(received)) and received[-1] == 39


def test_a_file_is_paced_at_the_requested_rate(tmp_path):
    video = write_video(tmp_path / "moving.avi", moving_frames(10))
    with FrameSource({"kind": "file", "path": str(video), "fps": 50}) as source:
        received = list(source.frames())
    assert len(received) >= 2
    span_s = received[-1].timestamp_s - received[0].timestamp_s
    frames_between = received[-1].sequence - received[0].sequence
    assert span_s >= 0.9 * frames_between / 50  # never faster than asked (a lower bound only)


def test_a_looping_file_is_reopened_and_keeps_delivering(tmp_path):
    video = write_video(tmp_path / "moving.avi", moving_frames(8))
    with FrameSource({"kind": "file", "path": str(video), "fps": 0, "loop": True}) as source:
        connections = set()
        assert wait_until(lambda: source.stats()["loops"] >= 3)
        for _ in range(5):
            frame = source.latest(timeout=WAIT_S)
            assert frame is not None
            connections.add(frame.connection)
        stats = source.stats()
        assert not source.finished
    assert stats["end_of_stream"] >= 3 and stats["frames"] >= 3 * 8
    assert stats["reconnects"] == 0 and stats["read_errors"] == 0  # a rewind is neither
    assert max(connections) >= 4


def test_a_folder_of_images_is_read_in_name_order_skipping_unreadable_files(tmp_path):
    for index, frame in enumerate(moving_frames(3)):
        cv2.imwrite(str(tmp_path / ("%03d.png" % index)), frame)
    (tmp_path / "004.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    with FrameSource({"kind": "folder", "path": str(tmp_path), "fps": 200}) as source:
        received = list(source.frames())
        stats = source.stats()
    assert source.finished and stats["end_of_stream"] == 1
    assert stats["frames"] == 3 and len(received) + stats["dropped"] == 3
    assert received[-1].image.shape == (120, 160, 3)


def test_a_missing_file_or_folder_is_an_input_error_before_capture_starts(tmp_path):
    with pytest.raises(InputError, match="camera.path"):
        FrameSource({"kind": "file", "path": str(tmp_path / "missing.mp4")}).start()
    with pytest.raises(InputError, match="not a folder with images"):
        FrameSource({"kind": "folder", "path": str(tmp_path)}).start()


# ---------------------------------------------------------------------------------------------- faults


def test_a_frozen_source_goes_stale_and_frames_flow_again_after_a_reconnect():
    unblock = threading.Event()
    frozen = FakeCapture([fresh_frame(1), fresh_frame(2), fresh_frame(3), "block"], unblock)
    healthy = FakeCapture()
    source = FrameSource(fake_config(), opener=Opener(frozen, healthy))
    try:
        source.start()
        frame = source.latest(timeout=WAIT_S)
        assert frame is not None and frame.connection == 1
        later = frame_from(source, 2)
        stats = source.stats()
        assert later is not None and later.sequence > frame.sequence, stats
        assert stats["stale_timeouts"] >= 1 and stats["reconnects"] >= 1
        assert stats["stuck_readers"] == 1  # the frozen read() has not returned: its thread was abandoned
        assert not frozen.released.is_set()
        assert source.latest(timeout=WAIT_S) is not None  # and they keep coming
    finally:
        unblock.set()
        source.stop()
    assert frozen.released.wait(WAIT_S), "the abandoned reader releases its capture once read() returns"
    assert wait_until(lambda: source.stats()["stuck_readers"] == 0)
    assert healthy.released.is_set() and source.stats()["state"] == "stopped"


def test_a_source_that_repeats_its_last_frame_is_detected_and_reconnected():
    repeating = FakeCapture([fresh_frame(1), fresh_frame(2), "repeat"])
    healthy = FakeCapture()
    with FrameSource(fake_config(max_repeats=5), opener=Opener(repeating, healthy)) as source:
        frame = frame_from(source, 2)
        stats = source.stats()
    assert frame is not None and frame.connection >= 2
    assert stats["repeat_stalls"] >= 1 and stats["repeated_frames"] >= 5 and stats["reconnects"] >= 1
    assert stats["stale_timeouts"] == 0 and stats["read_errors"] == 0
    assert repeating.released.is_set()


def test_identical_frames_are_fine_where_repeat_detection_is_off():
    still = FakeCapture([fresh_frame(1), "repeat"])
    with FrameSource(fake_config(kind="rtsp", url="rtsp://cam/stream"), opener=Opener(still)) as source:
        assert source.config.max_repeats == 0  # H.264 skip frames decode to identical pictures
        assert wait_until(lambda: source.stats()["repeated_frames"] >= 20)
        stats = source.stats()
    assert stats["repeat_stalls"] == 0 and stats["reconnects"] == 0


@pytest.mark.parametrize("failure", [False, OSError("device unplugged")], ids=["returns-false", "raises"])
def test_read_errors_are_counted_and_reconnects_back_off_exponentially_up_to_the_bound(failure):
    delays: List[float] = []

    def sleep(seconds):
        delays.append(seconds)
        time.sleep(0.001)

    config = fake_config(kind="usb", backoff_initial_s=0.01, backoff_max_s=0.08)
    with FrameSource(config, opener=lambda c: FakeCapture([failure]), sleep=sleep) as source:
        assert wait_until(lambda: len(delays) >= 7)
        assert source.latest(timeout=0.05) is None
        stats = source.stats()
    assert delays[:6] == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.08, 0.08])
    assert max(delays) <= 0.08
    assert stats["read_errors"] >= 6 and stats["reconnects"] >= 6 and stats["frames"] == 0


def test_a_camera_that_cannot_be_opened_is_retried_with_backoff():
    delays: List[float] = []
    attempts = []

    def opener(config):
        attempts.append(config)
        if len(attempts) < 4:
            raise RuntimeError("no such camera")
        return FakeCapture()

    with FrameSource(fake_config(), opener=opener, sleep=delays.append) as source:
        frame = source.latest(timeout=WAIT_S)
        stats = source.stats()
    assert frame is not None and frame.connection == 4
    assert stats["open_errors"] == 3 and stats["reconnects"] == 3
    assert delays == pytest.approx([0.01, 0.02, 0.04])


def test_the_backoff_starts_over_after_a_connection_that_delivered_fresh_frames():
    delays: List[float] = []
    captures = [RuntimeError("busy"), RuntimeError("busy"), FakeCapture([fresh_frame(1), fresh_frame(2), False]),
                RuntimeError("busy")]

    def opener(config):
        capture = captures.pop(0) if captures else FakeCapture()
        if isinstance(capture, Exception):
            raise capture
        return capture

    with FrameSource(fake_config(kind="usb"), opener=opener, sleep=delays.append) as source:
        assert frame_from(source, 5) is not None
        stats = source.stats()
    assert delays == pytest.approx([0.01, 0.02, 0.01, 0.02])
    assert stats["open_errors"] == 3 and stats["read_errors"] == 1 and stats["reconnects"] == 4


def test_backoff_doubles_up_to_its_bound_and_jitter_stays_within_its_fraction():
    plain = Backoff(0.5, 10.0)
    assert [plain.next() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    plain.reset()
    assert plain.next() == 0.5
    jittered = Backoff(0.5, 10.0, jitter=0.2, rng=random.Random(7))
    delays = [jittered.next() for _ in range(12)]
    assert 0.4 <= delays[0] <= 0.6 and 0.8 <= delays[1] <= 1.2
    assert all(d <= 10.0 for d in delays) and min(delays[6:]) >= 8.0
    assert len(set(delays[6:])) > 1  # spread, not in step


def test_stop_returns_while_a_read_is_blocked():
    unblock = threading.Event()
    config = fake_config(stale_timeout_s=0.2, start_timeout_s=30.0)  # the first read blocks: start timeout
    source = FrameSource(config, opener=Opener(FakeCapture(["block"], unblock)))
    source.start()
    time.sleep(0.05)
    source.stop(timeout_s=WAIT_S)
    try:
        assert source.stats()["state"] == "stopped" and source.latest(timeout=1.0) is None
    finally:
        unblock.set()


# ---------------------------------------------------------------------------------------------- pipelines


def test_pipelines_follow_the_jetson_recipes():
    csi = gstreamer_pipeline(CameraConfig(kind="csi", sensor_id=1, width=1920, height=1080, fps=30,
                                          flip_method=2))
    assert csi.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1920,height=1080,"
                          "framerate=30/1 ! nvvidconv flip-method=2 ! video/x-raw,format=BGRx ! videoconvert ! "
                          "video/x-raw,format=BGR ! ")
    usb = gstreamer_pipeline(CameraConfig(kind="usb", device="/dev/video2", backend="gstreamer", width=640,
                                          height=480, fps=15))
    assert usb.startswith("v4l2src device=/dev/video2 ! image/jpeg,width=640,height=480,framerate=15/1 ! "
                          "nvv4l2decoder mjpeg=1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! ")
    assert "device=/dev/video3 " in gstreamer_pipeline(CameraConfig(kind="usb", device=3, backend="gstreamer"))
    rtsp = gstreamer_pipeline(CameraConfig(kind="rtsp", url="rtsp://user:pw@cam.local:554/live?x=1&y=2",
                                           latency_ms=100, codec="h265"))
    assert rtsp.startswith('rtspsrc location="rtsp://user:pw@cam.local:554/live?x=1&y=2" latency=100 ! '
                           "rtph265depay ! h265parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx")
    for pipeline in (csi, usb, rtsp):
        assert pipeline.endswith("video/x-raw,format=BGR ! appsink drop=1 max-buffers=1 sync=false")
    assert gstreamer_pipeline(CameraConfig(kind="csi", fps=29.97)).count("framerate=2997/100") == 1
    with pytest.raises(ValueError):
        gstreamer_pipeline(CameraConfig(kind="file", path="x.mp4"))


def test_a_gstreamer_camera_on_an_opencv_without_gstreamer_is_a_clear_input_error():
    assert not opencv_has_gstreamer(NO_GSTREAMER) and opencv_has_gstreamer(WITH_GSTREAMER)
    with pytest.raises(InputError) as error:
        check_camera(CameraConfig(kind="csi"), build_info=NO_GSTREAMER)
    message = str(error.value)
    assert "GStreamer" in message and "--system-site-packages" in message and "opencv-python" in message
    check_camera(CameraConfig(kind="csi"), build_info=WITH_GSTREAMER)
    check_camera(CameraConfig(kind="usb"), build_info=NO_GSTREAMER)  # plain V4L2 needs no GStreamer
    with pytest.raises(InputError, match="backend: v4l2"):
        check_camera(CameraConfig(kind="usb", backend="gstreamer"), build_info=NO_GSTREAMER)
    with pytest.raises(InputError, match="backend: ffmpeg"):
        check_camera(CameraConfig(kind="rtsp", url="rtsp://cam/live"), build_info=NO_GSTREAMER)
    source = FrameSource({"kind": "csi"}, build_info=NO_GSTREAMER)
    with pytest.raises(InputError, match="system-site-packages"):
        source.start()
    assert source.stats()["state"] == "idle"


def test_this_machines_pypi_opencv_reports_no_gstreamer_as_the_check_expects():
    if "GStreamer" not in cv2.getBuildInformation():
        pytest.skip("this OpenCV's build information does not mention GStreamer")
    info = cv2.getBuildInformation()
    assert opencv_has_gstreamer(info) == ("YES" in info.split("GStreamer:")[1].splitlines()[0])


# ---------------------------------------------------------------------------------------------- config


def test_config_defaults_per_kind_and_clear_errors():
    assert CameraConfig(kind="csi").max_repeats == 30 and CameraConfig(kind="csi").backend == "gstreamer"
    assert CameraConfig(kind="usb").backend == "v4l2" and CameraConfig(kind="usb", device="0").device == 0
    assert CameraConfig(kind="rtsp", url="rtsp://h/s").max_repeats == 0
    assert CameraConfig(kind="file", path="a.mp4").fps is None and CameraConfig(kind="folder", path="d").fps == 1.0
    assert CameraConfig.from_dict({"kind": "csi", "max_repeats": 0}).max_repeats == 0
    bad = [({"kind": "csi", "sensorid": 1}, "unknown setting sensorid"),
           ({"sensor_id": 1}, "'kind' is missing"),
           ({"kind": "webcam"}, "camera.kind must be one of"),
           ({"kind": "csi", "flip_method": 9}, "flip_method must be 0..7"),
           ({"kind": "csi", "width": 0}, "width must be an integer >= 1"),
           ({"kind": "csi", "backend": "v4l2"}, "backend for a csi camera"),
           ({"kind": "rtsp", "url": "http://cam"}, "rtsp:// address"),
           ({"kind": "file"}, "path must name the video file"),
           ({"kind": "usb", "backoff_jitter": 1.5}, "backoff_jitter"),
           ({"kind": "usb", "stale_timeout_s": 0}, "stale_timeout_s must be > 0")]
    for settings, message in bad:
        with pytest.raises(InputError, match=message):
            CameraConfig.from_dict(settings)


def test_rtsp_credentials_stay_out_of_log_names():
    config = CameraConfig(kind="rtsp", url="rtsp://admin:secret@10.0.0.5/stream1")
    assert "secret" not in config.describe() and redact(config.url) == "rtsp://***@10.0.0.5/stream1"
