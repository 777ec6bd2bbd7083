"""Alerts in the LLM process on the real llama.cpp (tiny GGUF, tiny bundle): a rule's answers reach its state
machine and GET /v1/alerts shows the rule with its last answer; scripted answers through the same Alerts fire an
alert that reaches the page and a real webhook receiver, and a change held by the cooldown goes out when the cooldown
ends without another answer. /v1/alerts takes the bearer token like the other endpoints."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, Tuple

from edge.llm.alert_config import AlertRule, AlertsConfig, WebhookConfig
from edge.llm.api import Limits

from .conftest import publish

WAIT_S = 60.0
DOOR = AlertRule("door", "Is a person in the doorway? Answer yes or no.", 0.05, ("yes", "no"), debounce=2,
                 cooldown_s=1.0)
IDLE = AlertRule("door", DOOR.question, 3600.0, ("yes", "no"), debounce=1, cooldown_s=0.5)


def _wait(condition: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "%s never happened" % what
        time.sleep(0.02)


def _alerts(url: str, token: str = "") -> Tuple[int, Dict[str, Any]]:
    headers = {"Authorization": "Bearer " + token} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/alerts", headers=headers),
                                    timeout=WAIT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_answers_reach_the_rule_and_the_page(start_llm) -> None:
    running = start_llm(alerts=AlertsConfig("cam1", (DOOR,)), limits=Limits(max_tokens=4))
    status, body = _alerts(running.url)
    assert status == 200 and body == {"alerts": [], "rules": [
        {"name": "door", "question": DOOR.question, "state": None, "last_answer": None, "last_frame_id": None,
         "asked_at": None}]}
    publish(running, 1, seed=1)
    _wait(lambda: _alerts(running.url)[1]["rules"][0]["last_frame_id"] == 1, "an answer about frame 1")
    rule = _alerts(running.url)[1]["rules"][0]
    assert isinstance(rule["last_answer"], str) and rule["asked_at"] > 0
    question = running.process.alerts.questions[0]
    assert question.counts["answered"] >= 1 and question.counts["errors"] == 0


def test_an_alert_reaches_the_page_and_the_webhook(start_llm, receiver) -> None:
    server = receiver([])
    running = start_llm(alerts=AlertsConfig("cam1", (IDLE,), webhook=WebhookConfig(server.url)))
    alerts = running.process.alerts
    for frame_id, answer in enumerate(["No.", "Yes, someone.", "no"], start=1):
        alerts.observe(IDLE, {"frame_id": frame_id, "answer": answer, "asked_at": 1000.0 + frame_id})
    _wait(lambda: len(_alerts(running.url)[1]["alerts"]) == 2, "the held alert's release")
    page = _alerts(running.url)[1]
    assert [(a["previous"], a["state"], a["frame_id"]) for a in page["alerts"]] == [("no", "yes", 2), ("yes", "no", 3)]
    first = page["alerts"][0]
    assert set(first) == {"device", "rule", "state", "previous", "answer", "question", "frame_id", "time",
                          "asked_at"}
    assert first["device"] == "cam1" and first["answer"] == "Yes, someone." and first["asked_at"] == 1002.0
    assert page["alerts"][1]["time"] >= first["time"] + IDLE.cooldown_s
    assert page["rules"][0]["state"] == "no" and page["rules"][0]["last_answer"] == "no"
    _wait(lambda: len(server.accepted) == 2, "both alerts at the webhook")
    assert [post["body"] for post in server.accepted] == page["alerts"]


def test_the_alerts_endpoint_takes_the_token(start_llm) -> None:
    token = "s3cret-token-0123456789"
    running = start_llm(token=token)
    assert _alerts(running.url)[0] == 401
    assert _alerts(running.url, token) == (200, {"alerts": [], "rules": []})
