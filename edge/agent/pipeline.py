"""The frame loop: camera -> (reuse check) -> preprocess -> VPM -> Resampler -> sink, with per-stage timings.

Faults while running are logged, counted and recovered from (the camera reconnects on its own; a failed encode or
sink write skips that frame); the loop ends only when the source finishes, `max_frames` is reached, or it is
stopped.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..fsutil import atomic_write_npy

STAGES = ("reuse_check", "preprocess", "vpm", "resampler", "sink")  # the work of a frame
WAIT = "capture_wait"  # time spent waiting for the camera: reported apart, it is idle time, not work
log = logging.getLogger("minicpmv-edge")


class NpySink:
    """Tokens of each encoded frame as `frame-<sequence>.npy` in a folder, keeping the newest `keep` files."""

    def __init__(self, directory: Path, keep: int = 100) -> None:
        self.directory, self.keep = Path(directory), int(keep)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.written: List[Path] = []

    def write(self, sequence: int, tokens: np.ndarray) -> Path:
        path = self.directory / ("frame-%08d.npy" % sequence)
        atomic_write_npy(path, tokens)
        self.written.append(path)
        while len(self.written) > self.keep:
            self.written.pop(0).unlink(missing_ok=True)
        return path


class Pipeline:
    """Runs frames from `source` through `encoder` into `sink`, reusing tokens when `reuse` says the frame barely
    changed."""

    def __init__(self, encoder: Any, source: Any, sink: Any, reuse: Optional[Any] = None,
                 max_frames: Optional[int] = None) -> None:
        self.encoder, self.source, self.sink, self.reuse = encoder, source, sink, reuse
        self.max_frames = max_frames
        self.times: Dict[str, List[float]] = defaultdict(list)
        self.counters: Dict[str, int] = defaultdict(int)
        self.stopping = threading.Event()

    def run(self, poll_s: float = 0.5) -> Dict[str, Any]:
        """Loop until the source finishes, max_frames frames were handled, or stop() is called."""
        while not self.stopping.is_set():
            if self.max_frames is not None and self.counters["frames"] >= self.max_frames:
                break
            start = time.perf_counter()
            frame = self.source.latest(poll_s)
            if frame is None:
                if self.source.finished:
                    break
                continue
            self.times[WAIT].append((time.perf_counter() - start) * 1e3)
            self.handle(frame)
        return self.report()

    def stop(self) -> None:
        self.stopping.set()

    def handle(self, frame: Any) -> None:
        self.counters["frames"] += 1
        start = time.perf_counter()
        encode = self.reuse is None or self.reuse.should_encode(frame.image, frame.color)
        self.times["reuse_check"].append((time.perf_counter() - start) * 1e3)
        try:
            if encode:
                result = self.encoder.encode(frame.image, color=frame.color)
                for stage in ("preprocess", "vpm", "resampler"):
                    self.times[stage].append(result.timings[stage])
                tokens = result.tokens
                if self.reuse is not None:
                    self.reuse.remember(frame.image, tokens, frame.color)
                self.counters["encoded"] += 1
            else:
                tokens = self.reuse.tokens
                self.counters["reused"] += 1
            start = time.perf_counter()
            self.sink.write(frame.sequence, tokens)
            self.times["sink"].append((time.perf_counter() - start) * 1e3)
        except Exception as exc:  # noqa: BLE001 - a bad frame must not stop the agent
            self.counters["errors"] += 1
            log.warning("frame %d skipped: %s: %s", frame.sequence, type(exc).__name__, exc)

    def report(self) -> Dict[str, Any]:
        """Per-stage mean ms per handled frame and its share of the frame's work time, the camera wait apart,
        counters, and source stats."""
        frames = max(self.counters["frames"], 1)
        per_frame = {stage: sum(self.times.get(stage, [])) / frames for stage in STAGES}
        total = sum(per_frame.values()) or 1.0
        return {"frames": self.counters["frames"], "encoded": self.counters["encoded"],
                "reused": self.counters["reused"], "errors": self.counters["errors"],
                "reused_share": self.counters["reused"] / frames,
                "stages_ms_per_frame": {s: round(v, 3) for s, v in per_frame.items()},
                "stage_shares": {s: round(v / total, 4) for s, v in per_frame.items()},
                "frame_work_ms": round(total, 3),
                "capture_wait_ms_per_frame": round(sum(self.times.get(WAIT, [])) / frames, 3),
                "encoded_ms": {s: round(float(np.mean(self.times[s])), 3) for s in ("preprocess", "vpm",
                                                                                     "resampler")
                               if self.times.get(s)},
                "source": self.source.stats()}
