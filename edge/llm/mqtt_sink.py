"""The MQTT sink (paho-mqtt 2.x): each alert published with QoS 1 to `<prefix>/<device>/<rule>/alert`, each rule's
state retained (QoS 1) at `<prefix>/<device>/<rule>/state`, and `<prefix>/<device>/status` retained "online", with
"offline" as the will. paho's network thread reconnects by itself; QoS 1 publishes made while disconnected wait in
its queue and go out on reconnect, and every (re)connect publishes the current states again (a broker restarted
without persistence has forgotten them)."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from ..errors import InputError
from .alert_config import MqttConfig

log = logging.getLogger("minicpmv-edge.llm.alerts")
MAX_QUEUED = 1000  # messages paho keeps while the broker is away; beyond that publishes are refused (logged)
RECONNECT_DELAY_S = (1, 30)  # paho's backoff between reconnect attempts: from 1 s doubling up to 30 s
KEEPALIVE_S = 30


def read_password(path: Path) -> str:
    """The MQTT password: the file's first line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("alerts.mqtt.password_file: cannot read %s (%s)" % (path, exc)) from None
    if not lines or not lines[0].strip():
        raise InputError("alerts.mqtt.password_file: %s must hold the password on its first line" % path)
    return lines[0].strip()


class MqttSink:
    """Publishes to `config`'s broker for `device`; `states()` gives {rule: state} to re-publish on each connect."""

    def __init__(self, config: MqttConfig, device: str, states: Callable[[], Dict[str, Optional[str]]]) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise InputError("alerts.mqtt needs paho-mqtt 2.x: pip install 'paho-mqtt>=2' (it is in the llm extra), "
                             "or remove alerts.mqtt") from None
        self.config, self.device, self.states = config, device, states
        self.base = "%s/%s" % (config.topic_prefix, device)
        self.counts = dict.fromkeys(("connects", "published", "refused"), 0)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=config.client_id or "")
        if config.username is not None:
            password = None if config.password_file is None else read_password(config.password_file)
            self.client.username_pw_set(config.username, password)
        self.client.max_queued_messages_set(MAX_QUEUED)
        self.client.reconnect_delay_set(*RECONNECT_DELAY_S)
        self.client.will_set(self.base + "/status", "offline", qos=1, retain=True)
        self._kept = (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)  # NO_CONN: kept by paho, sent on reconnect
        self.client.on_connect = self._connected
        self.client.on_disconnect = self._disconnected
        self.client.connect_async(config.host, config.port, KEEPALIVE_S)
        self.client.loop_start()

    def send(self, alert: Dict[str, Any]) -> None:
        """Publish `alert` (QoS 1) and its rule's new state (retained); queued by paho while disconnected."""
        self._publish("%s/%s/alert" % (self.base, alert["rule"]), alert, retain=False)
        self.state(alert["rule"], alert["state"])

    def state(self, rule: str, state: Optional[str]) -> None:
        """Publish `rule`'s current state, retained."""
        self._publish("%s/%s/state" % (self.base, rule),
                      {"device": self.device, "rule": rule, "state": state, "time": round(time.time(), 3)},
                      retain=True)

    def close(self) -> None:
        """Say offline, disconnect and stop paho's thread."""
        self.client.publish(self.base + "/status", "offline", qos=1, retain=True)
        self.client.disconnect()
        self.client.loop_stop()

    def _publish(self, topic: str, body: Dict[str, Any], retain: bool) -> None:
        info = self.client.publish(topic, json.dumps(body, ensure_ascii=False), qos=1, retain=retain)
        if info.rc in self._kept:
            self.counts["published"] += 1
        else:
            self.counts["refused"] += 1
            log.error("MQTT publish to %s refused (paho rc %d: over %d queued?)", topic, info.rc, MAX_QUEUED)

    def _connected(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s:%d refused the connection: %s", self.config.host, self.config.port, reason)
            return
        self.counts["connects"] += 1
        log.info("connected to the MQTT broker %s:%d", self.config.host, self.config.port)
        client.publish(self.base + "/status", "online", qos=1, retain=True)
        for rule, state in self.states().items():
            if state is not None:
                self.state(rule, state)

    def _disconnected(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        log.warning("disconnected from the MQTT broker %s:%d (%s): reconnecting", self.config.host,
                    self.config.port, reason)
