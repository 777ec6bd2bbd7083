"""What `/state` says: the pipeline's report, the newest frame's facts, plot history of the box (memory, power,
temperature, fps, slices), the governor's state and last decision, and the banners (camera down, LLM down,
monitoring degraded, running degraded). The loop-side part (`Telemetry`, a LoopHook) samples once a second in the
loop's thread, so the HTTP threads never read the pipeline's growing lists while the loop writes them."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional

HISTORY_POINTS = 120  # plot points kept: two minutes at one a second
SAMPLE_S = 1.0
CAMERA_STALE_S = 5.0  # no new camera frame for this long: the camera is shown as down


class Telemetry:
    """Once every SAMPLE_S seconds of loop turns: the pipeline's report, one plot point, the banners the loop can
    tell and the governor's state; `sample()` is the newest of them, safe to read from any thread."""

    def __init__(self, monitor: Optional[Any] = None, governor: Optional[Any] = None) -> None:
        self.monitor, self.governor = monitor, governor
        self.points: Deque[Dict[str, Any]] = deque(maxlen=HISTORY_POINTS)
        self._last: Optional[Dict[str, Any]] = None
        self._at, self._frames = -float("inf"), 0
        self._lock = threading.Lock()

    def tick(self, pipeline: Any) -> None:
        now = time.monotonic()
        if now - self._at < SAMPLE_S:
            return
        frames = pipeline.counters["frames"]
        fps = (frames - self._frames) / (now - self._at) if self._at > -float("inf") else 0.0
        self._at, self._frames = now, frames
        snapshot = self.monitor.latest() if self.monitor is not None else None
        last = pipeline.last
        grid = last[1].grid if last is not None else None
        point = {"t": round(time.time(), 3), "fps": round(fps, 3),
                 "slices": grid[0] * grid[1] if grid else 0, "max_slice_nums": pipeline.encoder.max_slice_nums}
        point.update(_box(snapshot))
        sample = {"report": pipeline.report(), "paused": pipeline.paused,
                  "banners": camera_banners(pipeline.source.stats(), pipeline.paused) + _snapshot_banners(snapshot),
                  "governor": governor_view(self.governor), "monitor": None if snapshot is None else snapshot.source}
        sample["banners"] += degraded_banners(sample["governor"])
        with self._lock:
            self.points.append(point)
            self._last = dict(sample, history=list(self.points))

    def sample(self) -> Optional[Dict[str, Any]]:
        with self._lock:
            return self._last


def _box(snapshot: Any) -> Dict[str, Optional[float]]:
    """The plotted readings of a Snapshot (None where the box cannot tell)."""
    if snapshot is None:
        return {"ram_mb": None, "ram_pct": None, "power_w": None, "temp_c": None}
    used = snapshot.ram_used_kb
    fraction = snapshot.ram_used_fraction
    return {"ram_mb": None if used is None else round(used / 1024, 1),
            "ram_pct": None if fraction is None else round(100 * fraction, 2),
            "power_w": None if snapshot.power_total_mw is None else round(snapshot.power_total_mw / 1000, 3),
            "temp_c": snapshot.hottest_c}


def camera_banners(stats: Dict[str, Any], paused: bool) -> List[Dict[str, str]]:
    """A banner while the camera reconnects, or has sent no frame for CAMERA_STALE_S (not while paused)."""
    state, age = stats.get("state"), stats.get("last_frame_age_s")
    if state == "backoff" or (state == "connecting" and stats.get("reconnects", 0) > 0):
        return [{"kind": "camera", "text": "camera down: reconnecting (%d reconnects so far)"
                 % stats.get("reconnects", 0)}]
    if state == "finished":
        return [{"kind": "camera", "text": "camera: the source has ended"}]
    if not paused and age is not None and age > CAMERA_STALE_S:
        return [{"kind": "camera", "text": "camera down: no frame for %.0f s" % age}]
    return []


def _snapshot_banners(snapshot: Any) -> List[Dict[str, str]]:
    if snapshot is not None and snapshot.degraded:
        return [{"kind": "jtop", "text": "monitoring degraded: %s" % snapshot.degraded}]
    return []


def governor_view(governor: Any) -> Optional[Dict[str, Any]]:
    """The governor's state and its last decision, or None without a governor."""
    if governor is None:
        return None
    recent = list(governor.recent)
    last = recent[-1]._asdict() if recent else None
    return {"state": governor.state(), "last_decision": last}


def degraded_banners(view: Optional[Dict[str, Any]]) -> List[Dict[str, str]]:
    """One banner while any governor policy is above level 0, naming the levels and the last reason."""
    if view is None:
        return []
    raised = {policy: level for policy, level in view["state"]["levels"].items() if level > 0}
    if not raised:
        return []
    last = view["last_decision"]
    text = "running degraded: %s" % ", ".join("%s level %d" % item for item in sorted(raised.items()))
    if last is not None:
        text += " (%s: %s)" % (last["action"], last["reason"])
    return [{"kind": "degraded", "text": text}]
