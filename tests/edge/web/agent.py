"""An agent (`minicpmv-edge run` or `up`) with the web page on, as a process on a generated video, for the web
tests."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from tests.edge.camera.fakes import moving_frames, wait_until, write_video
from tests.edge.processes import Command

WAIT_S = 300.0  # generous: the engines open first


def write_config(folder: Path, bundle: Path, web: str, extra: str = "", size: Tuple[int, int] = (320, 240)) -> Path:
    """agent.yaml for a looping clip of `size` (each picture twice: frame reuse has work) with the page at `web` (the
    web: section's flow mapping)."""
    write_video(folder / "clip.avi", [f for f in moving_frames(15, size=size) for _ in range(2)], fps=10)
    config = folder / "agent.yaml"
    config.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi, loop: true, fps: 10}\nresize: fast\n"
                      "sink: {kind: npy, directory: tokens, "
                      "keep: 2}\nmetrics: {enabled: false}\nweb: %s\n%s" % (bundle, web, extra))
    return config


class Process(Command):
    """`minicpmv-edge COMMAND --config CONFIG`, stdout and stderr lines collected; `stop()` sends SIGTERM."""

    def __init__(self, command: str, config: Path) -> None:
        super().__init__([command, "--config", str(config)], merge_stderr=True)

    def stop(self, timeout_s: float = WAIT_S) -> int:
        return super().stop(timeout_s)


def get(url: str, headers: Optional[Dict[str, str]] = None) -> Any:
    """(status, body bytes, headers) of a GET; HTTP errors are answers too."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def state(base: str, headers: Optional[Dict[str, str]] = None) -> Optional[Dict[str, Any]]:
    """/state, or None while the page is not up."""
    try:
        status, body, _ = get(base + "state", headers)
    except OSError:
        return None
    return json.loads(body) if status == 200 else None


def wait_for_state(base: str, check: Any, what: str, headers: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The first /state that `check` accepts, within WAIT_S."""
    found: List[Dict[str, Any]] = []

    def ready() -> bool:
        current = state(base, headers)
        if current is not None and check(current):
            found.append(current)
            return True
        return False

    def ready_slowly() -> bool:
        if ready():
            return True
        time.sleep(0.3)
        return False

    assert wait_until(ready_slowly, WAIT_S), "no /state with %s within %.0f s" % (what, WAIT_S)
    return found[0]
