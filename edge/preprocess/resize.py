"""The two resize modes of the preprocessing: ``exact`` (Pillow's BICUBIC itself) and ``fast`` (OpenCV).

``exact`` is the official processor's resize, so its pixels are the official ones. ``fast`` never imports
PIL: per axis it uses INTER_AREA where the image shrinks by 1.5x or more (antialiasing, as Pillow widens its
kernel), INTER_LINEAR for a milder shrink and INTER_CUBIC where it grows; one OpenCV call when both axes
agree, two otherwise. How far it lands from Pillow is measured by ``minicpmv-edge bench preprocess``.
"""
from __future__ import annotations

from typing import Callable, Tuple

import numpy as np

MODES = ("exact", "fast")
Resizer = Callable[[np.ndarray, Tuple[int, int]], np.ndarray]
AREA_FROM_SHRINK = 1.5


def resize_exact(rgb: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Pillow's ``Image.resize(size, BICUBIC)`` of an RGB uint8 array."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb, "RGB").resize(size, Image.BICUBIC))


def _interpolation(cv2, source: int, target: int) -> int:
    if target >= source:
        return cv2.INTER_CUBIC
    return cv2.INTER_AREA if source >= AREA_FROM_SHRINK * target else cv2.INTER_LINEAR


def resize_fast(rgb: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """OpenCV resize of an RGB uint8 array, interpolation chosen per axis (see the module docstring)."""
    import cv2

    width, height = size
    along_x = _interpolation(cv2, rgb.shape[1], width)
    along_y = _interpolation(cv2, rgb.shape[0], height)
    if along_x == along_y:
        return cv2.resize(rgb, (width, height), interpolation=along_x)
    return cv2.resize(cv2.resize(rgb, (width, rgb.shape[0]), interpolation=along_x), (width, height),
                      interpolation=along_y)


def resizer(mode: str) -> Resizer:
    """The resize function of `mode`; a clear error when its library is missing."""
    if mode not in MODES:
        raise ValueError("resize must be one of %s, got %r" % (", ".join(MODES), mode))
    module, package = ("PIL", "pillow") if mode == "exact" else ("cv2", "opencv-python (on a Jetson: the "
                                                                 "JetPack OpenCV)")
    try:
        __import__(module)
    except ImportError as exc:
        raise ImportError("resize=%r needs %s, which is not installed: install %s or use resize=%r"
                          % (mode, module, package, "fast" if mode == "exact" else "exact")) from exc
    return resize_exact if mode == "exact" else resize_fast
