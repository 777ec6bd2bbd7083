"""open_monitor: which reader "auto" picks, bad arguments, and jtop's reader when the service is not there."""
from __future__ import annotations

import sys
import time

import pytest

from edge.errors import InputError
from edge.monitor import jtop_reader, readers
from edge.monitor.fallback_reader import FallbackReader, read_meminfo
from edge.monitor.jtop_reader import JtopReader
from edge.monitor.readers import open_monitor

from .conftest import wait_for

# jetson-stats itself calls a deprecated distro function when it reads the platform
pytestmark = pytest.mark.filterwarnings("ignore:distro.linux_distribution:DeprecationWarning")


@pytest.mark.parametrize("kwargs, message", [
    ({"prefer": "tegrastats"}, "monitor prefer='tegrastats' is not one of auto, jtop, fallback"),
    ({"interval_s": 0}, "monitor interval_s must be > 0 seconds, not 0"),
])
def test_bad_arguments_are_one_line_input_errors(kwargs, message):
    with pytest.raises(InputError) as raised:
        open_monitor(**kwargs)
    assert str(raised.value) == message


def test_auto_without_the_socket_is_the_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "JTOP_SOCKET", tmp_path / "jtop.sock")
    monitor = open_monitor(prefer="auto")
    try:
        assert isinstance(monitor, FallbackReader)
        assert monitor.latest().source == "fallback"
    finally:
        monitor.close()


def test_auto_with_the_socket_and_the_package_is_jtop(tmp_path, monkeypatch):
    pytest.importorskip("jtop", reason="jetson-stats is not installed (pip install -e '.[dev]')")
    (tmp_path / "jtop.sock").touch()
    monkeypatch.setattr(readers, "JTOP_SOCKET", tmp_path / "jtop.sock")
    monitor = open_monitor(prefer="auto")
    try:
        assert isinstance(monitor, JtopReader)
    finally:
        monitor.close()


def test_auto_without_the_package_is_the_fallback(tmp_path, monkeypatch):
    (tmp_path / "jtop.sock").touch()
    monkeypatch.setattr(readers, "JTOP_SOCKET", tmp_path / "jtop.sock")
    monkeypatch.setitem(sys.modules, "jtop", None)  # import jtop raises ImportError
    monitor = open_monitor(prefer="auto")
    try:
        assert isinstance(monitor, FallbackReader)
    finally:
        monitor.close()


def test_jtop_without_the_package_is_degraded_on_fallback_values(monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", None)
    monitor = open_monitor(interval_s=0.2, prefer="jtop")
    try:
        snapshot = wait_for(monitor, lambda s: s.degraded is not None, "degraded set")
    finally:
        monitor.close()
    assert snapshot.degraded.startswith("jetson-stats is not installed")
    assert snapshot.source == "fallback" and snapshot.ram_total_kb == read_meminfo()["MemTotal"]


def test_jtop_without_the_service_says_so_on_one_line():
    pytest.importorskip("jtop", reason="jetson-stats is not installed (pip install -e '.[dev]')")
    if readers.JTOP_SOCKET.exists():
        pytest.skip("%s exists: a jtop service runs here" % readers.JTOP_SOCKET)
    monitor = open_monitor(interval_s=0.2, prefer="jtop")
    try:
        snapshot = wait_for(monitor, lambda s: s.degraded is not None, "degraded set")
    finally:
        monitor.close()
    # the real client's JtopException, its two lines joined
    assert snapshot.degraded == "The jtop.service is not active. Please run: sudo jtop --install-service"
    assert snapshot.source == "fallback" and snapshot.ram_total_kb == read_meminfo()["MemTotal"]


def test_reason_logged_once_while_reconnecting(monkeypatch, caplog):
    jtop = pytest.importorskip("jtop", reason="jetson-stats is not installed (pip install -e '.[dev]')")
    if readers.JTOP_SOCKET.exists():
        pytest.skip("%s exists: a jtop service runs here" % readers.JTOP_SOCKET)
    attempts = []

    class CountedJtop(jtop.jtop):
        def __init__(self, *args, **kwargs):
            attempts.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(jtop, "jtop", CountedJtop)
    monkeypatch.setattr(jtop_reader, "BACKOFF_FIRST_S", 0.01)
    reader = JtopReader(interval_s=0.2)
    try:
        deadline = time.monotonic() + 60.0
        while len(attempts) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        reader.close()
    assert len(attempts) >= 4
    warnings = [r.getMessage() for r in caplog.records if r.name == jtop_reader.__name__ and r.levelname == "WARNING"]
    assert warnings == ["monitoring degraded: The jtop.service is not active. Please run: sudo jtop --install-service"]


def test_backoff_doubles_to_30_s_and_restarts_after_a_reading(monkeypatch):
    outcomes = [False] * 7 + [True] + [False] * 2  # seven failed connections, one that served, two failed
    waits = []

    def connect_once(self):
        if not outcomes.pop(0):
            raise jtop_reader.Unreachable("not there")
        return True

    def wait_degraded(self, seconds):
        waits.append(seconds)
        if not outcomes:
            self._stop.set()

    monkeypatch.setattr(JtopReader, "_connect_once", connect_once)
    monkeypatch.setattr(JtopReader, "_wait_degraded", wait_degraded)
    reader = JtopReader(interval_s=0.2)
    reader._thread.join(60.0)  # it stops itself after the last outcome
    reader.close()
    # after the serving connection ends the reader waits 1 s again
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 1.0, 2.0, 4.0]
