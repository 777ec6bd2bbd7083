"""`minicpmv-edge run` as systemd runs it: a real process under a NOTIFY_SOCKET the test owns with a watchdog set.
READY arrives once the engines are open and the camera started, watchdog pings flow, the metrics answer on loopback;
SIGHUP applies what can change live, logs what needs a restart and refuses a bad config while the agent runs on;
SIGTERM finishes the frame, says STOPPING and exits 0 with the summary. Generous time bounds, no timing
thresholds."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Dict, List

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.edge.camera.fakes import moving_frames, wait_until, write_video
from tests.edge.service.test_notify import receive

pytest.importorskip("cv2")

REPO = Path(__file__).resolve().parents[3]
WAIT_S = 300.0  # generous: the first READY waits for the engines to open


def write_config(folder: Path, bundle: Path, **extra: str) -> Path:
    if not (folder / "clip.avi").exists():
        write_video(folder / "clip.avi", moving_frames(20, size=(160, 120)), fps=10)
    lines = ["bundle: %s" % bundle, "camera: {kind: file, path: clip.avi, loop: true, fps: 10}", "resize: fast",
             "sink: {kind: npy, directory: tokens, keep: 2}", "metrics: {listen: '127.0.0.1:0'}"]
    lines += ["%s: %s" % kv for kv in extra.items()]
    config = folder / "agent.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


class Agent:
    """`minicpmv-edge run --config` with NOTIFY_SOCKET and WATCHDOG_USEC (1 s) set, its log lines collected."""

    def __init__(self, config: Path, notify_path: str) -> None:
        env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="1000000")
        self.process = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
                                        cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=env)
        self.lines: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def logged(self, pattern: str) -> List[str]:
        return [line for line in list(self.lines) if re.search(pattern, line)]

    def stop(self) -> str:
        """SIGTERM; its stdout once it ended."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=WAIT_S)
        self._reader.join(10)
        return out


def next_message(sock: socket.socket, key: str) -> Dict[str, str]:
    """The next message that has `key`, skipping watchdog pings."""
    while True:
        message = receive(sock, WAIT_S)
        assert message is not None, "no %s within %g s" % (key, WAIT_S)
        if key in message:
            return message


def scrape(url: str) -> Dict[str, float]:
    """Every sample of the metrics page by name (labels left out: the samples asked for here have none)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if not sample.labels}


def test_ready_pings_metrics_and_a_clean_sigterm(make_bundle, tmp_path, notify_socket):
    path, sock = notify_socket
    agent = Agent(write_config(tmp_path, make_bundle("2.6")), path)
    try:
        ready = next_message(sock, "READY")
        assert ready["READY"] == "1" and ready["STATUS"].startswith("running: tokens go to")
        assert [receive(sock, WAIT_S) for _ in range(3)] == [{"WATCHDOG": "1"}] * 3
        assert wait_until(lambda: agent.logged(r"metrics at http://127\.0\.0\.1:\d+/metrics"), WAIT_S)
        url = agent.logged(r"metrics at ")[0].split("metrics at ")[1]
        assert wait_until(lambda: scrape(url)["minicpmv_edge_frames_total"] >= 2, WAIT_S)
        assert scrape(url)["minicpmv_edge_fps"] > 0
    finally:
        out = agent.stop()
    assert agent.process.returncode == 0, agent.lines
    assert next_message(sock, "STOPPING")["STOPPING"] == "1"
    assert re.match(r"frames \d+ \(encoded \d+, reused \d+, errors 0\), dropped \d+", out)
    assert not agent.logged("Traceback")


def test_sighup_applies_live_keys_and_refuses_a_bad_config(make_bundle, tmp_path, notify_socket):
    path, sock = notify_socket
    bundle = make_bundle("2.6")
    config = write_config(tmp_path, bundle)
    agent = Agent(config, path)
    try:
        next_message(sock, "READY")
        write_config(tmp_path, bundle, reuse="{enabled: false}", max_slice_nums="1", resize="exact")
        agent.process.send_signal(signal.SIGHUP)
        assert next_message(sock, "RELOADING")["RELOADING"] == "1"
        assert next_message(sock, "READY")["READY"] == "1"
        assert wait_until(lambda: agent.logged("reload: resize changed: it takes effect when the agent restarts"))
        assert agent.logged("reload: reuse is now off") and agent.logged("reload: max_slice_nums is now 1")
        assert not agent.logged("reload: (bundle|camera|sink|metrics) changed")  # unchanged: no line

        config.write_text(config.read_text() + "max_slices: 2\n")  # no such key
        agent.process.send_signal(signal.SIGHUP)
        next_message(sock, "RELOADING")
        next_message(sock, "READY")
        assert wait_until(lambda: agent.logged("reload refused, the config in use stays"))
        refused = agent.logged("reload refused")
        assert len(refused) == 1 and "%s: unknown key 'max_slices'" % config in refused[0]
        assert [receive(sock, WAIT_S) for _ in range(2)] == [{"WATCHDOG": "1"}] * 2  # still running
        assert agent.process.poll() is None
    finally:
        agent.stop()
    assert agent.process.returncode == 0, agent.lines


def test_a_taken_metrics_port_is_one_line_before_anything_is_opened(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = tmp_path / "agent.yaml"
        config.write_text("bundle: no-such-bundle\ncamera: {kind: file, path: no-such.avi}\n"
                          "metrics: {listen: '127.0.0.1:%d'}\n" % port)
        result = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], cwd=str(REPO),
                                capture_output=True, text=True, timeout=WAIT_S)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "minicpmv-edge: error: metrics.listen 127.0.0.1:%d: cannot listen there (Address already in use): choose "
        "another port, or metrics.enabled: false" % port]
