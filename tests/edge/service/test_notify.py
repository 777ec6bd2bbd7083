"""The notify protocol against a datagram socket the test owns, and the watchdog on a real frame loop: pings flow
while the loop turns, stop while a stage hangs, and resume when it returns."""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

import numpy as np

from edge.agent.pipeline import ENCODE_STAGES, Pipeline
from edge.agent.sinks import NullSink
from edge.camera.source import Frame
from edge.encoder.vision_encoder import EncodedImage
from edge.service.notify import Notifier, WatchdogHook, watchdog_hook, watchdog_interval_s
from tests.edge.camera.fakes import WAIT_S

INTERVAL_S = 0.05  # the watchdog's ping interval here


def receive(sock: socket.socket, timeout_s: float = WAIT_S) -> Optional[Dict[str, str]]:
    """The next message as a dict, or None when none came within `timeout_s`."""
    sock.settimeout(timeout_s)
    try:
        data = sock.recv(4096)
    except socket.timeout:
        return None
    return dict(line.split("=", 1) for line in data.decode().splitlines())


def drain(sock: socket.socket) -> List[Dict[str, str]]:
    messages = []
    while True:
        message = receive(sock, 0.0001)
        if message is None:
            return messages
        messages.append(message)


def test_messages_arrive_as_key_value_lines(notify_socket):
    path, sock = notify_socket
    notifier = Notifier(path)
    assert notifier.ready("running: tokens go to x")
    assert receive(sock) == {"READY": "1", "STATUS": "running: tokens go to x"}
    assert notifier.watchdog() and receive(sock) == {"WATCHDOG": "1"}
    assert notifier.reloading()
    reloading = receive(sock)
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
    assert notifier.stopping("bye") and receive(sock) == {"STOPPING": "1", "STATUS": "bye"}
    notifier.close()


def test_an_abstract_socket_is_reached_through_a_leading_at():
    name = "minicpmv-edge-test-%s" % uuid.uuid4().hex
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier("@" + name).watchdog()
        assert receive(sock) == {"WATCHDOG": "1"}


def test_without_notify_socket_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled and not notifier.ready("x") and not notifier.watchdog()
    assert watchdog_hook(notifier) is None


def test_the_watchdog_interval_is_half_of_watchdog_usec():
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000"}) == 0.5
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}) == 0.5
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}) is None  # another process's
    assert watchdog_interval_s({}) is None and watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None


class Camera:
    """A source that always has a new frame."""

    finished = False

    def __init__(self) -> None:
        self.sequence = 0
        self.image = np.zeros((32, 32, 3), np.uint8)

    def start(self) -> Camera:
        return self

    def stop(self) -> None:
        """Nothing runs."""

    def latest(self, timeout: Optional[float] = None) -> Frame:
        self.sequence += 1
        return Frame(self.image, time.monotonic(), self.sequence, 0, 1)

    def stats(self) -> Dict[str, Any]:
        return {"dropped": 0}


class HangingEncoder:
    """Stands in for an engine that hangs: while `hang` is set, encode blocks until `release` is set."""

    def __init__(self) -> None:
        self.hang, self.hanging, self.release = threading.Event(), threading.Event(), threading.Event()

    def encode(self, image: Any, color: str = "rgb") -> EncodedImage:
        if self.hang.is_set():
            self.hanging.set()
            self.release.wait()
        return EncodedImage(np.zeros((1, 4, 8), np.float32), None, dict.fromkeys(ENCODE_STAGES, 0.1), [])

    def close(self) -> None:
        """No engines."""


def test_a_hung_stage_stops_the_watchdog_pings_and_they_resume_after(notify_socket):
    path, sock = notify_socket
    encoder = HangingEncoder()
    hook = WatchdogHook(Notifier(path), INTERVAL_S)
    pipeline = Pipeline(encoder, Camera(), NullSink(), hooks=[hook])
    loop = threading.Thread(target=pipeline.run, name="frame-loop")
    loop.start()
    try:
        assert [receive(sock) for _ in range(3)] == [{"WATCHDOG": "1"}] * 3  # the loop turns: pings flow
        encoder.hang.set()
        assert encoder.hanging.wait(WAIT_S)
        drain(sock)  # a ping sent just before the encode hung
        pings = hook.pings
        assert receive(sock, 20 * INTERVAL_S) is None  # twenty intervals, not one ping
        assert hook.pings == pings
        encoder.hang.clear()
        encoder.release.set()
        assert receive(sock) == {"WATCHDOG": "1"}  # the stage returned: pings again
    finally:
        encoder.release.set()
        pipeline.stop()
        loop.join(WAIT_S)
    assert not loop.is_alive()
