"""The governor in the frame loop: a LoopHook that feeds each new monitor snapshot to the Governor and turns the
loop's knobs to what it decided (the encoder's max_slice_nums, paused, frame_interval_s)."""
from __future__ import annotations

import logging
from typing import Any, Optional, Protocol

from .governor import Governor
from .snapshot import Snapshot

log = logging.getLogger("minicpmv-edge")


class Monitor(Protocol):
    """Readings of the box in the background (edge.monitor.readers)."""

    def latest(self) -> Optional[Snapshot]:
        """The newest snapshot, None before the first."""

    def close(self) -> None:
        """Stop reading."""


class GovernorHook:
    """Each loop turn: a snapshot not seen before goes to `governor.decide`, each decision is logged (WARNING when it
    escalates, INFO when it recovers) and the governor's state is applied on top of the config's `base_max_slices`
    and `base_interval_s`. A slice change resets frame reuse: the remembered tokens have the old grid. Closing the
    hook closes the monitor when `owns_monitor`."""

    def __init__(self, governor: Governor, monitor: Monitor, base_max_slices: int, base_interval_s: float = 0.0,
                 owns_monitor: bool = True) -> None:
        self.governor, self.monitor, self.owns_monitor = governor, monitor, owns_monitor
        self.base_max_slices, self.base_interval_s = base_max_slices, base_interval_s
        self._seen: Optional[Snapshot] = None

    def tick(self, pipeline: Any) -> None:
        snapshot = self.monitor.latest()
        if snapshot is None or snapshot == self._seen:
            return
        self._seen = snapshot
        for decision in self.governor.decide(snapshot, snapshot.time_s):
            log.log(logging.WARNING if decision.escalation else logging.INFO, "governor: %s level %d -> %d (%s): %s",
                    decision.policy, decision.level_from, decision.level_to, decision.action, decision.reason)
        self.apply(pipeline)

    def apply(self, pipeline: Any) -> None:
        """Set the pipeline's knobs to the governor's state."""
        state = self.governor.state()
        cap = state["max_slice_nums"]
        slices = self.base_max_slices if cap is None else min(cap, self.base_max_slices)
        if pipeline.encoder.max_slice_nums != slices:
            pipeline.encoder.max_slice_nums = slices
            if pipeline.reuse is not None:
                pipeline.reuse.reset()
        pipeline.paused = state["paused"]
        pipeline.frame_interval_s = max(self.base_interval_s, state["frame_interval_s"])

    def close(self) -> None:
        if self.owns_monitor:
            self.monitor.close()
