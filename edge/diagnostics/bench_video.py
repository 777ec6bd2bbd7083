"""``minicpmv-edge bench video``: tokens per second of video sent to the LLM without grouping (N = 1, the still-image
Resampler per frame) and with 4.5 video packing (N frames per grouped Resampler call), in one run.

The agent's own frame loop runs on a synthetic clip: a scene that pans 4 px a frame, `--frames` frames stamped
`--fps` apart (video time, so every frame is handled, however slow this machine is), frame reuse off, the slice
budget `--max-slice-nums` (default 1: one slice per frame, as the official video recipe). Tokens per video second =
token rows the sink received / (frames / fps); the wall-clock rate at which this machine handled the frames is
reported beside it.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..agent.contracts import FrameResult
from ..agent.pipeline import Pipeline
from ..agent.video_pipeline import GroupingPipeline, open_grouper
from ..bundle.manifest import Bundle
from ..camera.source import Frame
from ..encoder.vision_encoder import VisionEncoder
from ..preprocess.scenes import synthetic_scene

PAN_PX = 4  # the scene moves this far between two frames


class _Clip:
    """A finite synthetic camera: `count` frames `1 / fps` seconds apart in video time, then finished."""

    def __init__(self, count: int, fps: float, size: Tuple[int, int]) -> None:
        width, height = size
        self.scene = np.ascontiguousarray(synthetic_scene(width + PAN_PX * count, height)[:, :, ::-1])
        self.count, self.fps, self.width, self.taken = count, fps, width, 0

    @property
    def finished(self) -> bool:
        return self.taken >= self.count

    def latest(self, timeout: Optional[float] = None) -> Optional[Frame]:
        if self.finished:
            return None
        k, self.taken = self.taken, self.taken + 1
        image = np.ascontiguousarray(self.scene[:, PAN_PX * k: PAN_PX * k + self.width])
        return Frame(image, k / self.fps, k, 0, 1)

    def stats(self) -> Dict[str, Any]:
        return {"taken": self.taken}


class _CountingSink:
    """Counts what would reach the LLM: token rows and token groups."""

    name = "count"

    def __init__(self) -> None:
        self.rows = self.groups = 0

    def describe(self) -> str:
        return "counted"

    def write(self, result: FrameResult) -> None:
        self.rows += int(result.tokens.shape[0] * result.tokens.shape[1])
        self.groups += 1

    def close(self) -> None:
        """Nothing held."""

    def stats(self) -> Dict[str, Any]:
        return {"rows": self.rows, "groups": self.groups}


def _measure(bundle: Bundle, group: int, frames: int, fps: float, size: Tuple[int, int],
             max_slice_nums: int) -> Dict[str, Any]:
    encoder = VisionEncoder.from_bundle(bundle.path)
    encoder.max_slice_nums = max_slice_nums
    sink, clip = _CountingSink(), _Clip(frames, fps, size)
    if group == 1:
        pipeline: Pipeline = Pipeline(encoder, clip, sink)
    else:
        pipeline = GroupingPipeline(encoder, clip, sink, grouper=open_grouper(bundle, group))
    start = time.perf_counter()
    report = pipeline.run()
    wall_s = time.perf_counter() - start
    pipeline.close()
    video_s = frames / fps
    return {"group_frames": group, "frames": report["frames"], "errors": report["errors"],
            "token_groups_sent": sink.groups, "token_rows_sent": sink.rows,
            "tokens_per_video_second": round(sink.rows / video_s, 2),
            "tokens_per_frame": round(sink.rows / max(report["frames"], 1), 2),
            "wall_s": round(wall_s, 2), "frames_per_wall_second": round(report["frames"] / wall_s, 3),
            "stages_ms_per_frame": report["stages_ms_per_frame"]}


def run_bench(bundle_path: Path, groups: Sequence[int], frames: int, fps: float, size: Tuple[int, int],
              max_slice_nums: int) -> Dict[str, Any]:
    """One measurement per group size, the first the baseline of the ratios."""
    bundle = Bundle.load(bundle_path)
    runs: List[Dict[str, Any]] = [_measure(bundle, g, frames, fps, size, max_slice_nums) for g in groups]
    base = runs[0]["tokens_per_video_second"]
    for run in runs:
        run["token_rate_vs_first"] = round(run["tokens_per_video_second"] / base, 4) if base else None
    return {"bundle": str(bundle_path), "model_version": bundle.model.version, "fps": fps,
            "frame_size": list(size), "max_slice_nums": max_slice_nums, "reuse": False,
            "machine": "%s, %s" % (platform.machine(), platform.processor() or "cpu"), "runs": runs}


def format_report(report: Dict[str, Any]) -> str:
    return "\n".join("N=%d: %.1f tokens per video second (%.2f per frame, x%.3f of N=%d); %d frames in %.1f s"
                     % (r["group_frames"], r["tokens_per_video_second"], r["tokens_per_frame"],
                        r["token_rate_vs_first"] or 0, report["runs"][0]["group_frames"], r["frames"], r["wall_s"])
                     for r in report["runs"])
