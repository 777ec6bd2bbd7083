"""Turn what callers hand the encoder (numpy frames from OpenCV or other sources, PIL images) into RGB uint8.

The official processor calls PIL's ``convert("RGB")``: grayscale is replicated to three channels and an alpha
channel is dropped (not composited). Camera frames from OpenCV are BGR, hence ``color="bgr"``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

COLORS = ("rgb", "bgr")
# The largest image read or made here: Pillow's own refusal threshold (twice its MAX_IMAGE_PIXELS warning
# level), 512 MiB of RGB. Beyond it a file is a decompression bomb to Pillow, and a synthetic scene tens of GiB.
MAX_PIXELS = 178_956_970


def read_image(path: Path) -> Any:
    """An image file as an RGB PIL image; an InputError naming the problem for a file that is not an image, or
    one larger than MAX_PIXELS (checked from the header, before anything is decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InputError("image %s is %dx%d, %d pixels, more than the %d an image may have here: downscale "
                                 "it first" % (path, width, height, width * height, MAX_PIXELS))
            return image.convert("RGB")
    except Image.DecompressionBombError as exc:  # Pillow refuses such sizes at open, from the header
        raise InputError("image %s is too large (%s): downscale it below %d pixels first"
                         % (path, exc, MAX_PIXELS)) from exc
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError("cannot read image %s (%s): pass a PNG or JPEG file" % (path, exc)) from exc


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
