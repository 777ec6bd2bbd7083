"""Turn what callers hand the encoder (numpy frames from OpenCV or other sources, PIL images) into RGB uint8.

The official processor calls PIL's ``convert("RGB")``: grayscale is replicated to three channels and an alpha
channel is dropped (not composited). Camera frames from OpenCV are BGR, hence ``color="bgr"``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

COLORS = ("rgb", "bgr")


def to_rgb(image: Any, color: str = "rgb") -> np.ndarray:
    """An HxWx3 C-contiguous uint8 RGB array from an HxW, HxWx1, HxWx3 or HxWx4 uint8 array or a PIL image."""
    if color not in COLORS:
        raise ValueError("color must be one of %s, got %r" % (", ".join(COLORS), color))
    if not isinstance(image, np.ndarray):
        if not hasattr(image, "convert"):
            raise TypeError("expected a numpy array or a PIL image, got %s" % type(image).__name__)
        if color != "rgb":
            raise ValueError("a PIL image is RGB already: pass color='rgb' (color='bgr' is for OpenCV frames)")
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    if image.dtype != np.uint8:
        raise ValueError("expected a uint8 image, got %s (scale it to 0..255 and convert with "
                         ".astype(np.uint8))" % image.dtype)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError("expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape %s" % (image.shape,))
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError("the image is empty (shape %s)" % (image.shape,))
    if image.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    channels = image[:, :, 2::-1] if color == "bgr" else image[:, :, :3]
    return np.ascontiguousarray(channels)
