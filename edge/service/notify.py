"""systemd's notify protocol without libsystemd: one AF_UNIX datagram of `KEY=value` lines to `$NOTIFY_SOCKET` (a
leading `@` is the abstract namespace). Without the variable every call does nothing, so the same code runs under
systemd (`Type=notify`, `WatchdogSec=`) and from a shell. docs/service.md describes the messages.

`WatchdogHook` pings from the frame loop's own turns (a LoopHook), so a stage that hangs stops the pings and
systemd's watchdog restarts the service.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Mapping, Optional

log = logging.getLogger("minicpmv-edge")


def _address(value: str) -> str:
    """The socket address of `$NOTIFY_SOCKET`: `@name` is `\\0name` in the abstract namespace."""
    return "\0" + value[1:] if value.startswith("@") else value


class Notifier:
    """Sends notify messages to `socket_path` (None: `$NOTIFY_SOCKET`, or nothing when it is unset)."""

    def __init__(self, socket_path: Optional[str] = None) -> None:
        self.address = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET") or None
        self._sock: Optional[socket.socket] = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: Any) -> bool:
        """One message of `KEY=value` lines (send(READY=1, STATUS="...")); False when there is nowhere to send or
        sending failed (logged: the service runs on without systemd hearing it)."""
        if self.address is None:
            return False
        message = "\n".join("%s=%s" % (key, value) for key, value in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto(message, _address(self.address))
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status)

    def stopping(self, status: str) -> bool:
        return self.send(STOPPING=1, STATUS=status)

    def reloading(self) -> bool:
        return self.send(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(environ: Mapping[str, str] = os.environ) -> Optional[float]:
    """Half of `$WATCHDOG_USEC` in seconds, or None when systemd set no watchdog (or set it for another process:
    `$WATCHDOG_PID`)."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID")
    if not usec.isdigit() or int(usec) == 0 or (pid is not None and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


class WatchdogHook:
    """A LoopHook: WATCHDOG=1 at most every `interval_s`, sent only from the loop's turns."""

    def __init__(self, notifier: Notifier, interval_s: float) -> None:
        self.notifier, self.interval_s = notifier, interval_s
        self.pings = 0
        self._last = -float("inf")

    def tick(self, pipeline: Any) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            if self.notifier.watchdog():
                self.pings += 1


def watchdog_hook(notifier: Notifier) -> Optional[WatchdogHook]:
    """The hook systemd's environment asks for, or None (no notify socket or no watchdog)."""
    interval_s = watchdog_interval_s()
    return WatchdogHook(notifier, interval_s) if notifier.enabled and interval_s is not None else None
