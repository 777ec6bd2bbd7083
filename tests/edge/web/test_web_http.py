"""The page's endpoints against a real `minicpmv-edge run` on a generated video: /state has the newest frame's
facts, its stage times and grid, plot points and the LLM-down banner (no LLM runs here); /frame.mjpg sends JPEGs of
the camera's frames, newer each time; the page and its files are served; a non-loopback page needs its token."""
from __future__ import annotations

import http.client
import json
from typing import List, Tuple

import numpy as np
import pytest

from edge.agent.config import parse_agent_config
from edge.errors import InputError
from tests.edge.processes import free_port
from tests.edge.web.agent import Process, get, wait_for_state, write_config

cv2 = pytest.importorskip("cv2")


def mjpeg_parts(port: int, count: int) -> List[Tuple[int, bytes]]:
    """The first `count` parts of /frame.mjpg: (X-Frame-Sequence, JPEG bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/frame.mjpg")
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
    parts = []
    try:
        while len(parts) < count:
            assert response.fp.readline() == b"--frame\r\n"
            headers = {}
            for line in iter(response.fp.readline, b"\r\n"):
                name, value = line.decode().split(":", 1)
                headers[name] = value.strip()
            data = response.fp.read(int(headers["Content-Length"]))
            assert response.fp.readline() == b"\r\n"
            parts.append((int(headers["X-Frame-Sequence"]), data))
    finally:
        connection.close()
    return parts


def test_state_and_mjpeg_of_a_running_agent(make_bundle, tmp_path):
    port = free_port()
    base = "http://127.0.0.1:%d/" % port
    agent = Process("run", write_config(tmp_path, make_bundle("2.6"), "{enabled: true, listen: '127.0.0.1:%d', "
                                        "preview_fps: 5}" % port, "api: {listen: '127.0.0.1:%d'}\n" % free_port()))
    try:
        state = wait_for_state(base, lambda s: s["frame"] is not None and len(s["history"]) >= 3, "plot points")
        frame = state["frame"]
        assert (frame["width"], frame["height"]) == (320, 240)
        assert frame["grid"] is None or len(frame["grid"]) == 2
        assert frame["sequence"] >= state["report"]["frames"] - 1 >= 0  # camera sequences count the dropped too
        assert set(state["history"][-1]) >= {"t", "fps", "slices", "ram_mb", "power_w", "temp_c"}
        assert state["history"][-1]["ram_mb"] > 0  # the fallback monitor reads this machine's RAM
        assert any(p["fps"] > 0 for p in state["history"])
        if frame["reused_from"] is None:
            assert set(frame["timings_ms"]) == {"reuse_check", "preprocess", "vpm", "resampler", "sink"}
        assert state["llm"]["down"] is not None
        assert [b["kind"] for b in state["banners"]] == ["llm"]
        assert wait_for_state(base, lambda s: s["report"]["reused"] > 0, "a reused frame")

        parts = mjpeg_parts(port, 3)
        sequences = [s for s, _ in parts]
        assert sequences == sorted(set(sequences))  # each part a newer frame
        for _, data in parts:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (240, 320, 3)

        status, page, headers = get(base)
        assert status == 200 and b'src="/frame.mjpg"' in page and headers["Content-Type"].startswith("text/html")
        for name in ("app.js", "style.css"):
            assert get(base + "static/" + name)[0] == 200
        assert get(base + "static/../server.py")[0] == 404
        status, body, _ = get(base + "llm/v1/alerts")
        assert status == 502 and "cannot be reached" in json.loads(body)["error"]["message"]
    finally:
        assert agent.stop() == 0, "\n".join(agent.lines)
    assert any("web page at %s" % base in line for line in agent.lines)


def test_a_page_beyond_loopback_needs_its_token(make_bundle, tmp_path):
    with pytest.raises(InputError, match="web.listen: 0.0.0.0 is not a loopback address: set web.token_file"):
        parse_agent_config({"bundle": "b", "camera": {"kind": "file", "path": "c.avi"},
                            "web": {"listen": "0.0.0.0:8090"}}, tmp_path)
    token = "s3cret-token-of-the-page"
    (tmp_path / "web.token").write_text(token + "\n")
    port = free_port()
    base = "http://127.0.0.1:%d/" % port
    agent = Process("run", write_config(tmp_path, make_bundle("2.6"), "{enabled: true, listen: '0.0.0.0:%d', "
                                        "token_file: web.token}" % port))
    try:
        wait_for_state(base, lambda s: s["frame"] is not None, "a frame", {"Authorization": "Bearer " + token})
        assert_token_guard(base, token)
    finally:
        assert agent.stop() == 0, "\n".join(agent.lines)


def assert_token_guard(base: str, token: str) -> None:
    status, _, _ = get(base + "state")
    assert status == 401
    assert get(base + "state", {"Authorization": "Bearer wrong-token-of-the-page"})[0] == 401
    assert get(base + "state", {"Authorization": "Token: " + token})[0] == 401  # only a Bearer token counts
    assert get(base + "state", {"Authorization": "Bearer " + token})[0] == 200
    status, _, headers = get(base + "?token=" + token)
    assert status == 200
    cookie = headers["Set-Cookie"].split(";")[0]
    assert get(base + "state", {"Cookie": cookie})[0] == 200


@pytest.mark.parametrize("web, message", [
    ({"preview_fps": 0}, "web.preview_fps must be a number > 0"),
    ({"enabled": "yes"}, "web.enabled must be true or false"),
    ({"llm_url": "127.0.0.1:8089"}, "web.llm_url must be the LLM API's base URL"),
    ({"port": 1}, "web: unknown key 'port'")])
def test_bad_web_settings_are_one_line(tmp_path, web, message):
    with pytest.raises(InputError, match=message):
        parse_agent_config({"bundle": "b", "camera": {"kind": "file", "path": "c.avi"}, "web": web}, tmp_path)


def test_defaults(tmp_path):
    web = parse_agent_config({"bundle": "b", "camera": {"kind": "file", "path": "c.avi"}}, tmp_path).web
    assert (web.enabled, web.listen, web.token_file, web.preview_fps, web.llm_url) == (
        False, "127.0.0.1:8090", None, 2.0, None)
