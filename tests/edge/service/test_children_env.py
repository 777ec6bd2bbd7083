"""`up`'s children do not inherit systemd's notify socket or watchdog: those are `up`'s, and systemd hears its main
process only."""
from __future__ import annotations

import io
import sys

from edge.service.children import Child, Console
from tests.edge.camera.fakes import wait_until

WAIT_S = 60.0


def test_a_child_gets_no_notify_socket_or_watchdog(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    monkeypatch.setenv("KEPT", "yes")
    out = io.StringIO()
    child = Child("env", [sys.executable, "-c", "import os; print(sorted(k for k in ('NOTIFY_SOCKET', "
                                                "'WATCHDOG_USEC', 'WATCHDOG_PID', 'KEPT') if k in os.environ))"],
                  Console(out))
    child.start()
    assert wait_until(lambda: child.poll() is not None and "[env] ['KEPT']" in out.getvalue(), WAIT_S), out.getvalue()
    assert child.poll() == 0
