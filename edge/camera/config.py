"""The agent config's `camera:` section: one camera (CSI, USB, RTSP, a video file or a folder of images), its
defaults per kind and the checks that refuse a bad setting with one line naming it."""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional, Union

from ..errors import InputError

KINDS = ("csi", "usb", "rtsp", "file", "folder")
# The first backend of each kind is its default. csi: Argus exists only as GStreamer's nvarguscamerasrc; usb: plain
# V4L2 through OpenCV works with any OpenCV build, the GStreamer MJPEG pipeline decodes on the Jetson's NVJPG;
# rtsp: GStreamer decodes on NVDEC, OpenCV's FFmpeg backend (PyPI wheels) on the CPU.
BACKENDS = {"csi": ("gstreamer",), "usb": ("v4l2", "gstreamer"), "rtsp": ("gstreamer", "ffmpeg"),
            "file": ("opencv",), "folder": ("opencv",)}
# csi/usb: the sensor's rate; folder: images per second; file: None = the file's own rate; rtsp: the server's.
DEFAULT_FPS = {"csi": 30.0, "usb": 30.0, "rtsp": None, "file": None, "folder": 1.0}
# Frames in a row identical to the one before that mean "stalled". Off for rtsp: an H.264 encoder sends skip frames
# for a static scene, which decode to identical pictures; off for files and folders, which may hold still frames.
DEFAULT_MAX_REPEATS = {"csi": 30, "usb": 30, "rtsp": 0, "file": 0, "folder": 0}
CODECS = ("h264", "h265")
# What a camera string must not hold. A device path: whitespace, the pipeline's link '!', quotes and control
# characters. A URL: whitespace and control characters (quotes and backslashes are quoted when the pipeline is made).
DEVICE_FORBIDDEN = re.compile(r"[\s!\"'\x00-\x1f\x7f-\x9f]")
URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class CameraConfig:
    """One camera, as the agent config's `camera:` section gives it (see `from_dict`); None = the kind's default."""

    kind: str
    # csi
    sensor_id: int = 0
    flip_method: int = 0  # nvvidconv flip-method 0..7 (0 none, 2 rotate 180, 4 horizontal flip, ...)
    # csi, usb
    width: int = 1280
    height: int = 720
    fps: Optional[float] = None  # file: None = the file's rate, 0 = as fast as it decodes; folder: images per second
    # usb: an index or a path; prefer a udev path such as /dev/v4l/by-id/...: /dev/videoN can change across reboots
    device: Union[int, str] = 0
    backend: Optional[str] = None  # usb: v4l2 | gstreamer; rtsp: gstreamer | ffmpeg; csi: gstreamer
    # rtsp
    url: str = ""
    latency_ms: int = 200  # rtspsrc jitter buffer
    codec: str = "h264"
    # file, folder
    path: str = ""
    loop: bool = False
    # watchdog and reconnect
    stale_timeout_s: float = 2.0  # no frame for this long -> reconnect
    start_timeout_s: float = 10.0  # no first frame this long after opening (Argus and RTSP take seconds to start)
    max_repeats: Optional[int] = None  # frames in a row identical to the one before -> reconnect; 0 = off
    backoff_initial_s: float = 0.5  # wait before the first reconnect, doubled after each failure ...
    backoff_max_s: float = 10.0  # ... up to this
    backoff_jitter: float = 0.2  # +-20% random spread, so cameras that failed together do not retry in step

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> CameraConfig:
        """A config from the YAML mapping; unknown keys and bad values raise InputError naming the key."""
        if not isinstance(settings, Mapping):
            raise InputError("camera: expected a mapping of settings such as {kind: csi, sensor_id: 0}, got %s"
                             % type(settings).__name__)
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(key) for key in settings if key not in known)
        if unknown:
            raise InputError("camera: unknown setting %s; the settings are: %s" % (", ".join(unknown),
                                                                                  ", ".join(known)))
        if "kind" not in settings:
            raise InputError("camera: 'kind' is missing: set it to one of %s" % ", ".join(KINDS))
        return cls(**settings)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError("camera.kind must be one of %s, got %r" % (", ".join(KINDS), self.kind))
        for name in ("sensor_id", "flip_method", "width", "height", "latency_ms"):
            _check_int(name, getattr(self, name), minimum=0 if name in ("sensor_id", "flip_method", "latency_ms")
                       else 1)
        _check(self.flip_method <= 7, "flip_method must be 0..7 (nvvidconv flip-method), got %r" % self.flip_method)
        fps = DEFAULT_FPS[self.kind] if self.fps is None else self.fps
        if fps is not None:
            _check_number("fps", fps, minimum=0.0)
            _check(fps > 0 or self.kind == "file", "fps must be > 0 for a %s camera, got %r" % (self.kind, fps))
        object.__setattr__(self, "fps", None if fps is None else float(fps))
        backend = BACKENDS[self.kind][0] if self.backend is None else self.backend
        _check(backend in BACKENDS[self.kind], "backend for a %s camera must be one of %s, got %r"
               % (self.kind, ", ".join(BACKENDS[self.kind]), backend))
        object.__setattr__(self, "backend", backend)
        if isinstance(self.device, str) and self.device.isdigit():  # YAML `device: "0"` means index 0
            object.__setattr__(self, "device", int(self.device))
        _check_device(self.device)
        _check(self.codec in CODECS, "codec must be one of %s, got %r" % (", ".join(CODECS), self.codec))
        _check(isinstance(self.loop, bool), "loop must be true or false, got %r" % (self.loop,))
        _check(isinstance(self.url, str) and isinstance(self.path, str), "url and path must be strings")
        if self.kind == "rtsp":
            _check_url(self.url)
        if self.kind in ("file", "folder"):
            _check(bool(self.path), "path must name the %s to read" % ("video file" if self.kind == "file"
                                                                        else "folder of images"))
        for name in ("stale_timeout_s", "start_timeout_s", "backoff_initial_s", "backoff_max_s"):
            _check_number(name, getattr(self, name), minimum=0.0)
            _check(getattr(self, name) > 0, "%s must be > 0" % name)
        _check_number("backoff_jitter", self.backoff_jitter, minimum=0.0)
        _check(self.backoff_jitter < 1, "backoff_jitter must be a fraction in [0, 1), got %r" % self.backoff_jitter)
        _check(self.backoff_max_s >= self.backoff_initial_s, "backoff_max_s must be >= backoff_initial_s")
        repeats = DEFAULT_MAX_REPEATS[self.kind] if self.max_repeats is None else self.max_repeats
        _check_int("max_repeats", repeats, minimum=0)
        object.__setattr__(self, "max_repeats", repeats)

    def describe(self) -> str:
        """A short name for log lines; never shows RTSP credentials."""
        if self.kind == "csi":
            return "csi sensor %d" % self.sensor_id
        if self.kind == "usb":
            return "usb %s" % device_path(self.device)
        if self.kind == "rtsp":
            return "rtsp %s" % redact(self.url)
        return "%s %s" % (self.kind, self.path)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InputError("camera.%s" % message)


def _check_int(name: str, value: Any, minimum: int) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
           "%s must be an integer >= %d, got %r" % (name, minimum, value))


def _check_number(name: str, value: Any, minimum: float) -> None:
    _check(isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum,
           "%s must be a number >= %g, got %r" % (name, minimum, value))


def _check_device(device: Any) -> None:
    """An index, or a /dev path that cannot end or extend the GStreamer pipeline it goes into."""
    if isinstance(device, int) and not isinstance(device, bool):
        _check(device >= 0, "device must be a V4L2 index (0, 1, ...) or a path such as /dev/video0, got %r" % device)
        return
    _check(isinstance(device, str) and device.startswith("/dev/"),
           "device must be a V4L2 index (0, 1, ...) or a path such as /dev/video0, got %r" % (device,))
    _check(not DEVICE_FORBIDDEN.search(device), "device must be a plain /dev path (no whitespace, '!', quotes or "
           "control characters), got %r: use the path that ls -l /dev/v4l/by-id/ shows" % device)


def _check_url(url: str) -> None:
    """An rtsp:// or rtsps:// address with a host and no whitespace or control characters (credentials stay out of
    the message)."""
    _check(re.match(r"rtsps?://[^/]", url) is not None,
           "url must be an rtsp:// address (or rtsps://) with a host for an rtsp camera, got %r" % redact(url))
    _check(not URL_FORBIDDEN.search(url), "url must not contain whitespace or control characters, got %r: "
           "percent-encode them (a space is %%20)" % redact(url))


def redact(url: str) -> str:
    """rtsp://user:secret@host/... -> rtsp://***@host/...: addresses go into logs."""
    return re.sub(r"//[^/@]*@", "//***@", url)


def device_path(device: Union[int, str]) -> str:
    return "/dev/video%d" % device if isinstance(device, int) else device
