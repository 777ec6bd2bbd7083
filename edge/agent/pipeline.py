"""The frame loop: camera -> (reuse check) -> preprocess -> VPM -> Resampler -> sink, with per-stage timings.

Between camera frames it also encodes the images others asked for (`requests`: an LLM's attached photo), so the
engines have one owner and one thread; while images wait it does not sit in the camera wait for long.

Its knobs, turned between frames by its hooks (the governor): `paused` (no camera frame is taken; requests are still
served), `frame_interval_s` (the least time between two handled frames: an fps cap) and the encoder's
`max_slice_nums`. Each hook's `tick` runs after every turn of the loop, in the loop's thread.

Each handled frame becomes one `FrameResult` for the sink: the frame's own tokens, or those of the last encoded
frame when frame reuse judges the picture unchanged. Faults while running are logged, counted and recovered from
(the camera reconnects on its own; a failed reuse check, encode or sink write skips that frame); the loop ends only
when the source finishes, `max_frames` is reached, or it is stopped.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .contracts import Encoder, FrameResult, LoopHook, Requests, ReuseCheck, Sink, Source

ENCODE_STAGES = ("preprocess", "vpm", "resampler")
STAGES = ("reuse_check",) + ENCODE_STAGES + ("sink",)  # the work of a frame
WAIT = "capture_wait"  # time spent waiting for the camera: reported apart, it is idle time, not work
REQUEST = "request"  # encoding a requested image: reported apart, it is not a camera frame's work
LATENCY = "latency"  # capture (the camera's timestamp) to the sink's write returned, per frame written
REQUEST_POLL_S = 0.05  # the longest a requested image waits for the camera wait to end
log = logging.getLogger("minicpmv-edge")


def _since_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def percentile_ms(values: Sequence[float], share: float) -> Optional[float]:
    """The `share` (0..1) percentile of `values`, rounded to the microsecond; None for none."""
    return round(float(np.percentile(values, 100 * share)), 3) if len(values) else None


class Pipeline:
    """Runs frames from `source` through `encoder` into `sink`, reusing the last encoded result when `reuse` says
    the frame barely changed (no `reuse`: every frame is encoded); one frame at a time, all in the caller's thread
    (edge.agent.pipelined overlaps the stages)."""

    mode = "sequential"  # the agent config's `pipeline:`

    def __init__(self, encoder: Encoder, source: Source, sink: Sink, reuse: Optional[ReuseCheck] = None,
                 max_frames: Optional[int] = None, requests: Optional[Requests] = None,
                 hooks: Sequence[LoopHook] = ()) -> None:
        self.encoder, self.source, self.sink, self.reuse = encoder, source, sink, reuse
        self.requests, self.hooks = requests, list(hooks)
        self.max_frames = max_frames
        self.paused = False  # the governor's: take no camera frame
        self.frame_interval_s = 0.0  # the governor's: at least this long between two handled frames
        self._last_frame_at = -float("inf")
        self.times: Dict[str, List[float]] = defaultdict(list)
        self.counters: Dict[str, int] = defaultdict(int)
        self.stopping = threading.Event()
        self._counting = threading.Lock()  # the pipelined loop counts from several threads
        self.last: Optional[Tuple[Any, FrameResult]] = None  # the newest handled frame and its result (the web page)

    def run(self, poll_s: float = 0.5) -> Dict[str, Any]:
        """Loop until the source finishes, max_frames frames were handled, or stop() is called."""
        while not self.stopping.is_set():
            if self.max_frames is not None and self.counters["frames"] >= self.max_frames:
                break
            self.serve_requests()
            wait_s = REQUEST_POLL_S if self.requests is not None else poll_s
            frame = self._next_frame(wait_s)
            if frame is not None:
                self.handle(frame)
            elif self.source.finished:
                break
            self._tick_hooks()
        return self.report()

    def _next_frame(self, wait_s: float) -> Any:
        """The camera's newest frame, or None: paused, still inside `frame_interval_s`, or none within `wait_s`."""
        hold_s = self._last_frame_at + self.frame_interval_s - time.monotonic()
        if self.paused or hold_s > 0:
            self.stopping.wait(min(wait_s, hold_s) if not self.paused else wait_s)
            return None
        start = time.perf_counter()
        frame = self.source.latest(wait_s)
        if frame is not None:
            self.times[WAIT].append(_since_ms(start))
            self._last_frame_at = time.monotonic()
        return frame

    def _tick_hooks(self) -> None:
        for hook in self.hooks:
            try:
                hook.tick(self)
            except Exception as exc:  # noqa: BLE001 - a failing hook must not stop the agent
                self.counters["hook_errors"] += 1
                log.warning("loop hook %s failed: %s: %s", type(hook).__name__, type(exc).__name__, exc)

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        """Fail the images still waiting, let go of the sink, free the encoder's engines and close the hooks that
        have a close() (the governor's monitor); the source is stopped by whoever started it."""
        try:
            if self.requests is not None:
                self.requests.close()
            self.sink.close()
        finally:
            try:
                self.encoder.close()
            finally:
                for hook in self.hooks:
                    close = getattr(hook, "close", None)
                    if close is not None:
                        close()

    def serve_requests(self) -> None:
        """Encode the images others asked for, each timed apart from the frames'."""
        if self.requests is None or not len(self.requests):
            return
        def encode(image: Any) -> Any:
            start = time.perf_counter()
            try:
                return self.encoder.encode(image, color="rgb")
            finally:
                self.times[REQUEST].append(_since_ms(start))

        self.requests.serve(encode)

    def count(self, counter: str) -> None:
        with self._counting:
            self.counters[counter] += 1

    def skipped(self, frame: Any, exc: Exception) -> None:
        """A frame that a fault kept from the sink: logged and counted."""
        self.count("errors")
        log.warning("frame %d skipped: %s: %s", frame.sequence, type(exc).__name__, exc)

    def handle(self, frame: Any) -> None:
        """One frame to the sink; a fault is logged and counted, and the loop goes on."""
        self.count("frames")
        try:
            result = self._result_of(frame)
            for stage, ms in result.timings_ms.items():
                self.times[stage].append(ms)
        except Exception as exc:  # noqa: BLE001 - a bad frame must not stop the agent
            self.skipped(frame, exc)
            return
        self.write(frame, result)

    def write(self, frame: Any, result: FrameResult) -> None:
        """`result` to the sink, timed, with the frame's latency from capture; then it is the newest (`last`)."""
        try:
            start = time.perf_counter()
            self.sink.write(result)
            self.times["sink"].append(_since_ms(start))
            self.times[LATENCY].append((time.monotonic() - frame.timestamp_s) * 1e3)
            self.last = (frame, result)
        except Exception as exc:  # noqa: BLE001 - a bad frame must not stop the agent
            self.skipped(frame, exc)

    def _result_of(self, frame: Any) -> FrameResult:
        """The frame encoded, or the remembered result of the last encoded frame re-stamped for this one."""
        start = time.perf_counter()
        encode = self.reuse is None or self.reuse.should_encode(frame.image, frame.color)
        check_ms = _since_ms(start)
        if not encode:
            source: FrameResult = self.reuse.result
            self.count("reused")
            return source._replace(sequence=frame.sequence, timestamp_s=frame.timestamp_s,
                                   timings_ms={"reuse_check": check_ms}, reused_from=source.sequence)
        encoded = self.encoder.encode(frame.image, color=frame.color)
        timings_ms = {"reuse_check": check_ms}
        timings_ms.update((stage, encoded.timings[stage]) for stage in ENCODE_STAGES)
        result = FrameResult(frame.sequence, frame.timestamp_s, encoded.grid, encoded.tokens, timings_ms,
                             positions=encoded.positions, block_rows=block_rows_of(encoded.token_counts))
        if self.reuse is not None:
            self.reuse.remember(frame.image, result, frame.color)
        self.count("encoded")
        return result

    def report(self) -> Dict[str, Any]:
        """Per-stage mean ms per handled frame and its share of the frame's work time, the camera wait apart, the
        latency of the frames written (capture to sink), counters (dropped: frames the camera replaced before they
        were taken), and source stats."""
        frames = max(self.counters["frames"], 1)
        per_frame = {stage: sum(self.times.get(stage, [])) / frames for stage in STAGES}
        total = sum(per_frame.values()) or 1.0
        source = self.source.stats()
        latency = list(self.times.get(LATENCY, []))
        return {"pipeline": self.mode, "frames": self.counters["frames"], "encoded": self.counters["encoded"],
                "reused": self.counters["reused"], "errors": self.counters["errors"],
                "hook_errors": self.counters["hook_errors"],
                "dropped": source.get("dropped", 0),
                "reused_share": self.counters["reused"] / frames,
                "stages_ms_per_frame": {s: round(v, 3) for s, v in per_frame.items()},
                "stage_shares": {s: round(v / total, 4) for s, v in per_frame.items()},
                "frame_work_ms": round(total, 3),
                "capture_wait_ms_per_frame": round(sum(self.times.get(WAIT, [])) / frames, 3),
                "latency_ms": {"median": percentile_ms(latency, 0.5), "p90": percentile_ms(latency, 0.9),
                               "frames": len(latency)},
                "encoded_ms": {s: round(float(np.mean(self.times[s])), 3) for s in ENCODE_STAGES
                               if self.times.get(s)},
                "sink": self.sink.describe(),
                "sinks": self.sink.stats(),
                "requests": self._requests_report(),
                "source": source}

    def _requests_report(self) -> Optional[Dict[str, Any]]:
        """The encode requests' counters and mean ms per image, or None when the loop serves none."""
        if self.requests is None:
            return None
        times = self.times.get(REQUEST)
        return dict(self.requests.stats(), encode_ms=round(float(np.mean(times)), 3) if times else None)


def block_rows_of(token_counts: Optional[List[int]]) -> Optional[Tuple[int, ...]]:
    """The rows of each block as a frame carries them (merger versions), or None."""
    return None if token_counts is None else tuple(int(n) for n in token_counts)
