"""The project's commands as real processes for the tests: `python -m edge.cli ARGS` from the repository root, its
output lines collected as they come; and a free loopback port to give them."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import List, Sequence

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Command:
    """`minicpmv-edge ARGS` as a process; `lines` are its stdout lines (stderr too with `merge_stderr`)."""

    def __init__(self, args: Sequence[str], merge_stderr: bool = False) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "edge.cli", *args], cwd=str(REPO),
                                        stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, text=True)
        self.lines: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait(self, timeout_s: float) -> int:
        code = self.process.wait(timeout_s)
        self._reader.join(10)
        return code

    def stop(self, timeout_s: float) -> int:
        """SIGTERM (unless it has ended), then its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)
