"""The frame loop with MiniCPM-V 4.5 video packing (`video.group_frames: N`, N > 1): each camera frame goes through
preprocess and the VPM, and every N frames one grouped Resampler call turns their features into one group of tokens
for the sink (a `FrameResult` with `frames` = N, stamped with the group's last frame). Frames waiting in a group send
nothing.

Frame reuse with groups: a frame that reuse judges unchanged skips preprocess and the VPM and joins the group with the
last encoded frame's features and its own temporal id, so a group still closes every N frames (tokens reach the LLM
at fps / N, whatever the scene does) and the saving is the VPM, the costly stage. The governor still applies: its
fps cap spaces the frames (the temporal ids come from the capture times), and a changed slice budget changes the
frames' slice plan, which closes the waiting group early (it covers the frames it has). At the end of a source that
ends, a partly filled group is resampled with the frames it has. The grouped Resampler runs where the Resampler runs
(ONNX Runtime, or its own TensorRT engine from the engine cache: `open_grouper`).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..bundle.manifest import VIDEO_MODULE, Bundle
from ..encoder.video_group import FrameGrouper, GroupTokens
from ..engines.factory import open_video_engine
from ..engines.tensorrt.build import BuildSettings
from ..engines.tensorrt.cache import DEFAULT_CACHE_DIR
from .contracts import FrameResult
from .pipeline import Pipeline, _since_ms

log = logging.getLogger("minicpmv-edge")


def open_grouper(bundle: Bundle, group_frames: int, backend: Optional[str] = "onnxruntime",
                 precision: Optional[str] = None, cache_dir: Path = DEFAULT_CACHE_DIR,
                 settings: Optional[BuildSettings] = None, runtime: Optional[Tuple[Any, Any]] = None) -> FrameGrouper:
    """The bundle's grouped Resampler on `backend` (the Resampler's: ONNX Runtime, or a TensorRT engine from the
    engine cache) at the grouped precision nearest `precision`, grouping `group_frames` frames, at most the
    profile's groups a call; an InputError naming the fix when the bundle has no such graph."""
    engine = open_video_engine(bundle, backend, precision, cache_dir, settings, runtime=runtime)
    return FrameGrouper(engine, group_frames, bundle.shapes(VIDEO_MODULE).groups.max)


class GroupingPipeline(Pipeline):
    """A Pipeline whose encoder is a VisionEncoder (its `vpm_features`) and whose Resampler calls go through
    `grouper`."""

    def __init__(self, *args: Any, grouper: FrameGrouper, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.grouper = grouper
        self.last_frame: Any = None  # the newest frame taken (the web preview shows it with the newest group)

    def run(self, poll_s: float = 0.5) -> Dict[str, Any]:
        super().run(poll_s)
        try:
            self._write(self.grouper.flush(), None)
        except Exception as exc:  # noqa: BLE001 - the run's report still comes back
            self.counters["errors"] += 1
            log.warning("last video group skipped: %s: %s", type(exc).__name__, exc)
        return self.report()

    def handle(self, frame: Any) -> None:
        """One frame into its group; the group's tokens to the sink when it closes. A fault is logged and counted,
        and the loop goes on."""
        self.counters["frames"] += 1
        try:
            group, timings = self._features_into_group(frame)
            self._write(group, timings)
        except Exception as exc:  # noqa: BLE001 - a bad frame must not stop the agent
            self.counters["errors"] += 1
            log.warning("frame %d skipped: %s: %s", frame.sequence, type(exc).__name__, exc)

    def _features_into_group(self, frame: Any) -> Tuple[Optional[GroupTokens], Dict[str, float]]:
        """The frame's VPM features (or the reused ones) added to the waiting group: the group that closed, if one
        did, and the frame's stage timings."""
        start = time.perf_counter()
        encode = self.reuse is None or self.reuse.should_encode(frame.image, frame.color)
        timings = {"reuse_check": _since_ms(start)}
        if encode:
            features = self.encoder.vpm_features(frame.image, color=frame.color)
            timings.update(features.timings)
            if self.reuse is not None:
                self.reuse.remember(frame.image, features, frame.color)
            self.counters["encoded"] += 1
        else:
            features = self.reuse.result
            self.counters["reused"] += 1
        self.last_frame = frame
        return self.grouper.add(frame.sequence, frame.timestamp_s, features), timings

    def _write(self, group: Optional[GroupTokens], timings: Optional[Dict[str, float]]) -> None:
        timings = dict(timings or {})
        if group is not None:
            timings["resampler"] = group.resampler_ms
        for stage, ms in timings.items():
            self.times[stage].append(ms)
        if group is None:
            return
        result = FrameResult(group.sequences[-1], group.timestamps_s[-1], group.grid, group.tokens, timings,
                             frames=group.frames)
        start = time.perf_counter()
        self.sink.write(result)
        self.times["sink"].append(_since_ms(start))
        self.counters["groups"] += 1
        self.last = (self.last_frame, result)

    def close(self) -> None:
        """Free the grouped Resampler's engine first (it shares the encoder's device memory), then the rest."""
        try:
            self.grouper.engine.close()
        finally:
            super().close()

    def report(self) -> Dict[str, Any]:
        return dict(super().report(), video=dict(self.grouper.stats(), sent=self.counters["groups"]))
