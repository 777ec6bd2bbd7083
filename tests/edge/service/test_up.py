"""`minicpmv-edge up` with real processes: the agent publishes a looping video's frames on the token stream, the LLM
process answers about the newest one; kill -9 the LLM process and `up` restarts it while the agent keeps running,
and the new one answers about a newer frame. SIGTERM stops both (exit 143, one line, no orphans); an agent that ends
(max frames) ends `up` with its exit code, and a killed `up` leaves no child behind. Generous time bounds, no timing
thresholds."""
from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional

import pytest

from edge.cli.main import main
from edge.service.up import Backoff
from tests.edge.camera.fakes import moving_frames, write_video
from tests.edge.processes import Command, free_port

pytest.importorskip("cv2")
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llm]')")

WAIT_S = 300.0


def write_config(folder: Path, bundle: Path, gguf: Path, sock_dir: Path, loop: bool = True) -> Path:
    write_video(folder / "clip.avi", moving_frames(30, size=(320, 240)), fps=5)
    port = free_port()
    config = folder / "agent.yaml"
    config.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi, loop: %s}\nreuse: {enabled: false}\n"
                      "stream: {enabled: true, socket: %s}\nllm: {gguf: %s, ctx: 2048, max_tokens: 8}\n"
                      "api: {listen: '127.0.0.1:%d'}\n"
                      % (bundle, "true" if loop else "false", sock_dir / "t.sock", gguf, port))
    return config


class Up(Command):
    """`minicpmv-edge up` as a process, its output lines collected."""

    def __init__(self, config: Path, *extra: str) -> None:
        super().__init__(["up", "--config", str(config), *extra])

    def pids(self, name: str) -> List[int]:
        return [int(m.group(1)) for m in (re.match(r"\[%s\] started \(pid (\d+)\)" % name, line)
                                          for line in list(self.lines)) if m]

    def finish(self, timeout_s: float = WAIT_S) -> str:
        self.wait(timeout_s)  # stderr is a line or two: it cannot fill its pipe
        return self.process.stderr.read()


def ask(port: int) -> Optional[int]:
    """The frame id of an answer about the newest frame, or None while the API is not there or has no frame."""
    body = json.dumps({"messages": [{"role": "user", "content": "What is there?"}], "max_tokens": 4}).encode()
    request = urllib.request.Request("http://127.0.0.1:%d/v1/chat/completions" % port, body,
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["frame"]["frame_id"]
    except (OSError, urllib.error.HTTPError):
        return None


def ask_about_a_photo(port: int) -> dict:
    """A whole answer about a PNG data URI (the agent encodes it)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(buffer, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    content = [{"type": "text", "text": "What is in the photo?"}, {"type": "image_url", "image_url": {"url": uri}}]
    body = json.dumps({"messages": [{"role": "user", "content": content}], "max_tokens": 4}).encode()
    request = urllib.request.Request("http://127.0.0.1:%d/v1/chat/completions" % port, body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        return json.loads(response.read())


def wait_for_frame(port: int, newer_than: int = -1) -> int:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        frame_id = ask(port)
        if frame_id is not None and frame_id > newer_than:
            return frame_id
        time.sleep(0.5)
    raise AssertionError("no answer about a frame newer than %d within %.0f s" % (newer_than, WAIT_S))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_llm_is_restarted_and_answers_about_a_newer_frame(make_bundle, make_gguf, tmp_path, sock_dir):
    config = write_config(tmp_path, make_bundle("2.6"), make_gguf("2.6"), sock_dir)
    port = int(config.read_text().rsplit(":", 1)[1].strip(" '}\n"))
    up = Up(config)
    try:
        before = wait_for_frame(port)
        [first_llm], [agent] = up.pids("llm"), up.pids("agent")
        os.kill(first_llm, signal.SIGKILL)
        after = wait_for_frame(port, newer_than=before)  # the restarted process, about a frame made since
        assert len(up.pids("llm")) == 2 and up.pids("agent") == [agent] and alive(agent)
        photo = ask_about_a_photo(port)  # encoded by the agent's engines, between its camera frames
        assert photo["frame"] is None and photo["choices"][0]["finish_reason"] in ("stop", "length")
    finally:
        up.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + WAIT_S
        while "[up] stopping the llm and the agent" not in up.lines and time.monotonic() < deadline:
            time.sleep(0.05)
        up.process.send_signal(signal.SIGTERM)  # a second one (`timeout` sends two) does not cut the stop short
        err = up.finish()
    log = "\n".join(up.lines)
    assert after > before
    assert "[up] the llm ended with exit code 137: restarting it" in log, log
    assert not [line for line in up.lines if line.startswith("[agent]") and ("Traceback" in line or "ERROR" in line)]
    assert up.process.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines() == ["minicpmv-edge: stopped by SIGTERM; nothing half-written was left"], err
    assert not any(alive(pid) for pid in up.pids("agent") + up.pids("llm"))
    assert re.search(r"\[agent\] frames \d+ \(encoded", log), log  # the agent stopped cleanly and reported
    assert re.search(r"\[agent\] images encoded for subscribers: 1 \(0 failed", log), log


def test_up_ends_with_the_agent(make_bundle, make_gguf, tmp_path, sock_dir):
    config = write_config(tmp_path, make_bundle("2.6"), make_gguf("2.6"), sock_dir, loop=False)
    up = Up(config, "--max-frames", "2")
    err = up.finish()
    log = "\n".join(up.lines)
    assert up.process.returncode == 0, (log, err)
    assert "[agent] frames 2 (encoded 2" in log and "[up] the agent ended with exit code 0" in log, log
    assert not any(alive(pid) for pid in up.pids("agent") + up.pids("llm"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_do_not_outlive_a_killed_up(make_bundle, make_gguf, tmp_path, sock_dir):
    config = write_config(tmp_path, make_bundle("2.6"), make_gguf("2.6"), sock_dir)
    up = Up(config)
    deadline = time.monotonic() + WAIT_S
    while len(up.pids("agent") + up.pids("llm")) < 2:
        assert time.monotonic() < deadline and up.process.poll() is None, up.lines
        time.sleep(0.1)
    children = up.pids("agent") + up.pids("llm")
    up.process.kill()
    up.finish()
    deadline = time.monotonic() + WAIT_S
    while any(alive(pid) for pid in children):  # the kernel sends them SIGTERM; they stop as they always do
        assert time.monotonic() < deadline, "orphaned children %s" % children
        time.sleep(0.2)


def test_up_needs_an_llm_section_and_the_stream(tmp_path, capsys):
    config = tmp_path / "agent.yaml"
    config.write_text("bundle: b\ncamera: {kind: file, path: clip.avi}\n")
    capsys.readouterr()
    assert main(["up", "--config", str(config)]) == 2
    assert "no llm: section" in capsys.readouterr().err
    config.write_text("bundle: b\ncamera: {kind: file, path: clip.avi}\nllm: {gguf: m.gguf}\n")
    assert main(["up", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stream.enabled" in err, err


def test_backoff_doubles_up_to_its_bound_and_resets_after_a_healthy_run():
    backoff = Backoff(1.0, 4.0, healthy_s=60.0)
    assert [backoff.after(0.5) for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert backoff.after(61.0) == 1.0 and backoff.after(1.0) == 2.0
