"""The agent config's `video:` section: MiniCPM-V 4.5 video packing (edge.encoder.video_group).

``group_frames: N`` (1..6, default 1 = off) resamples every N consecutive camera frames together into one group of
tokens; N > 1 needs a 4.5 bundle holding the grouped graph (minicpmv-convert export-video).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..encoder.video_group import MAX_GROUP_FRAMES
from ..errors import InputError

VIDEO_KEYS = ("group_frames",)


@dataclass(frozen=True)
class VideoConfig:
    group_frames: int = 1  # 1: every frame is resampled on its own (still-image tokens)

    @property
    def grouped(self) -> bool:
        return self.group_frames > 1


def parse_video(section: Mapping[str, Any]) -> VideoConfig:
    """The `video:` section, checked."""
    unknown = sorted(str(key) for key in section if key not in VIDEO_KEYS)
    if unknown:
        raise InputError("video: unknown key %r (a typo?): the keys are %s" % (unknown[0], ", ".join(VIDEO_KEYS)))
    value = section.get("group_frames", 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_GROUP_FRAMES:
        raise InputError("video.group_frames must be an integer in 1..%d (frames per grouped Resampler call, 1 = off),"
                         " got %r" % (MAX_GROUP_FRAMES, value))
    return VideoConfig(value)
