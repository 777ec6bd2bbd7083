"""Agent test material: a sink that keeps every result, a camera with a new frame at every call, and a camera that
hands over a list of frames one per call, none dropped."""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import numpy as np

from edge.agent.contracts import FrameResult
from edge.camera.source import Frame


class ListSink:
    """A sink by the Sink protocol that keeps every result, as a token stream would receive them."""

    name = "list"

    def __init__(self) -> None:
        self.results: List[FrameResult] = []
        self.closed = False

    def describe(self) -> str:
        return "a list in the test"

    def write(self, result: FrameResult) -> None:
        self.results.append(result)

    def close(self) -> None:
        self.closed = True

    def stats(self) -> Dict[str, Any]:
        return {"kept": len(self.results)}


class EndlessCamera:
    """A camera by the Source protocol with a new frame (the same picture) at every call, counting the calls."""

    finished = False

    def __init__(self, image: np.ndarray) -> None:
        self.image, self.taken = image, 0

    def start(self) -> EndlessCamera:
        return self

    def stop(self) -> None:
        """Nothing runs."""

    def latest(self, timeout: Optional[float] = None) -> Frame:
        self.taken += 1
        return Frame(self.image, time.monotonic(), self.taken - 1, 0, 1)

    def stats(self) -> Dict[str, Any]:
        return {"taken": self.taken}


class FrameList:
    """A camera by the Source protocol that hands over `images` one per `latest()` call, however slowly they are
    taken (a FrameSource keeps only the newest frame and drops one the consumer was too slow for), stamped
    `interval_s` apart (capture times that do not depend on the machine's speed), then ends."""

    def __init__(self, images: List[np.ndarray], interval_s: float = 0.1) -> None:
        self.images, self.interval_s, self.taken = list(images), interval_s, 0

    @property
    def finished(self) -> bool:
        return self.taken >= len(self.images)

    def start(self) -> FrameList:
        return self

    def stop(self) -> None:
        """Nothing runs."""

    def latest(self, timeout: Optional[float] = None) -> Optional[Frame]:
        if self.finished:
            return None
        self.taken += 1
        return Frame(self.images[self.taken - 1], (self.taken - 1) * self.interval_s, self.taken - 1, 0, 1)

    def stats(self) -> Dict[str, Any]:
        return {"frames": self.taken, "dropped": 0}
