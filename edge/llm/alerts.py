"""Alerts put together: one StandingQuestion thread per rule feeds its RuleMachine; each alert goes to the page
(the last MAX_ALERTS kept for ``GET /v1/alerts``), the webhook and the MQTT broker when configured. A change held
by a rule's cooldown is released by a timer when the cooldown ends."""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Dict, Optional

from .alert_config import AlertRule, AlertsConfig
from .alert_rules import RuleMachine
from .mqtt_sink import MqttSink
from .schedule import ScheduleConfig, StandingQuestion
from .service import ChatService
from .webhook import WebhookSink

log = logging.getLogger("minicpmv-edge.llm.alerts")
MAX_ALERTS = 100


class Alerts:
    """The rules of `config` asked through `service` (`start`, `close`); `page()` is GET /v1/alerts' body."""

    def __init__(self, service: ChatService, config: AlertsConfig) -> None:
        self.config = config
        self.machines = {rule.name: RuleMachine(rule, config.device) for rule in config.rules}
        self.recent: collections.deque[Dict[str, Any]] = collections.deque(maxlen=MAX_ALERTS)
        self._lock = threading.Lock()
        self._timers: Dict[str, threading.Timer] = {}
        self._closed = False
        self.webhook = self.mqtt = None
        self.questions = [StandingQuestion(service, ScheduleConfig(rule.question, rule.every_s),
                                           on_answer=lambda record, r=rule: self.observe(r, record),
                                           name="alert-" + rule.name) for rule in config.rules]
        if config.mqtt is not None:  # first: reading its password file may fail before any thread starts
            self.mqtt = MqttSink(config.mqtt, config.device, self.states)
        if config.webhook is not None:
            self.webhook = WebhookSink(config.webhook)

    def start(self) -> Alerts:
        for question in self.questions:
            question.start()
        return self

    def observe(self, rule: AlertRule, record: Dict[str, Any]) -> None:
        """One answer to `rule`'s question: into its machine, and any alert out."""
        with self._lock:
            machine = self.machines[rule.name]
            before = machine.announced
            alert = machine.observe(record)
            initial = before is None and machine.announced is not None
        if initial:
            log.info("rule %s starts in state %s (frame %d)", rule.name, machine.announced, record["frame_id"])
            if self.mqtt is not None:
                self.mqtt.state(rule.name, machine.announced)
        self._after(machine, alert)

    def states(self) -> Dict[str, Optional[str]]:
        """Each rule's announced state (None until one settles)."""
        with self._lock:
            return {name: machine.announced for name, machine in self.machines.items()}

    def page(self) -> Dict[str, Any]:
        """{"alerts": [records, newest last], "rules": [each rule's summary]}."""
        with self._lock:
            return {"alerts": list(self.recent), "rules": [m.summary() for m in self.machines.values()]}

    def close(self) -> None:
        """Stop the questions, the timers and the sinks."""
        for question in self.questions:
            question.close()
        with self._lock:
            self._closed = True
            for timer in self._timers.values():
                timer.cancel()
        for sink in (self.webhook, self.mqtt):
            if sink is not None:
                sink.close()

    def _release(self, machine: RuleMachine) -> None:
        with self._lock:
            alert = machine.release()
        self._after(machine, alert)

    def _after(self, machine: RuleMachine, alert: Optional[Dict[str, Any]]) -> None:
        """Send `alert`; when a change is held instead, time its release."""
        if alert is not None:
            self._send(alert)
        with self._lock:
            if machine.held_until is None or self._closed:
                return
            old = self._timers.get(machine.rule.name)
            if old is not None:
                old.cancel()
            timer = threading.Timer(max(0.0, machine.held_until - time.time()), self._release, (machine,))
            timer.daemon = True
            self._timers[machine.rule.name] = timer
            timer.start()

    def _send(self, alert: Dict[str, Any]) -> None:
        log.warning("alert: rule %s is %s (was %s) at frame %d: %r", alert["rule"], alert["state"],
                    alert["previous"], alert["frame_id"], alert["answer"])
        with self._lock:
            self.recent.append(alert)
        for sink in (self.webhook, self.mqtt):
            if sink is not None:
                sink.send(alert)
