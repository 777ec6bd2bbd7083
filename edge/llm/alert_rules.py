"""A rule's state machine: each answer maps to a state, a state seen `debounce` times in a row settles, and a
change of the settled state becomes an alert unless the rule's last alert was under `cooldown_s` ago; then it is
held and goes out when the cooldown ends, if the state still differs from the one last announced."""
from __future__ import annotations

import re
import time
from typing import Any, Dict, Optional

from .alert_config import AlertRule

UNKNOWN = "unknown"
_FIRST_WORD = re.compile(r"[^\W_]+")


def state_of(answer: str, rule: AlertRule) -> str:
    """The answer's first word, lowercased, when it is one of the rule's states; else UNKNOWN."""
    match = _FIRST_WORD.search(answer)
    word = match.group(0).lower() if match else ""
    return word if word in rule.states else UNKNOWN


class RuleMachine:
    """One rule's state. `observe` takes each answer's record (frame_id, question, answer, asked_at) and returns
    the alert it fires, if any; `release` returns a held alert once its cooldown is over. Not thread-safe."""

    def __init__(self, rule: AlertRule, device: str) -> None:
        self.rule, self.device = rule, device
        self.state: Optional[str] = None  # the settled state; None until the first one settles
        self.announced: Optional[str] = None  # the state the last alert (or the initial state) announced
        self.last_answer: Optional[Dict[str, Any]] = None
        self.held_until: Optional[float] = None  # a change is held until then (unix time)
        self._candidate, self._seen = None, 0
        self._settled_by: Optional[Dict[str, Any]] = None  # the answer that settled the state
        self._last_alert_at: Optional[float] = None

    def observe(self, record: Dict[str, Any], now: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """Count one answer; the alert it fires, or None. Unknown answers are kept as the last answer only."""
        now = time.time() if now is None else now
        self.last_answer = record
        state = state_of(record["answer"], self.rule)
        if state == UNKNOWN:
            return None
        self._seen = self._seen + 1 if state == self._candidate else 1
        self._candidate = state
        if self._seen < self.rule.debounce or state == self.state:
            return None
        self.state, self._settled_by = state, record
        if self.announced is None:  # the initial state: recorded, not an alert
            self.announced = state
            return None
        return self.release(now)

    def release(self, now: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The alert for a settled state that differs from the one announced, once the cooldown allows it."""
        now = time.time() if now is None else now
        if self.state is None or self.state == self.announced:
            self.held_until = None  # back to the announced state during the cooldown: nothing to say
            return None
        if self._last_alert_at is not None and now < self._last_alert_at + self.rule.cooldown_s:
            self.held_until = self._last_alert_at + self.rule.cooldown_s
            return None
        settled = self._settled_by
        alert = {"device": self.device, "rule": self.rule.name, "state": self.state, "previous": self.announced,
                 "answer": settled["answer"], "question": self.rule.question, "frame_id": settled["frame_id"],
                 "time": round(now, 3), "asked_at": settled["asked_at"]}
        self.announced, self._last_alert_at, self.held_until = self.state, now, None
        return alert

    def summary(self) -> Dict[str, Any]:
        """The rule as GET /v1/alerts shows it; its state is the announced one (a held change shows once sent)."""
        last = self.last_answer or {}
        return {"name": self.rule.name, "question": self.rule.question, "state": self.announced,
                "last_answer": last.get("answer"), "last_frame_id": last.get("frame_id"),
                "asked_at": last.get("asked_at")}
