"""The resize modes of the preprocessing: ``exact`` (Pillow's BICUBIC itself), ``fast`` (OpenCV) and ``torchvision``.

``exact`` is the official processor's resize, so its pixels are the official ones (for 4.6 / 4.7: those of
transformers' PIL image processor). ``torchvision`` is what transformers' default (torchvision) image processor
of 4.6 / 4.7 does: torch's own antialiased bicubic on the uint8 image, which lands up to 2 levels from Pillow on
a few pixels in a thousand (docs/minicpmv.md); it needs torch. ``fast`` never imports
PIL: per axis it uses INTER_AREA where the image shrinks by 1.5x or more (antialiasing, as Pillow widens its
kernel), INTER_LINEAR for a milder shrink and INTER_CUBIC where it grows; one OpenCV call when both axes
agree, two otherwise. OpenCV's INTER_AREA is slow at fractional factors and fast at exactly 2x, so when both
axes shrink by 1.5x or more, ``fast`` averages 2x2 blocks while both axes still shrink by 3x or more (and the
sides are even), resizes linearly to twice the target size, and averages 2x2 blocks once more: about Pillow's
distance of a direct INTER_AREA at a third to a half of its time. ``fast`` returns its image in
channel-planar storage (a [3, H, W] buffer seen as [H, W, 3]): the tiles cut from it then copy into the VPM's
strips as whole rows. How far it lands from Pillow is measured by ``minicpmv-edge bench preprocess``.
"""
from __future__ import annotations

from typing import Callable, Tuple

import numpy as np

MODES = ("exact", "fast", "torchvision")
Resizer = Callable[[np.ndarray, Tuple[int, int]], np.ndarray]
AREA_FROM_SHRINK = 1.5
HALVE_FROM_SHRINK = 2 * AREA_FROM_SHRINK  # halve while both axes shrink by this much


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


def _halve(cv2, rgb: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Exact 2x2 box means (OpenCV's fast INTER_AREA case) while both sides are even and at least
    HALVE_FROM_SHRINK times those of `size`."""
    width, height = size
    while (rgb.shape[0] % 2 == 0 and rgb.shape[1] % 2 == 0 and rgb.shape[1] >= HALVE_FROM_SHRINK * width
           and rgb.shape[0] >= HALVE_FROM_SHRINK * height):
        rgb = cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return rgb


def _planar(cv2, rgb: np.ndarray) -> np.ndarray:
    """The same pixels in channel-planar storage: a [3, H, W] buffer returned as its [H, W, 3] view."""
    planes = np.empty((3,) + rgb.shape[:2], dtype=np.uint8)
    cv2.split(rgb, [planes[0], planes[1], planes[2]])
    return planes.transpose(1, 2, 0)


def resize_fast(rgb: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """OpenCV resize of an RGB uint8 array (see the module docstring); the result is channel-planar underneath."""
    import cv2

    width, height = size
    along_x = _interpolation(cv2, rgb.shape[1], width)
    along_y = _interpolation(cv2, rgb.shape[0], height)
    if along_x == along_y == cv2.INTER_AREA:
        rgb = _halve(cv2, rgb, size)
        if rgb.shape[1] < HALVE_FROM_SHRINK * width and rgb.shape[0] < HALVE_FROM_SHRINK * height:
            doubled = cv2.resize(rgb, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
            return _planar(cv2, cv2.resize(doubled, (width, height), interpolation=cv2.INTER_AREA))
    if along_x == along_y:
        return _planar(cv2, cv2.resize(rgb, (width, height), interpolation=along_x))
    return _planar(cv2, cv2.resize(cv2.resize(rgb, (width, rgb.shape[0]), interpolation=along_x), (width, height),
                                   interpolation=along_y))


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
