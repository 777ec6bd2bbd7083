"""The resize modes of the preprocessing: ``exact`` (Pillow's BICUBIC itself), ``fast`` (OpenCV) and ``torchvision``.

``exact`` is the official processor's resize, so its pixels are the official ones (for 4.6 / 4.7: those of
transformers' PIL image processor). ``torchvision`` is what transformers' default (torchvision) image processor
of 4.6 / 4.7 does: torch's own antialiased bicubic on the uint8 image, which lands up to 2 levels from Pillow on
a few pixels in a thousand (docs/minicpmv.md); it needs torch. ``fast`` never imports
PIL: per axis it uses INTER_AREA where the image shrinks by 1.5x or more (antialiasing, as Pillow widens its
kernel), INTER_LINEAR for a milder shrink and INTER_CUBIC where it grows; one OpenCV call when both axes
agree, two otherwise. How far it lands from Pillow is measured by ``minicpmv-edge bench preprocess``.
"""
from __future__ import annotations

from typing import Callable, Tuple

import numpy as np

MODES = ("exact", "fast", "torchvision")
Resizer = Callable[[np.ndarray, Tuple[int, int]], np.ndarray]
AREA_FROM_SHRINK = 1.5


def resize_exact(rgb: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Pillow's ``Image.resize(size, BICUBIC)`` of an RGB uint8 array."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb, "RGB").resize(size, Image.BICUBIC))


def resize_torchvision(rgb: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """torchvision's ``resize(uint8 CHW, BICUBIC, antialias=True)`` of an RGB uint8 array: torch's uint8
    antialiased bicubic ``interpolate``, which torchvision calls as is for uint8 on the CPU."""
    import torch

    width, height = size
    if (width, height) == (rgb.shape[1], rgb.shape[0]):
        return rgb
    image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    out = torch.nn.functional.interpolate(image, size=[height, width], mode="bicubic", antialias=True,
                                          align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


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
    module, package, other = {"exact": ("PIL", "pillow", "fast"),
                              "fast": ("cv2", "opencv-python (on a Jetson: the JetPack OpenCV)", "exact"),
                              "torchvision": ("torch", "torch", "exact")}[mode]
    try:
        __import__(module)
    except ImportError as exc:
        raise ImportError("resize=%r needs %s, which is not installed: install %s or use resize=%r"
                          % (mode, module, package, other)) from exc
    return {"exact": resize_exact, "fast": resize_fast, "torchvision": resize_torchvision}[mode]
