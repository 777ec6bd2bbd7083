"""``minicpmv-edge bench web``: what the web page costs the frame loop, in one run of the agent on the config's
camera: the loop's frames per second with no page open, then with a client on ``/frame.mjpg`` (and polling
``/state`` once a second, as the page does) in a process of its own, as a browser is, in alternating rounds; the
medians and their ratio.

Frames go to no sink (as ``profile``), so the figures are the loop's own; for a loop not held back by the camera,
point the config at a video with ``camera: {kind: file, ..., loop: true, fps: 0}`` (as fast as it decodes).
"""
from __future__ import annotations

import http.client
import multiprocessing
import statistics
import threading
import time
from dataclasses import replace
from typing import Any, Dict, List

from ..agent.config import AgentConfig
from ..agent.runner import make_pipeline
from ..agent.sinks import NullSink
from ..errors import InputError
from ..monitor.readers import open_monitor
from ..web.page import WebPage

WARMUP_S = 5.0  # after the first frame: the engines' first runs are slower
FIRST_FRAME_S = 300.0


def _watch(host: str, port: int, jpegs: Any, stopping: Any) -> None:
    """The page's load, in a process of its own as a browser would be: read /frame.mjpg and GET /state once a
    second until `stopping` is set; count the JPEGs read in `jpegs`."""
    def frames() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        connection.request("GET", "/frame.mjpg")
        response = connection.getresponse()
        while not stopping.is_set():
            line = response.fp.readline()
            if not line:
                break
            if line.lower().startswith(b"content-length:"):
                response.fp.readline()
                response.fp.read(int(line.split(b":")[1]))
                with jpegs.get_lock():
                    jpegs.value += 1
        connection.close()

    threading.Thread(target=frames, daemon=True).start()
    while not stopping.wait(1.0):
        connection = http.client.HTTPConnection(host, port, timeout=30)
        connection.request("GET", "/state")
        connection.getresponse().read()
        connection.close()


class _Watcher:
    """A page stand-in in a child process (spawned: it shares no interpreter lock with the agent)."""

    def __init__(self, host: str, port: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._jpegs, self._stopping = context.Value("i", 0), context.Event()
        self._process = context.Process(target=_watch, args=(host, port, self._jpegs, self._stopping), daemon=True)
        self._process.start()

    @property
    def jpegs(self) -> int:
        return self._jpegs.value

    def stop(self) -> None:
        self._stopping.set()
        self._process.join(35)
        if self._process.is_alive():
            self._process.kill()


def run_bench(config: AgentConfig, seconds: float, rounds: int) -> Dict[str, Any]:
    """`rounds` of (closed, open), each `seconds` long, on the agent of `config` with its page on a free loopback
    port."""
    web = replace(config.web, enabled=True, listen="127.0.0.1:0", token_file=None)
    monitor = open_monitor(interval_s=config.governor.interval_s)
    page = WebPage(web, config.api, monitor)
    try:
        pipeline = make_pipeline(config, sink=NullSink(), monitor=monitor)
    except BaseException:
        page.close()
        monitor.close()
        raise
    pipeline.hooks.extend(page.hooks())
    pipeline.source.start()
    loop = threading.Thread(target=pipeline.run, name="frame-loop", daemon=True)
    loop.start()
    closed: List[float] = []
    opened: List[float] = []
    jpegs = 0
    try:
        deadline = time.monotonic() + FIRST_FRAME_S
        while pipeline.counters["frames"] == 0:
            if not loop.is_alive() or time.monotonic() > deadline:
                raise InputError("bench web: no frame from the camera of the config: check camera:")
            time.sleep(0.05)
        time.sleep(WARMUP_S)
        host, port = page.server.server_address[:2]
        for _ in range(rounds):
            closed.append(_fps(pipeline, seconds))
            watcher = _Watcher(host, port)
            opened.append(_fps(pipeline, seconds))
            watcher.stop()
            jpegs += watcher.jpegs
            if not loop.is_alive():
                raise InputError("bench web: the camera ended during the run: use a looping video (loop: true)")
    finally:
        pipeline.stop()
        loop.join()
        pipeline.source.stop()
        pipeline.close()
        page.close()
        monitor.close()
    closed_fps, open_fps = statistics.median(closed), statistics.median(opened)
    facts = page.preview.facts
    return {"seconds": seconds, "rounds": rounds, "preview_fps": web.preview_fps,
            "frame": None if facts is None else [facts.width, facts.height],
            "fps_closed": [round(v, 3) for v in closed], "fps_open": [round(v, 3) for v in opened],
            "median_fps_closed": round(closed_fps, 3), "median_fps_open": round(open_fps, 3),
            "open_over_closed": round(open_fps / closed_fps, 4) if closed_fps else None,
            "jpegs_sent": jpegs}


def _fps(pipeline: Any, seconds: float) -> float:
    """The loop's handled frames per second over the next `seconds`."""
    frames, start = pipeline.counters["frames"], time.monotonic()
    time.sleep(seconds)
    return (pipeline.counters["frames"] - frames) / (time.monotonic() - start)


def format_report(report: Dict[str, Any]) -> str:
    return ("frame loop with the page closed: %.2f fps, open: %.2f fps (open/closed %.3f; medians of %d rounds of "
            "%g s; %d JPEGs sent at preview_fps %g)"
            % (report["median_fps_closed"], report["median_fps_open"], report["open_over_closed"] or 0,
               report["rounds"], report["seconds"], report["jpegs_sent"], report["preview_fps"]))
