"""A real jetson-stats JtopServer over a fake Orin tree (tests/edge/monitor/fake_orin.py), started and stopped at
will, and a helper that waits for a monitor's snapshot to satisfy a condition."""
from __future__ import annotations

import grp
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from edge.monitor.readers import JTOP_SOCKET, Monitor
from edge.monitor.snapshot import Snapshot

from .fake_orin import MARKER, ROOT, FakeOrin

SERVE = Path(__file__).with_name("serve_jtop.py")
# jetson-stats keeps its settings in <Python prefix>/local/jtop and makes that folder when the server starts
JTOP_CONFIG = Path(sys.base_prefix) / "local" / "jtop"
WAIT_S = 60.0  # generous bound for anything to show up; the tests wait for conditions, never for time
# the server's own namespace: fake meminfo over /proc/meminfo, fake devices/virtual over /sys/devices/virtual
MOUNT_AND_RUN = 'mount --bind "$1" /proc/meminfo && mount --bind "$2" /sys/devices/virtual && exec "$3" "$4"'


def wait_for(monitor: Monitor, condition: Callable[[Snapshot], bool], what: str) -> Snapshot:
    """The first latest() that satisfies condition, within WAIT_S; fails naming what it waited for."""
    deadline = time.monotonic() + WAIT_S
    snapshot = None
    while time.monotonic() < deadline:
        snapshot = monitor.latest()
        if snapshot is not None and condition(snapshot):
            return snapshot
        time.sleep(0.05)
    pytest.fail("no snapshot with %s within %.0f s; the last: %r" % (what, WAIT_S, snapshot))


def why_not_runnable() -> Optional[str]:
    if platform.system() != "Linux":
        return "the jtop server needs Linux (sysfs, procfs, Unix sockets)"
    if os.geteuid() != 0:
        return "the jtop server runs as root (it chowns /run/jtop.sock, and the test bind-mounts procfs/sysfs files)"
    for tool in ("unshare", "mount", "groupadd", "groupdel"):
        if shutil.which(tool) is None:
            return "%s is not installed (util-linux / passwd)" % tool
    if JTOP_SOCKET.exists():
        return "%s exists: a jtop service is running here, and the test does not replace it" % JTOP_SOCKET
    if ROOT.exists() and not (ROOT / MARKER).exists():
        return "%s exists and was not made by these tests; not touching it" % ROOT
    return None


class JtopService:
    """jetson-stats' JtopServer in a child process (serve_jtop.py) in a mount namespace of its own."""

    def __init__(self, fake: FakeOrin, log: Path) -> None:
        self.fake = fake
        self.log = log
        self.process: Optional[subprocess.Popen] = None

    def start(self, jetson_stats: Optional[Path] = None) -> None:
        """jetson_stats: a folder holding another copy of the jtop package for the server to run instead."""
        env = dict(os.environ, JTOP_TESTING="true", PATH="%s:%s" % (self.fake.bin_dir, os.environ.get("PATH", "")))
        if jetson_stats is not None:
            env["PYTHONPATH"] = str(jetson_stats)
        command: List[str] = ["unshare", "--mount", "--propagation", "private", "sh", "-c", MOUNT_AND_RUN, "sh",
                              str(self.fake.meminfo_path), str(self.fake.virtual_dir), sys.executable, str(SERVE)]
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + WAIT_S
        while not JTOP_SOCKET.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("the jtop server did not start:\n%s" % self.log.read_text())
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (the server closes itself and its socket), SIGKILL to the group if that takes too long."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the server's own processes, should any outlive it
        except ProcessLookupError:
            pass
        process.wait()
        if JTOP_SOCKET.exists() or JTOP_SOCKET.is_symlink():
            JTOP_SOCKET.unlink()


@pytest.fixture
def fake_orin() -> Iterator[FakeOrin]:
    """The fake Orin tree at /fake_sys, removed after."""
    reason = why_not_runnable()
    if reason:
        pytest.skip(reason)
    fake = FakeOrin()
    fake.build()
    try:
        yield fake
    finally:
        fake.remove()


@pytest.fixture
def jtop_service(fake_orin: FakeOrin, tmp_path: Path) -> Iterator[JtopService]:
    """A running JtopServer over fake_orin, with the jtop group it needs; leaves no server, socket, group or
    config folder behind."""
    pytest.importorskip("jtop", reason="jetson-stats is not installed (pip install -e '.[dev]')")
    made_group = False
    try:
        grp.getgrnam("jtop")
    except KeyError:
        subprocess.run(["groupadd", "--system", "jtop"], check=True)
        made_group = True
    made_config = [path for path in (JTOP_CONFIG.parent, JTOP_CONFIG) if not path.exists()]
    service = JtopService(fake_orin, tmp_path / "jtop-server.log")
    try:
        service.start()
        yield service
    finally:
        service.stop()
        if made_group:
            subprocess.run(["groupdel", "jtop"], check=True)
        for path in reversed(made_config):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
