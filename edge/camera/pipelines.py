"""How a camera is opened: GStreamer pipelines for Jetson cameras (Argus, V4L2 MJPEG on NVJPG, RTSP on NVDEC),
OpenCV captures, a folder of images read like a capture, and the checks that say up front why a camera could never
open."""
from __future__ import annotations

import logging
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import numpy as np

from ..errors import InputError
from .config import BACKENDS, CameraConfig, device_path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
APPSINK = "appsink drop=1 max-buffers=1 sync=false"  # keep only the newest buffer; never wait for the clock
NVMM_TO_BGR = "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR"
BARE_VALUE = re.compile(r"[A-Za-z0-9_./-]+")  # property values gst_parse_launch reads verbatim without quotes


def _framerate(fps: float) -> str:
    """GStreamer caps want a fraction: 30 -> 30/1, 29.97 -> 2997/100."""
    rate = Fraction(fps).limit_denominator(1001)
    return "%d/%d" % (rate.numerator, rate.denominator)


def gst_quote(value: str) -> str:
    """`value` as one property value in gst-launch pipeline text, read back verbatim by gst_parse_launch: bare when
    it holds only letters, digits and `_./-`, else in double quotes with `\\` and `"` escaped, so that no value can end
    its element or add one. GStreamer reads an empty value, `NULL` and a value that starts with a quote as something
    else (NULL or a nested string): those are refused."""
    if not value or value == "NULL" or value.startswith('"'):
        raise ValueError("GStreamer cannot take %r verbatim as a property value" % value)
    if BARE_VALUE.fullmatch(value):
        return value
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def gstreamer_pipeline(config: CameraConfig) -> str:
    """The GStreamer pipeline for `cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)` (csi, usb and rtsp cameras).

    Every pipeline ends in BGR (the encoder is called with color="bgr") and an appsink that keeps one buffer and
    drops the rest, so a read() returns the newest frame and the camera never waits for us.
    """
    if config.kind == "csi":
        return ("nvarguscamerasrc sensor-id=%d ! video/x-raw(memory:NVMM),width=%d,height=%d,framerate=%s"
                " ! nvvidconv flip-method=%d ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! %s"
                % (config.sensor_id, config.width, config.height, _framerate(config.fps or 30.0), config.flip_method,
                   APPSINK))
    if config.kind == "usb":  # MJPEG from the camera, decoded by the Jetson's NVJPG (nvv4l2decoder mjpeg=1)
        return ("v4l2src device=%s ! image/jpeg,width=%d,height=%d,framerate=%s ! nvv4l2decoder mjpeg=1 ! %s ! %s"
                % (gst_quote(device_path(config.device)), config.width, config.height, _framerate(config.fps or 30.0),
                   NVMM_TO_BGR, APPSINK))
    if config.kind == "rtsp":  # depayload, parse and decode on NVDEC
        return ("rtspsrc location=%s latency=%d ! rtp%sdepay ! %sparse ! nvv4l2decoder ! %s ! %s"
                % (gst_quote(config.url), config.latency_ms, config.codec, config.codec, NVMM_TO_BGR, APPSINK))
    raise ValueError("a %s source is read by OpenCV directly, not through a GStreamer pipeline" % config.kind)


def opencv_has_gstreamer(build_info: str) -> bool:
    """Whether `cv2.getBuildInformation()` text lists GStreamer as YES (PyPI wheels say NO)."""
    match = re.search(r"^\s*GStreamer:\s*(\w+)", build_info, re.MULTILINE)
    return bool(match) and match.group(1).upper() == "YES"


def check_camera(config: CameraConfig, build_info: Optional[str] = None) -> None:
    """Raise InputError, with the fix, for what would keep `config` from ever opening: no OpenCV, an OpenCV
    without GStreamer where a pipeline is needed, a missing file or folder. `build_info` replaces
    `cv2.getBuildInformation()` (tests)."""
    if build_info is None:
        try:
            import cv2
        except ImportError as exc:
            raise InputError("a %s camera needs OpenCV (cv2), which is not installed: on a Jetson use JetPack's "
                             "(apt install python3-opencv, reached from a venv made with --system-site-packages); "
                             "elsewhere pip install opencv-python-headless" % config.kind) from exc
        build_info = cv2.getBuildInformation()
    if config.backend == "gstreamer" and not opencv_has_gstreamer(build_info):
        others = [b for b in BACKENDS[config.kind] if b != "gstreamer"]
        hint = " (or set camera.backend: %s, which needs no GStreamer)" % others[0] if others else ""
        raise InputError(
            "a %s camera needs OpenCV built with GStreamer, and this OpenCV has none (PyPI's opencv-python wheels "
            "never do): use JetPack's OpenCV instead: create the venv with `python3 -m venv --system-site-packages "
            "VENV` and `pip uninstall opencv-python opencv-python-headless` inside it%s" % (config.kind, hint))
    if config.kind == "file" and not Path(config.path).is_file():
        raise InputError("camera.path: no video file at %s: fix the path in the camera section" % config.path)
    if config.kind == "folder":
        folder = Path(config.path)
        if not folder.is_dir() or not _image_files(folder):
            raise InputError("camera.path: %s is not a folder with images (%s): fix the path in the camera section"
                             % (config.path, " ".join(IMAGE_SUFFIXES)))


def _image_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class FolderCapture:
    """A folder of images read like a capture (read()/release()), in name order; unreadable files are skipped."""

    def __init__(self, path: Union[str, Path]) -> None:
        self.files = _image_files(Path(path))
        self.position = 0
        self.skipped = 0

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return bool(self.files)

    def read(self) -> Tuple[bool, Optional[np.ndarray]]:
        import cv2

        while self.position < len(self.files):
            path = self.files[self.position]
            self.position += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return True, image
            self.skipped += 1
            log.warning("camera folder: cannot read %s as an image: skipped", path)
        return False, None

    def release(self) -> None:
        self.files = []


def open_capture(config: CameraConfig) -> Any:
    """The default opener: a cv2.VideoCapture (or FolderCapture) for `config`, maybe not opened (isOpened())."""
    if config.kind == "folder":
        return FolderCapture(config.path)
    import cv2

    if config.backend == "gstreamer":
        return cv2.VideoCapture(gstreamer_pipeline(config), cv2.CAP_GSTREAMER)
    if config.kind == "usb":
        capture = cv2.VideoCapture(config.device, cv2.CAP_V4L2)
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))  # raw YUYV at 720p+ rarely reaches 30 fps
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, config.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, config.height)
        capture.set(cv2.CAP_PROP_FPS, config.fps or 30.0)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not one queued seconds ago
        return capture
    if config.kind == "rtsp":
        capture = cv2.VideoCapture(config.url, cv2.CAP_FFMPEG)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return capture
    return cv2.VideoCapture(config.path)
