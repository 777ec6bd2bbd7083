"""A 4.5 bundle's grouped (video) Resampler graph: which precision serves a Resampler precision, and its path."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import InputError
from .manifest import VIDEO_MODULE, Bundle


def video_precision(bundle: Bundle, precision: Optional[str] = None) -> str:
    """The grouped graph's precision for a Resampler at `precision`: the same where the bundle has it, else the
    nearest it has (fp32 first for an fp32 request, fp16 first otherwise: there is no int8 grouped graph); an
    InputError naming the fix when the bundle has no grouped graph."""
    if not bundle.has_video:
        raise InputError("video.group_frames needs the grouped Resampler in the bundle, and %s has none: run "
                         "minicpmv-convert export-video --bundle %s --checkpoint CHECKPOINT (MiniCPM-V 4.5)"
                         % (bundle.path, bundle.path))
    have = bundle.precisions(VIDEO_MODULE)
    if precision in have:
        return str(precision)
    order = ("fp32", "fp16") if precision in (None, "fp32") else ("fp16", "fp32")
    return next((p for p in order if p in have), have[0])


def video_graph_path(bundle: Bundle, precision: Optional[str] = None) -> Path:
    """The bundle's grouped Resampler graph at `video_precision(bundle, precision)`."""
    return bundle.graph_path(VIDEO_MODULE, video_precision(bundle, precision))
