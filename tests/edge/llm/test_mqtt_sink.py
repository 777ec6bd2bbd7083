"""The MQTT sink against a real Mosquitto: a subscriber receives each alert (QoS 1) and the rule's state, a fresh
subscriber gets the retained state, and across a broker restart (persistence off) an alert fired while the broker
was down arrives and the retained state is there again, re-published by the sink on reconnect."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from edge.llm.alert_config import MqttConfig

from .broker import PASSWORD, WAIT_S, Broker, Watcher, by_topic

pytest.importorskip("paho.mqtt", reason="paho-mqtt is not installed (pip install -e '.[llm]')")

BASE = "minicpmv-edge/cam1/door"


def _alert(state: str, previous: str, frame_id: int) -> Dict[str, Any]:
    return {"device": "cam1", "rule": "door", "state": state, "previous": previous, "answer": state + ", someone",
            "question": "Is a person in the doorway?", "frame_id": frame_id, "time": 1000.0 + frame_id,
            "asked_at": 999.0 + frame_id}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path)
    broker.users("watcher", "sink")
    yield broker.start()
    broker.stop()


def test_alerts_and_retained_state_survive_a_broker_restart(broker: Broker, tmp_path: Path) -> None:
    from edge.llm.mqtt_sink import MqttSink

    (tmp_path / "mqtt-password").write_text(PASSWORD + "\n")
    states = {"door": "no"}
    watcher = Watcher(broker.port, "minicpmv-edge/cam1/#")
    sink = MqttSink(MqttConfig("127.0.0.1", broker.port, username="sink", password_file=tmp_path / "mqtt-password"),
                    "cam1", lambda: dict(states))
    fresh = late = None
    try:
        # On connect: online, and the state already settled (the initial state) retained.
        first = by_topic(watcher.until(BASE + "/state"))
        assert json.loads(first[BASE + "/state"].payload)["state"] == "no"
        states["door"] = "yes"
        sink.send(_alert("yes", "no", 7))
        got = by_topic(watcher.until(BASE + "/state"))
        alert = got[BASE + "/alert"]
        assert alert.qos == 1 and not alert.retain and json.loads(alert.payload) == _alert("yes", "no", 7)
        assert json.loads(got[BASE + "/state"].payload)["state"] == "yes"

        fresh = Watcher(broker.port, BASE + "/state")  # after the fact: the retained state
        retained = fresh.next()
        assert retained.retain and retained.qos == 1 and json.loads(retained.payload)["state"] == "yes"

        broker.stop()
        states["door"] = "no"
        sink.send(_alert("no", "yes", 9))  # the broker is down: paho keeps it
        assert sink.counts["refused"] == 0
        broker.users("watcher")  # the sink stays out until the watcher has subscribed again
        broker.start()
        watcher.subscribed.get(timeout=WAIT_S)
        broker.users("watcher", "sink")
        broker.reload()
        got = by_topic(watcher.until(BASE + "/alert"))
        assert json.loads(got[BASE + "/alert"].payload) == _alert("no", "yes", 9)

        late = Watcher(broker.port, BASE + "/state")  # a broker without persistence: the sink re-published it
        retained = late.next()
        assert retained.retain and json.loads(retained.payload)["state"] == "no"
        assert sink.counts["connects"] >= 2
    finally:
        sink.close()
        for client in (watcher, fresh, late):
            if client is not None:
                client.close()


def test_the_status_topic_says_offline_when_the_sink_closes(broker: Broker, tmp_path: Path) -> None:
    from edge.llm.mqtt_sink import MqttSink

    (tmp_path / "mqtt-password").write_text(PASSWORD + "\n")
    watcher = Watcher(broker.port, "minicpmv-edge/cam1/status")
    sink = MqttSink(MqttConfig("127.0.0.1", broker.port, username="sink", password_file=tmp_path / "mqtt-password"),
                    "cam1", dict)
    try:
        assert watcher.next().payload == b"online"
    finally:
        sink.close()
    try:
        assert watcher.next().payload == b"offline"
    finally:
        watcher.close()
