"""A command run as a child process: its output lines prefixed with its name, stopped with SIGTERM (SIGKILL after a
grace period), and, on Linux, sent SIGTERM by the kernel if its parent dies first, so that none is orphaned."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, List, Optional

PR_SET_PDEATHSIG = 1  # prctl(2)
# systemd's notify socket and watchdog are the parent's: systemd hears its main process only (docs/service.md)
SYSTEMD_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent goes away, even by SIGKILL (Linux only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


def exit_code(returncode: int) -> int:
    """Popen's returncode as a shell says it: a child killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class Console:
    """Lines from several threads to one stream, each whole and prefixed with its source: `[name] line`."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._lock = threading.Lock()

    def say(self, name: str, line: str) -> None:
        with self._lock:
            self.out.write("[%s] %s\n" % (name, line))
            self.out.flush()


class Child:
    """`argv` under `name`: each line it prints (stdout and stderr) goes to `console` as `[name] line`."""

    def __init__(self, name: str, argv: List[str], console: Console) -> None:
        self.name, self.argv, self.console = name, argv, console
        self.process: Optional[subprocess.Popen] = None
        self.started_at = 0.0
        self._reader: Optional[threading.Thread] = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for name in SYSTEMD_ONLY:
            env.pop(name, None)
        # Its own session: a Ctrl-C at the terminal reaches `up` alone, which then stops its children in order.
        self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                        preexec_fn=_die_with_parent, text=True, errors="replace")
        self.started_at = time.monotonic()
        self._reader = threading.Thread(target=self._relay, args=(self.process.stdout,), daemon=True,
                                        name="relay-" + self.name)
        self._reader.start()
        self.say("started (pid %d)" % self.process.pid)

    def say(self, line: str) -> None:
        self.console.say(self.name, line)

    def _relay(self, stream: IO[str]) -> None:
        for line in stream:
            self.say(line.rstrip("\n"))

    def poll(self) -> Optional[int]:
        """None while it runs (or before it started), else its exit code (128 + N when killed by signal N)."""
        if self.process is None or self.process.poll() is None:
            return None
        self._drain()
        return exit_code(self.process.returncode)

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, grace_s: float) -> Optional[int]:
        """Wait up to `grace_s` for it to end, then SIGKILL it; its exit code (None if it never started)."""
        if self.process is None:
            return None
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.say("did not stop within %.0f s: killed" % grace_s)
            self.process.kill()
            self.process.wait()
        self._drain()
        return exit_code(self.process.returncode)

    def _drain(self) -> None:
        """Let the relay pass on the last lines of an ended child."""
        if self._reader is not None:
            self._reader.join(5.0)
