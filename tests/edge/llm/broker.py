"""A real Mosquitto for the tests, on a free loopback port, persistence off, users from a password file (so that a
test can keep one client out for a while: rewrite the users, then `reload`); and a paho subscriber that collects
what it receives."""
from __future__ import annotations

import getpass
import queue
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import pytest

WAIT_S = 60.0
PASSWORD = "pass-0123456789"


def mosquitto_binary() -> str:
    """The broker's path; the test skips (saying how to install it) where there is none."""
    found = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)
    if found is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto is not installed (make system-deps, or apt-get install mosquitto)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """`start()`, `stop()` and `start()` again on the same port; only `users` may connect (password PASSWORD)."""

    def __init__(self, folder: Path) -> None:
        self.binary, self.folder, self.port = mosquitto_binary(), folder, free_port()
        self.conf, self.passwd = folder / "mosquitto.conf", folder / "passwd"
        # user: as root, mosquitto would switch to the user mosquitto, who cannot read the test's folder.
        self.conf.write_text("listener %d 127.0.0.1\npersistence false\nallow_anonymous false\npassword_file %s\n"
                             "user %s\n" % (self.port, self.passwd, getpass.getuser()))
        self.process: Optional[subprocess.Popen] = None

    def users(self, *names: str) -> None:
        self.passwd.write_text("")
        for name in names:
            subprocess.run(["mosquitto_passwd", "-b", str(self.passwd), name, PASSWORD], check=True)
        self.passwd.chmod(0o644)

    def start(self) -> Broker:
        self.process = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + WAIT_S
        while True:
            assert self.process.poll() is None, "mosquitto exited with %s" % self.process.returncode
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, "mosquitto never listened on port %d" % self.port
                time.sleep(0.05)

    def reload(self) -> None:
        """Read the password file again (SIGHUP)."""
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(WAIT_S)


class Message(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Watcher:
    """A paho subscriber (user `name`) to `topic`, QoS 1; `next()` is the next message received."""

    def __init__(self, port: int, topic: str, name: str = "watcher") -> None:
        import paho.mqtt.client as mqtt

        self.messages: queue.Queue[Message] = queue.Queue()
        self.subscribed: queue.Queue[bool] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.username_pw_set(name, PASSWORD)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.put(True)
        self.client.on_message = lambda client, userdata, m: self.messages.put(
            Message(m.topic, m.payload, m.qos, m.retain))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.subscribed.get(timeout=WAIT_S)

    def next(self) -> Message:
        return self.messages.get(timeout=WAIT_S)

    def until(self, topic: str) -> List[Message]:
        """Messages up to and including the first on `topic`."""
        seen = [self.next()]
        while seen[-1].topic != topic:
            seen.append(self.next())
        return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def by_topic(messages: List[Message]) -> Dict[str, Message]:
    return {m.topic: m for m in messages}
