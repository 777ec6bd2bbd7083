"""Camera test material: a synthetic scene with a moving red square, video files written here with OpenCV, fake
captures (plugged in through `FrameSource`'s `opener` seam) that freeze, repeat their last frame or fail, and an
idle camera for an agent loop that only serves encode requests."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from edge.camera import CameraConfig, FrameSource
from edge.preprocess.scenes import synthetic_scene

WAIT_S = 10.0  # generous: how long a test waits for something that should take a fraction of a second
NO_GSTREAMER = "  Video I/O:\n    FFMPEG:                      YES\n    GStreamer:                   NO\n"
WITH_GSTREAMER = "  Video I/O:\n    FFMPEG:                      NO\n    GStreamer:                   YES (1.20.3)\n"
RED_BGR = (0, 0, 255)


def moving_frames(count: int, size=(160, 120), seed: int = 3) -> List[np.ndarray]:
    """BGR frames of a synthetic scene with a red square moving to the right by 4 px a frame."""
    width, height = size
    background = np.ascontiguousarray(synthetic_scene(width, height, seed)[:, :, ::-1])
    frames = []
    for index in range(count):
        frame = background.copy()
        x = (4 * index) % (width - 24)
        frame[40:64, x:x + 24] = RED_BGR
        frames.append(frame)
    return frames


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float = 30.0) -> Path:
    """An MJPG .avi (OpenCV's own encoder: works in every build, headless wheels included)."""
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def frame_from(source: FrameSource, connection: int, timeout_s: float = WAIT_S):
    """The first new frame delivered by `connection` (or a later one), or None."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        frame = source.latest(0.05)
        if frame is not None and frame.connection >= connection:
            return frame
    return None


def fresh_frame(index: int) -> np.ndarray:
    return np.full((24, 32, 3), index % 251, dtype=np.uint8)


class FakeCapture:
    """read() plays a script, then fresh frames forever. Script steps: an array (returned with ok), False (read
    fails), an exception (raised), "block" (blocks until the test sets `unblock`, then fails), "repeat" (the
    previous array again, identical, forever)."""

    def __init__(self, script=(), unblock: threading.Event = None, period_s: float = 0.002):
        self.script = list(script)
        self.unblock = unblock or threading.Event()
        self.period_s = period_s
        self.reads = 0
        self.released = threading.Event()
        self.previous = None

    def isOpened(self):  # noqa: N802 - cv2's name
        return True

    def read(self):
        time.sleep(self.period_s)  # a camera's frame period, short
        self.reads += 1
        step = self.script.pop(0) if self.script else None
        if isinstance(step, str) and step == "repeat":
            self.script.insert(0, "repeat")
            return True, self.previous
        if isinstance(step, str) and step == "block":
            self.unblock.wait(WAIT_S)
            return False, None
        if step is False:
            return False, None
        if isinstance(step, BaseException):
            raise step
        self.previous = step if isinstance(step, np.ndarray) else fresh_frame(1000 + self.reads)
        return True, self.previous

    def release(self):
        self.released.set()


class Opener:
    """Hands out the given captures in order (the last one again when they run out), counting opens."""

    def __init__(self, *captures):
        self.captures = list(captures)
        self.opened: List[FakeCapture] = []

    def __call__(self, config):
        capture = self.captures[min(len(self.opened), len(self.captures) - 1)]
        self.opened.append(capture)
        return capture


def fake_config(**settings) -> CameraConfig:
    base = dict(kind="csi", stale_timeout_s=0.3, start_timeout_s=2.0, backoff_initial_s=0.01, backoff_max_s=0.05,
                backoff_jitter=0.0)
    base.update(settings)
    return CameraConfig(**base)


class IdleCamera:
    """A source by the agent's Source protocol that never has a frame (tests publish frames themselves): the agent's
    loop only serves encode requests."""

    finished = False

    def start(self) -> IdleCamera:
        return self

    def stop(self) -> None:
        """Nothing runs."""

    def latest(self, timeout: Optional[float] = None) -> Any:
        time.sleep(timeout or 0.0)

    def stats(self) -> Dict[str, Any]:
        return {}
