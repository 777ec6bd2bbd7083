"""Skip unchanged frames: reuse the last encoded result (tokens, grid) while the picture barely differs from the frame
it came from.

The measure is cheap (about 1.5 ms for a 1080p frame on one x86 core): the frame shrunk to a 64x36 thumbnail
(OpenCV's INTER_AREA, or numpy block means where OpenCV is missing; either way each cell is the mean of a block of
pixels, so sensor noise averages out), compared with the thumbnail of the last *encoded* frame, not of the previous
frame, so a slow drift adds up until it counts. The thumbnail keeps its three color channels: a grayscale one costs
about a third less but is blind to a change of hue at equal brightness (a red square crossing the test scene moved
no gray cell by more than 21 levels). Differences are in 0..255 levels. A frame is encoded when
- there is no result yet, or the frame size changed (the slicing, and so the tokens, depend on it);
- the mean absolute difference over the thumbnail's cells and channels exceeds `threshold` (default 2.0): lighting,
  a pan, anything that changes much of the picture;
- one cell differs by more than `region_threshold` in some channel (default 24; None = off): a small object moves
  the mean by little (a person 200x100 px in a 1080p frame covers ~1% of it) but changes its own cells a lot, while
  noise in a cell of some hundreds of pixels stays within a few levels;
- the reused result is older than `max_reuse_age_s` (default 10 s; None = never), so a static scene is still
  re-encoded now and then. An age rather than a count of frames: the governor changes the frame rate, and what a
  consumer of the tokens cares about is how old they may be.
Call `reset()` when the tokens of an unchanged picture change anyway (the slice budget, the model or the precision).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from ..errors import InputError

THUMBNAIL = (64, 36)  # width, height: cells ~30x30 px on 1080p, roughly square on 16:9 frames
SETTINGS = ("threshold", "region_threshold", "max_reuse_age_s", "size")  # reuse: keys besides enabled


def _opencv() -> Any:
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def _image_of(frame: Any, color: str) -> Tuple[np.ndarray, str]:
    """(array, color) of a camera Frame (which carries its color) or an array."""
    if hasattr(frame, "image"):
        return frame.image, getattr(frame, "color", color)
    if not isinstance(frame, np.ndarray):
        raise TypeError("expected a camera Frame or a numpy image, got %s" % type(frame).__name__)
    return frame, color


def block_means(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """float32 [height, width(, channels)]: each cell the mean of its block of `image` (blocks as even as the sizes
    allow; an image smaller than `size` repeats its pixels)."""
    width, height = size
    out = image
    for axis, cells in ((0, height), (1, width)):
        length = out.shape[axis]
        starts = (np.arange(cells) * length) // cells
        counts = np.maximum(np.diff(np.append(starts, length)), 1)
        out = np.add.reduceat(out, starts, axis=axis, dtype=np.float64)
        shape = [1] * out.ndim
        shape[axis] = cells
        out = out / counts.reshape(shape)
    return out.astype(np.float32)


def thumbnail(frame: Any, size: Tuple[int, int] = THUMBNAIL, color: str = "bgr",
              use_opencv: Optional[bool] = None) -> np.ndarray:
    """The float32 [height, width, channels] thumbnail (0..255 levels; BGR order for a color image, one channel for a
    gray one) of a Frame or an HxW[xC] image."""
    image, color = _image_of(frame, color)
    if color not in ("rgb", "bgr"):
        raise ValueError("color must be 'rgb' or 'bgr', got %r" % color)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError("expected an HxW, HxWx3 or HxWx4 image, got shape %s" % (image.shape,))
    cv2 = _opencv() if use_opencv in (None, True) else None
    if use_opencv and cv2 is None:
        raise ImportError("thumbnail(use_opencv=True) needs OpenCV (cv2)")
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]  # alpha is not part of the picture
    if cv2 is not None and image.dtype in (np.uint8, np.uint16, np.float32):
        cells = cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA).astype(np.float32)
    else:
        cells = block_means(image, size)
    if cells.ndim == 2:
        return cells[:, :, None]
    return np.ascontiguousarray(cells[:, :, ::-1]) if color == "rgb" else cells


class FrameReuse:
    """Decides per frame whether to encode it or to reuse the result of the last encoded one (module docstring).

        if reuse.should_encode(frame):
            result = encoder.encode(frame.image, color="bgr")
            reuse.remember(frame, result)
        else:
            result = reuse.result

    `remember` takes the frame (or image) that was checked last, whose thumbnail is kept from `should_encode`, or
    any frame, image or `thumbnail()` of one. Counters: `encoded` (remember calls), `reused`, and why frames were
    encoded: `first`, `changed` (mean), `region` (one cell), `aged` (forced re-encode of a static scene).
    """

    def __init__(self, threshold: float = 2.0, region_threshold: Optional[float] = 24.0,
                 max_reuse_age_s: Optional[float] = 10.0, size: Tuple[int, int] = THUMBNAIL,
                 clock: Callable[[], float] = time.monotonic, use_opencv: Optional[bool] = None) -> None:
        for name, value in (("threshold", threshold), ("region_threshold", region_threshold),
                            ("max_reuse_age_s", max_reuse_age_s)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise InputError("reuse.%s must be a number >= 0%s, got %r"
                                 % (name, "" if name == "threshold" else " or null (off)", value))
        if threshold is None:
            raise InputError("reuse.threshold must be a number >= 0 (levels 0..255), got null")
        if (len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size)):
            raise InputError("reuse.size must be [width, height] in cells, got %r" % (size,))
        self.threshold = float(threshold)
        self.region_threshold = None if region_threshold is None else float(region_threshold)
        self.max_reuse_age_s = None if max_reuse_age_s is None else float(max_reuse_age_s)
        self.size = (int(size[0]), int(size[1]))
        self.clock = clock
        self.use_opencv = use_opencv
        self.counters: Dict[str, int] = {"encoded": 0, "reused": 0, "first": 0, "changed": 0, "region": 0,
                                         "aged": 0}
        self.last_difference: Optional[float] = None  # mean absolute difference of the last check, levels
        self.last_region_difference: Optional[float] = None  # largest cell difference of the last check, levels
        self.last_reason: Optional[str] = None  # why the last checked frame was encoded, None = reused
        self._result: Any = None
        self._reference: Optional[np.ndarray] = None  # thumbnail of the frame the result came from
        self._reference_shape: Optional[Tuple[int, ...]] = None
        self._encoded_at = 0.0
        self._checked: Any = None  # (frame, thumbnail, shape) of the last should_encode
        self._has_result = False

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> FrameReuse:
        """From the agent config's `reuse:` section without `enabled` (threshold, region_threshold, max_reuse_age_s,
        size)."""
        if not isinstance(settings, Mapping):
            raise InputError("reuse: expected a mapping such as {threshold: 2.0}, got %s" % type(settings).__name__)
        unknown = sorted(str(key) for key in settings if key not in SETTINGS)
        if unknown:
            raise InputError("reuse: unknown setting %s; the settings are: enabled, %s" % (", ".join(unknown),
                                                                                          ", ".join(SETTINGS)))
        options = dict(settings)
        if "size" in options:
            if not isinstance(options["size"], (list, tuple)):
                raise InputError("reuse.size must be [width, height] in cells, got %r" % (options["size"],))
            options["size"] = tuple(options["size"])
        return cls(**options)

    def signature(self, frame: Any, color: str = "bgr") -> np.ndarray:
        """The thumbnail this object compares (float32 [height, width], levels 0..255)."""
        return thumbnail(frame, self.size, color, self.use_opencv)

    @property
    def result(self) -> Any:
        """The result last remembered (what to use when should_encode says False)."""
        return self._result

    def should_encode(self, frame: Any, color: str = "bgr") -> bool:
        """True when `frame` must be encoded, False when the remembered result still stands for it (counted)."""
        image, color = _image_of(frame, color)
        current = self.signature(image, color)
        self._checked = (frame, current, image.shape)
        reason = None
        if (not self._has_result or self._reference_shape not in (None, image.shape)
                or current.shape != self._reference.shape):
            reason, self.last_difference, self.last_region_difference = "first", None, None
        else:
            difference = np.abs(current - self._reference)
            self.last_difference = float(difference.mean())
            self.last_region_difference = float(difference.max())  # the largest change of one cell, one channel
            if self.last_difference > self.threshold:
                reason = "changed"
            elif self.region_threshold is not None and self.last_region_difference > self.region_threshold:
                reason = "region"
            elif self.max_reuse_age_s is not None and self.clock() - self._encoded_at > self.max_reuse_age_s:
                reason = "aged"
        self.last_reason = reason
        self.counters[reason or "reused"] += 1
        return reason is not None

    def remember(self, frame: Any, result: Any, color: str = "bgr") -> None:
        """Keep `result` (an EncodedImage, a FrameResult, ...) as the encoded result of `frame` (a Frame, an image, or
        its signature()); counts one encode."""
        if self._checked is not None and frame is self._checked[0]:
            reference, shape = self._checked[1], self._checked[2]
        elif (isinstance(frame, np.ndarray) and frame.dtype == np.float32 and frame.ndim == 3
              and frame.shape[:2] == self.size[::-1]):
            reference, shape = frame, None  # a signature(): the frame size is not known
        else:
            image, color = _image_of(frame, color)
            reference, shape = self.signature(image, color), image.shape
        self._checked = None
        self._result, self._reference, self._reference_shape = result, reference, shape
        self._encoded_at = self.clock()
        self._has_result = True
        self.counters["encoded"] += 1

    def reset(self) -> None:
        """Forget the result: the next frame is encoded."""
        self._result, self._reference, self._reference_shape, self._checked = None, None, None, None
        self._has_result = False

    def stats(self) -> Dict[str, Any]:
        """Counters, the share of frames reused, and the last differences measured (levels)."""
        checked = self.counters["encoded"] + self.counters["reused"]
        return dict(self.counters, reuse_share=self.counters["reused"] / checked if checked else 0.0,
                    last_difference=self.last_difference, last_region_difference=self.last_region_difference)
