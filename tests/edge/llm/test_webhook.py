"""The webhook sink against a real HTTP server: 503 twice then 200 delivers the record once with two retries
counted; a 4xx is not retried; a receiver that is not there is retried, then given up and counted."""
from __future__ import annotations

import time
from typing import Any, Callable, Dict

from edge.llm.alert_config import WebhookConfig
from edge.llm.webhook import WebhookSink

from .broker import free_port

WAIT_S = 60.0
ALERT = {"device": "cam1", "rule": "door", "state": "yes", "previous": "no", "answer": "Yes, a person.",
         "question": "Is a person in the doorway?", "frame_id": 12, "time": 1700000000.5, "asked_at": 1699999999.0}


def _wait(condition: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "%s never happened" % what
        time.sleep(0.02)


def _counts(sink: WebhookSink) -> Dict[str, int]:
    return dict(sink.counts)


def test_two_503s_then_the_record_arrives_once(receiver) -> None:
    server = receiver([503, 503])
    sink = WebhookSink(WebhookConfig(server.url, timeout_s=10.0, retries=3))
    try:
        sink.send(ALERT)
        _wait(lambda: sink.counts["sent"] == 1, "the delivery")
    finally:
        sink.close()
    assert [post["status"] for post in server.posts] == [503, 503, 200]
    assert server.accepted == [{"path": "/hook", "type": "application/json", "body": ALERT, "status": 200}]
    assert _counts(sink) == {"sent": 1, "retries": 2, "failed": 0, "dropped": 0}


def test_a_4xx_is_not_retried(receiver) -> None:
    server = receiver([404])
    sink = WebhookSink(WebhookConfig(server.url, retries=3))
    try:
        sink.send(ALERT)
        _wait(lambda: sink.counts["failed"] == 1, "the refusal")
        sink.send(dict(ALERT, frame_id=13))  # the next alert goes on
        _wait(lambda: sink.counts["sent"] == 1, "the next delivery")
    finally:
        sink.close()
    assert [post["status"] for post in server.posts] == [404, 200]
    assert server.accepted[0]["body"]["frame_id"] == 13 and sink.counts["retries"] == 0


def test_no_receiver_is_retried_then_given_up() -> None:
    sink = WebhookSink(WebhookConfig("http://127.0.0.1:%d/hook" % free_port(), retries=2), first_backoff_s=0.01)
    try:
        sink.send(ALERT)
        _wait(lambda: sink.counts["failed"] == 1, "giving up")
    finally:
        sink.close()
    assert _counts(sink) == {"sent": 0, "retries": 2, "failed": 1, "dropped": 0}


def test_send_never_blocks_and_a_full_queue_drops() -> None:
    from edge.llm.webhook import QUEUE_LENGTH

    sink = WebhookSink(WebhookConfig("http://127.0.0.1:%d/hook" % free_port(), retries=1), first_backoff_s=3600.0)
    try:
        for frame_id in range(QUEUE_LENGTH + 5):  # the first is in its hour-long backoff; the queue fills
            sink.send(dict(ALERT, frame_id=frame_id))
        _wait(lambda: sink.counts["dropped"] >= 4, "drops")
    finally:
        sink.close()  # ends the backoff wait at once
    assert sink.counts["sent"] == 0
