"""MiniCPM-V 4.5 video packing: N <= 6 consecutive frames' VPM features -> one grouped Resampler call -> one block of Q
tokens per slice position for the N frames (docs/minicpmv.md, "Video: grouped frames").

Temporal ids are made as the official video recipe makes them for a clip that is the group: a frame's time since
the group's first frame, mapped to the nearest multiple of 0.1 s, that multiple divided by 0.1 and truncated (so 4.3 s
gives 42, as the official float64 arithmetic does). Relative to the group, not to the start of the stream: every group
gets exactly what the official model gives that group's frames as one video, the ids stay small however long the
camera runs (a group spans at most 6 frames), and the float32 sin/cos of an id keeps its precision.

A group holds frames of one slice plan (same slice sizes): slice s of every frame is one group of keys, as the
official processor groups them; a frame whose plan differs (the governor changed the slice budget, the camera its
size) closes the group early, and the group covers the frames it has.
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from ..engines.base import host_array

if TYPE_CHECKING:  # annotations only: importing the encoder would import the engines
    from .vision_encoder import VpmFeatures

TIME_SCALE_S = 0.1  # one temporal id step
MAX_GROUP_FRAMES = 6  # the official packing limit


def temporal_id(seconds: float) -> int:
    """The official id of a frame `seconds` after the start: nearest multiple k of 0.1 s, then int(k*0.1 / 0.1)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a frame time must be a finite number of seconds >= 0, got %r" % (seconds,))
    low = math.floor(seconds / TIME_SCALE_S)
    candidates = (low - 1, low, low + 1)
    nearest = min((k for k in candidates if k >= 0), key=lambda k: abs(k * TIME_SCALE_S - seconds))
    return int(nearest * TIME_SCALE_S / TIME_SCALE_S)


class GroupTokens(NamedTuple):
    """One group's tokens float32 [slices, Q, D] (laid out as the first frame's still-image tokens), its grid, the
    camera sequences, capture times and temporal ids of its frames, and the grouped Resampler's time (ms)."""

    tokens: np.ndarray
    grid: Optional[Tuple[int, int]]
    sequences: List[int]
    timestamps_s: List[float]
    temporal_ids: List[int]
    resampler_ms: float

    @property
    def frames(self) -> int:
        return len(self.sequences)


class FrameGrouper:
    """Collects frames' VPM features and resamples every `size` of them together with `engine` (the grouped
    Resampler graph: vision_embeds [G*N, L, width], tgt_sizes [G*N, 2], temporal_ids [G, N] -> [G, Q, D]), at most
    `max_groups` slice positions a call (a TensorRT engine's profile; groups do not attend to each other, so a frame
    with more slices takes several calls)."""

    def __init__(self, engine: Any, size: int, max_groups: Optional[int] = None) -> None:
        if not 1 <= size <= MAX_GROUP_FRAMES:
            raise ValueError("a group holds 1..%d frames, got %r" % (MAX_GROUP_FRAMES, size))
        if max_groups is not None and max_groups < 1:
            raise ValueError("max_groups must be 1 or more, got %r" % (max_groups,))
        self.engine, self.size, self.max_groups = engine, size, max_groups
        self.pending: List[Tuple[int, float, VpmFeatures]] = []
        self.groups = 0
        self.closed_early = 0

    def add(self, sequence: int, timestamp_s: float, features: VpmFeatures) -> Optional[GroupTokens]:
        """Take one frame; the tokens of the group it completes, or of the group it closed early (its slice plan
        differs from the group's: it then starts the next group), else None."""
        done = None
        if self.pending and self.pending[0][2].patch_grids != features.patch_grids:
            done = self.flush()
            self.closed_early += 1
        self.pending.append((sequence, timestamp_s, features))
        if len(self.pending) == self.size:
            done = self.flush()
        return done

    def flush(self) -> Optional[GroupTokens]:
        """Resample the frames waiting (fewer than `size` at the end of a source), or None when none wait."""
        if not self.pending:
            return None
        frames, self.pending = self.pending, []
        ids = [temporal_id(max(0.0, t - frames[0][1])) for _, t, _ in frames]  # relative to the group's first
        grids = frames[0][2].patch_grids
        step = self.max_groups or len(grids)
        begin = time.perf_counter()
        tokens = np.concatenate([self._resample([f for _, _, f in frames], grids, ids, first, first + step)
                                 for first in range(0, len(grids), step)])
        self.groups += 1
        return GroupTokens(tokens, frames[0][2].grid, [s for s, _, _ in frames], [t for _, t, _ in frames], ids,
                           (time.perf_counter() - begin) * 1e3)

    def _resample(self, frames: List[VpmFeatures], grids: List[Tuple[int, int]], ids: List[int], first: int,
                  end: int) -> np.ndarray:
        """One engine call for slice positions first..end-1 of every frame: float32 [positions, Q, D]."""
        grids = grids[first:end]
        length = max(r * c for r, c in grids)
        width = frames[0].rows[0].shape[1]
        embeds = np.zeros((len(grids) * len(frames), length, width), dtype=np.float32)
        sizes = np.zeros((len(grids) * len(frames), 2), dtype=np.int32)
        for s, (r, c) in enumerate(grids):  # slice position after slice position, frame after frame inside each
            for f, features in enumerate(frames):
                embeds[s * len(frames) + f, : r * c] = features.rows[first + s]
                sizes[s * len(frames) + f] = (r, c)
        feeds = {"vision_embeds": embeds, "tgt_sizes": sizes,
                 "temporal_ids": np.tile(np.array(ids, dtype=np.int32), (len(grids), 1))}
        return np.asarray(host_array(self.engine.infer(feeds)["image_tokens"], np.float32), dtype=np.float32)

    def stats(self) -> Dict[str, Any]:
        return {"group_frames": self.size, "groups": self.groups, "closed_early": self.closed_early,
                "waiting": len(self.pending)}
