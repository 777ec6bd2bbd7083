"""The page in a real headless Chromium against `minicpmv-edge up` (the agent with the page, and the LLM process
with a tiny GGUF) on a generated video: the MJPEG frame shows and moves on (two frame numbers), the slice grid is
drawn over it, the reuse badge shows, the plots fill, a typed question gets a streamed answer with the LLM's
prefill and decode bars, and the standing question's answer is listed. A second test points the page's proxy at a
stand-in LLM API serving alerts in /v1/alerts' shape and sees them listed. Screenshots go to docs/screenshots/."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict

import pytest

from tests.edge.web.agent import REPO, Process, free_port, wait_for_state, write_config
from tests.edge.web.browser import open_chromium, wait_for

pytest.importorskip("cv2")
SHOTS = REPO / "docs" / "screenshots"
SIZE = (960, 540)  # sliced by MiniCPM-V 2.6 (over 448x448): the page has a grid to draw


def painted(selector: str) -> str:
    """JavaScript: how many pixels of the canvas at CSS `selector` are not transparent."""
    return ("const c = document.querySelector('%s'); const d = c.getContext('2d').getImageData(0, 0, c.width, "
            "c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;" % selector)


def test_live_view_answer_and_plots_in_chromium(make_bundle, make_gguf, tmp_path, sock_dir):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llm]')")
    web_port = free_port()
    base = "http://127.0.0.1:%d/" % web_port
    extra = ("stream: {enabled: true, socket: %s}\nllm: {gguf: %s, ctx: 2048, max_tokens: 12, schedule: "
             "{question: 'What is on the table?', every_s: 2}}\napi: {listen: '127.0.0.1:%d'}\n"
             % (sock_dir / "t.sock", make_gguf("2.6"), free_port()))
    config = write_config(tmp_path, make_bundle("2.6"), "{enabled: true, listen: '127.0.0.1:%d', preview_fps: 5}"
                          % web_port, extra, SIZE)
    up = Process("up", config)
    browser = None
    try:
        state = wait_for_state(base, lambda s: s["frame"] is not None and s["llm"]["down"] is None
                               and len(s["history"]) >= 3, "a frame and the LLM up")
        assert state["frame"]["grid"] is not None
        browser = open_chromium()
        browser.get(base)
        first = wait_for(browser, "return document.getElementById('frame-info').dataset.sequence", "a frame number")
        wait_for(browser, "return document.getElementById('frame-info').dataset.sequence", "a newer frame number",
                 lambda n: n is not None and int(n) > int(first))
        assert wait_for(browser, "return document.getElementById('frame').naturalWidth", "the MJPEG image") == 640
        grid = wait_for(browser, "return document.getElementById('grid').dataset.grid", "the grid",
                        lambda g: g not in (None, "none"))
        assert grid == "x".join(map(str, state["frame"]["grid"]))
        assert browser.execute_script(painted("#grid")) > 0
        for key in ("ram_mb", "fps", "slices"):
            wait_for(browser, "return +document.getElementById('plot-%s').dataset.points" % key,
                     "the %s plot" % key, lambda n: n >= 3)
            assert browser.execute_script(painted("#plot-%s canvas" % key)) > 0
        wait_for(browser, "return document.getElementById('rules').textContent", "the standing question's answer",
                 lambda text: "What is on the table?" in text)
        badge = wait_for(browser, "const b = document.getElementById('reused'); return b.hidden ? null : "
                         "b.textContent", "the reuse badge")  # the clip shows each picture twice
        assert badge.startswith("tokens reused from #")
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.find_element("id", "live").screenshot(str(SHOTS / "live-view-grid.png"))
        browser.find_element("id", "box").screenshot(str(SHOTS / "plots.png"))

        browser.find_element("id", "question").send_keys("What is in front of the camera?")
        browser.find_element("css selector", "#ask button").click()
        wait_for(browser, "return document.getElementById('answer').dataset.done", "the answer's end",
                 lambda done: done == "true")
        meta = browser.find_element("id", "answer-meta").text
        assert "about frame #" in meta and "tokens" in meta, meta
        tokens = int(browser.execute_script("return document.getElementById('answer').dataset.tokens"))
        assert (tokens > 0) == bool(browser.find_element("id", "answer").text)
        bars = browser.find_element("id", "bars").text
        assert "LLM prefill" in bars and "LLM decode" in bars and "–" not in bars.split("LLM prefill")[1], bars
        assert "no alert rules" in browser.find_element("id", "alerts").text  # no /v1/alerts on this LLM yet
        browser.find_element("id", "talk").screenshot(str(SHOTS / "answer.png"))
        browser.save_screenshot(str(SHOTS / "page.png"))
    finally:
        if browser is not None:
            browser.quit()
        up.stop()


ALERTS = {"alerts": [{"device": "orin-nano-1", "rule": "door", "state": "open", "previous": "closed",
                      "answer": "Yes, the door is open.", "question": "Is the door open?", "frame_id": 41,
                      "time": "2026-12-01T19:40:02Z", "asked_at": 1764618002.0}],
          "rules": [{"name": "door", "question": "Is the door open?", "state": "open",
                     "last_answer": "Yes, the door is open.", "last_frame_id": 41, "asked_at": 1764618002.0}]}


class AlertsApi(BaseHTTPRequestHandler):
    """A stand-in LLM API that serves /v1/alerts in the alerts' shape and /v1/models (its liveness)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        bodies: Dict[str, Any] = {"/v1/alerts": ALERTS, "/v1/models": {"object": "list", "data": []}}
        body = json.dumps(bodies.get(self.path, {"error": "not here"})).encode()
        self.send_response(200 if self.path in bodies else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_alerts_listed_in_chromium(make_bundle, tmp_path: Path):
    api = ThreadingHTTPServer(("127.0.0.1", 0), AlertsApi)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    web_port = free_port()
    base = "http://127.0.0.1:%d/" % web_port
    agent = Process("run", write_config(tmp_path, make_bundle("2.6"), "{enabled: true, listen: '127.0.0.1:%d', "
                                        "llm_url: 'http://127.0.0.1:%d'}" % (web_port, api.server_address[1])))
    browser = None
    try:
        wait_for_state(base, lambda s: s["frame"] is not None and s["llm"]["down"] is None, "a frame")
        browser = open_chromium()
        browser.get(base)
        text = wait_for(browser, "return document.getElementById('alerts').textContent", "the alert",
                        lambda t: "door" in t)
        assert "closed → open (frame 41): Yes, the door is open." in text
        assert "Is the door open?" in browser.find_element("id", "rules").text
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.find_element("id", "talk").screenshot(str(SHOTS / "alerts.png"))
    finally:
        if browser is not None:
            browser.quit()
        assert agent.stop() == 0, "\n".join(agent.lines)
        api.shutdown()
        api.server_close()
