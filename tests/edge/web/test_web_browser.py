"""The page in a real headless Chromium against `minicpmv-edge up` (the agent with the page, and the LLM process
with a tiny GGUF) on a generated video: the MJPEG frame shows and moves on (two frame numbers), the slice grid is
drawn over it, the reuse badge shows, the plots fill, a typed question gets a streamed answer with the LLM's
prefill and decode bars, and the standing question's answer is listed. A second test points the page's proxy at a
real LLM process with an alert rule, whose state machine is fed scripted answers (the tiny GGUF's own answers are
random), and sees the alert appear. Screenshots go to a temporary folder, or to $MINICPMV_SCREENSHOTS (the docs'
pictures come from `MINICPMV_SCREENSHOTS=docs/screenshots pytest tests/edge/web/test_web_browser.py`)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from edge.llm.alert_config import AlertRule, AlertsConfig
from tests.edge.llm.conftest import start_llm  # noqa: F401 - start_llm is a fixture used below
from tests.edge.processes import REPO, free_port
from tests.edge.web.agent import Process, wait_for_state, write_config
from tests.edge.web.browser import open_chromium, wait_for

pytest.importorskip("cv2")
SHOTS = Path(os.environ.get("MINICPMV_SCREENSHOTS") or tempfile.mkdtemp(prefix="mcv-shots-"))
SHOTS = SHOTS if SHOTS.is_absolute() else REPO / SHOTS
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
        assert "no alert yet" in browser.find_element("id", "alerts").text  # this LLM has no alert rules
        browser.find_element("id", "talk").screenshot(str(SHOTS / "answer.png"))
        browser.save_screenshot(str(SHOTS / "page.png"))
    finally:
        if browser is not None:
            browser.quit()
        up.stop()


DOOR = AlertRule("door", "Is the door open? Answer yes or no.", 3600.0, ("yes", "no"), debounce=1, cooldown_s=0.0)


def test_an_alert_appears_in_chromium(make_bundle, start_llm, tmp_path: Path):  # noqa: F811
    running = start_llm(alerts=AlertsConfig("orin-nano-1", (DOOR,)))
    alerts = running.process.alerts
    web_port = free_port()
    base = "http://127.0.0.1:%d/" % web_port
    agent = Process("run", write_config(tmp_path, make_bundle("2.6"), "{enabled: true, listen: '127.0.0.1:%d', "
                                        "llm_url: '%s'}" % (web_port, running.url[:-len("/v1")])))
    browser = None
    try:
        wait_for_state(base, lambda s: s["frame"] is not None and s["llm"]["down"] is None, "a frame")
        browser = open_chromium()
        browser.get(base)
        wait_for(browser, "return document.getElementById('rules').textContent", "the rule",
                 lambda t: "Is the door open?" in t)
        for frame_id, answer in ((40, "No, it is shut."), (41, "Yes, the door is open.")):
            alerts.observe(DOOR, {"frame_id": frame_id, "answer": answer, "asked_at": 1764618000.0 + frame_id})
        text = wait_for(browser, "return document.getElementById('alerts').textContent", "the alert",
                        lambda t: "door" in t and "→" in t)
        assert "orin-nano-1 · door: no → yes (frame 41): Yes, the door is open." in text
        assert "yes" in browser.find_element("id", "rules").text
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.find_element("id", "talk").screenshot(str(SHOTS / "alerts.png"))
    finally:
        if browser is not None:
            browser.quit()
        assert agent.stop() == 0, "\n".join(agent.lines)
