"""The governor: snapshots in, level changes out. It only decides; the agent turns the knobs (GovernorHook), and
nothing here runs nvpmodel or jetson_clocks.

Per policy (edge.monitor.policy): memory climbs on the RAM used fraction, temperature on the hottest sensor, each
straight to the highest level whose threshold the reading reaches; power climbs one step per decision while the
board draws at least its budget. Going down is one level per decision, and only once the reading is below the
current level's threshold less the margin (hysteresis). A policy that changed level waits `min_dwell_s` before it
changes again, either way. A degraded snapshot, or a reading the source cannot give, holds the levels.
"""
from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional, Tuple

from .policy import GovernorConfig
from .snapshot import Snapshot

POLICIES = ("memory", "power", "temperature")
MEMORY_ACTIONS = ("normal", "fewer_slices", "overview_only", "pause_capture")
HISTORY = 100  # decisions kept for the report
log = logging.getLogger("minicpmv-edge")


class Decision(NamedTuple):
    """One level change of one policy, with the figures that made it."""

    time_s: float
    policy: str  # "memory", "power" or "temperature"
    level_from: int
    level_to: int
    action: str  # what the new level does: "fewer_slices", "lower_fps_2", "normal", ...
    reason: str  # one line with the reading and the threshold

    @property
    def escalation(self) -> bool:
        return self.level_to > self.level_from


class Targets(NamedTuple):
    """What one policy level asks of the loop: a slice cap (None: none), paused, the least seconds between frames."""

    max_slice_nums: Optional[int] = None
    paused: bool = False
    frame_interval_s: float = 0.0


def _action(policy: str, level: int) -> str:
    if level == 0:
        return "normal"
    if policy == "memory":
        return MEMORY_ACTIONS[level]
    return "%s_%d" % ("lower_fps" if policy == "power" else "back_off", level)


class Governor:
    """Decides each policy's level from snapshots (module docstring); `state()` is what the levels ask of the loop,
    `decisions_total` counts decisions by (policy, action) and `recent` keeps the last ones."""

    def __init__(self, policy: GovernorConfig) -> None:
        self.policy = policy
        self.levels: Dict[str, int] = dict.fromkeys(POLICIES, 0)
        self._changed_at: Dict[str, float] = dict.fromkeys(POLICIES, -float("inf"))
        self._holding: Dict[str, Optional[str]] = dict.fromkeys(POLICIES)  # why a policy holds, logged once
        self.decisions_total: Counter = Counter()
        self.recent: Deque[Decision] = deque(maxlen=HISTORY)

    def decide(self, snapshot: Snapshot, now_s: float) -> List[Decision]:
        """The level changes `snapshot` calls for at `now_s` (seconds, the snapshots' clock), applied to the levels."""
        decisions = []
        for policy in POLICIES:
            move = self._move(policy, snapshot)
            if move is None:
                continue
            level_to, reason = move
            if level_to == self.levels[policy] or now_s - self._changed_at[policy] < self.policy.min_dwell_s:
                continue
            decision = Decision(now_s, policy, self.levels[policy], level_to, _action(policy, level_to), reason)
            self.levels[policy], self._changed_at[policy] = level_to, now_s
            self.decisions_total[(policy, decision.action)] += 1
            self.recent.append(decision)
            decisions.append(decision)
        return decisions

    def _move(self, policy: str, snapshot: Snapshot) -> Optional[Tuple[int, str]]:
        """(the level `policy` should go to, why), or None when it has no reading to go on."""
        if not self._active(policy):
            return None
        reading = None if snapshot.degraded else {
            "memory": snapshot.ram_used_fraction, "power": snapshot.power_total_mw,
            "temperature": snapshot.hottest_c}[policy]
        if reading is None:
            why = snapshot.degraded or "no %s reading" % policy
            if self._holding[policy] != why:
                log.warning("governor: %s held at level %d: %s", policy, self.levels[policy], why)
            self._holding[policy] = why
            return None
        self._holding[policy] = None
        if policy == "power":
            return self._power_move(reading)
        if policy == "memory":
            memory = self.policy.memory
            return self._threshold_move(self.levels[policy], reading, memory.enter_used_fraction, memory.margin,
                                        lambda v: "RAM %.1f%% used" % (v * 100), lambda t: "%g%%" % (t * 100))
        temperature = self.policy.temperature
        return self._threshold_move(self.levels[policy], reading, temperature.enter_c, temperature.margin_c,
                                    lambda v: "hottest sensor %.1f C" % v, lambda t: "%g C" % t)

    @staticmethod
    def _threshold_move(level: int, reading: float, enter: Tuple[float, ...], margin: float,
                        show: Callable[[float], str], unit: Callable[[float], str]) -> Tuple[int, str]:
        """Up to the highest level whose threshold `reading` reaches, or down one below the threshold - margin."""
        reached = sum(1 for threshold in enter if reading >= threshold)
        if reached > level:
            return reached, "%s >= %s (enter level %d)" % (show(reading), unit(enter[reached - 1]), reached)
        if level and reading < enter[level - 1] - margin:
            return level - 1, "%s < %s (%s - %s margin: leave level %d)" % (
                show(reading), unit(enter[level - 1] - margin), unit(enter[level - 1]), unit(margin), level)
        return level, ""

    def _power_move(self, reading: float) -> Tuple[int, str]:
        power, level = self.policy.power, self.levels["power"]
        if reading >= power.budget_mw and level < len(power.frame_interval_s):
            return level + 1, "power %.0f mW >= budget %.0f mW (enter level %d)" % (reading, power.budget_mw,
                                                                                    level + 1)
        if level and reading < power.budget_mw - power.margin_mw:
            return level - 1, "power %.0f mW < %.0f mW (budget - %.0f mW margin: leave level %d)" % (
                reading, power.budget_mw - power.margin_mw, power.margin_mw, level)
        return level, ""

    def _active(self, policy: str) -> bool:
        """False for a policy the config turns off: no budget, no thresholds."""
        if policy == "power":
            return self.policy.power.budget_mw is not None
        if policy == "memory":
            return bool(self.policy.memory.enter_used_fraction)
        return bool(self.policy.temperature.enter_c)

    def targets(self, policy: str) -> Targets:
        """What `policy`'s current level asks of the loop."""
        level = self.levels[policy]
        if level == 0:
            return Targets()
        if policy == "memory":
            return Targets(self.policy.memory.reduced_slices if level == 1 else 1, level >= 3)
        if policy == "power":
            return Targets(frame_interval_s=self.policy.power.frame_interval_s[level - 1])
        temperature = self.policy.temperature
        return Targets(temperature.max_slice_nums[level - 1], False, temperature.frame_interval_s[level - 1])

    def state(self) -> Dict[str, Any]:
        """Each policy's level and what they ask together: the smallest slice cap (None: the config's), paused if
        any pauses, the longest least time between frames."""
        targets = [self.targets(policy) for policy in POLICIES]
        caps = [t.max_slice_nums for t in targets if t.max_slice_nums is not None]
        return {"levels": dict(self.levels), "max_slice_nums": min(caps) if caps else None,
                "paused": any(t.paused for t in targets),
                "frame_interval_s": max(t.frame_interval_s for t in targets)}
