"""Calibration and evaluation images: a folder, a video, or the built-in synthetic scenes, as RGB uint8 arrays.

Whatever the source, images go through the project's own preprocessing (edge.preprocess), so calibration sees
exactly the slices the device will: the same plan, resize and normalisation.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from edge.errors import InputError
from edge.preprocess.graph_inputs import pack_slices, slice_token_counts
from edge.preprocess.preprocessor import Preprocessor
from edge.preprocess.scenes import synthetic_scene

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
# Sizes of the built-in scenes: common camera frames and the odd shapes of docs/minicpmv.md (wide, small, unsliced).
SCENE_SIZES = ((1280, 720), (640, 480), (1920, 1080), (800, 600), (500, 300), (3000, 500), (1344, 1344), (812, 247))


def synthetic_images(count: int, seed: int = 0) -> List[np.ndarray]:
    """`count` built-in scenes of assorted sizes; `seed` separates calibration from held-out sets."""
    return [synthetic_scene(*SCENE_SIZES[i % len(SCENE_SIZES)], seed=seed * 1000 + i) for i in range(count)]


def folder_images(folder: Path, count: int) -> List[np.ndarray]:
    """Up to `count` images of a folder, in name order."""
    from PIL import Image

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError("no images (%s) in %s: pass a folder of calibration images" % (", ".join(IMAGE_SUFFIXES),
                                                                                          folder))
    images = []
    for path in files[:count]:
        try:
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB")))
        except OSError as exc:
            raise InputError("cannot read calibration image %s (%s): remove it or convert it to PNG/JPEG"
                             % (path, exc)) from exc
    return images


def video_images(video: Path, count: int) -> List[np.ndarray]:
    """`count` frames spread evenly over a video file (OpenCV), as RGB."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    if total <= 0:
        raise InputError("cannot read video %s: pass a video file OpenCV can decode (mp4, avi, mkv)" % video)
    images = []
    for index in np.linspace(0, total - 1, num=min(count, total)).astype(int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = capture.read()
        if ok:
            images.append(np.ascontiguousarray(frame[:, :, ::-1]))
    capture.release()
    if not images:
        raise InputError("no frame could be decoded from %s" % video)
    return images


def check_source(source: Optional[Path], count: int) -> None:
    """An InputError unless `source` is None, a folder or a video file, and `count` at least 1 (checked before
    any work, so that a typo in --data does not wait for an export)."""
    if count < 1:
        raise InputError("the image count must be at least 1, got %d" % count)
    if source is None:
        return
    source = Path(source)
    if not (source.is_dir() or (source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES)):
        raise InputError("%s is neither a folder of images nor a video (%s)"
                         % (source, ", ".join(VIDEO_SUFFIXES)))


def load_images(source: Optional[Path], count: int, seed: int = 0) -> List[np.ndarray]:
    """Images from a folder, a video file, or (source None) the synthetic scenes."""
    check_source(source, count)
    if source is None:
        return synthetic_images(count, seed)
    source = Path(source)
    return folder_images(source, count) if source.is_dir() else video_images(source, count)


def images_sha256(images: Sequence[np.ndarray]) -> str:
    """One digest of the images' sizes and pixels (recorded in the manifest)."""
    digest = hashlib.sha256()
    for image in images:
        digest.update(np.asarray(image.shape, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def vpm_batches(images: Sequence[np.ndarray], preprocessor: Preprocessor, layout: str,
                max_batch: int, query_num: int) -> List[Dict[str, Dict[str, np.ndarray]]]:
    """Per image, its slices packed as the encoder packs them: [{"vpm": feeds, "resampler": feeds, "sizes": (rows,
    cols) per slice, "tokens": tokens per slice}, ...]. For a merger layout `preprocessor` must be the bundle's
    (``slice_config``), whose sizes snap to whole merge blocks as 4.6's processor makes them."""
    batches = []
    for image in images:
        slices = preprocessor(image).slices
        step = len(slices) if layout == "unmasked-1d" else max_batch
        for first in range(0, len(slices), step):
            packed = pack_slices(slices[first:first + step], layout)
            batches.append({"vpm": packed.vpm, "resampler": packed.resampler, "sizes": packed.sizes,
                            "tokens": slice_token_counts(packed.sizes, layout, query_num)})
    return batches
