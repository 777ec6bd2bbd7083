"""The newest frame for the page: a loop hook that only keeps a reference to the frame the loop handled last, and a
thread that JPEG-encodes it at a reduced size, at most `fps` times a second and only while a client watches, so the
frame loop pays for one attribute read per turn."""
from __future__ import annotations

import threading
from typing import Any, Dict, NamedTuple, Optional, Tuple

PREVIEW_WIDTH = 640  # frames wider than this are scaled down before JPEG encoding
JPEG_QUALITY = 75


class FrameFacts(NamedTuple):
    """What the page shows about the newest handled frame."""

    sequence: int
    width: int
    height: int
    grid: Optional[Tuple[int, int]]  # (cols, rows) of the slices; None: the overview alone
    reused_from: Optional[int]  # the frame whose tokens this one reused; None: encoded
    timings_ms: Dict[str, float]

    def as_dict(self) -> Dict[str, Any]:
        return {"sequence": self.sequence, "width": self.width, "height": self.height,
                "grid": list(self.grid) if self.grid else None, "reused_from": self.reused_from,
                "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()}}


class Preview:
    """A LoopHook (`tick`) plus the encoding thread; `watch()` / `unwatch()` count the clients, `next_jpeg(after)`
    blocks until a JPEG newer than sequence `after` exists."""

    def __init__(self, fps: float) -> None:
        self.period_s = 1.0 / fps
        self._frame: Any = None
        self._facts: Optional[FrameFacts] = None
        self._jpeg: Optional[Tuple[int, bytes]] = None
        self._watchers = 0
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._encode_loop, name="web-preview", daemon=True)
        self._thread.start()

    def tick(self, pipeline: Any) -> None:
        """Keep the pipeline's newest handled frame: a reference, no copy."""
        last = pipeline.last
        if last is not None and last[0] is not self._frame:
            frame, result = last
            height, width = frame.image.shape[:2]
            timings = dict(result.timings_ms)
            sink = pipeline.times.get("sink")
            if sink:  # the sink's write of this frame (the npy file, the token stream)
                timings["sink"] = sink[-1]
            self._facts = FrameFacts(frame.sequence, width, height, result.grid, result.reused_from, timings)
            self._frame = frame

    @property
    def facts(self) -> Optional[FrameFacts]:
        return self._facts

    @property
    def closed(self) -> bool:
        return self._stopping.is_set()

    def watch(self) -> None:
        with self._changed:
            self._watchers += 1
            self._changed.notify_all()

    def unwatch(self) -> None:
        with self._changed:
            self._watchers -= 1

    def next_jpeg(self, after: int, timeout_s: float) -> Optional[Tuple[int, bytes]]:
        """(sequence, JPEG bytes) of a frame newer than `after`, or None after `timeout_s` or when closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._stopping.is_set() or (self._jpeg is not None
                                                                       and self._jpeg[0] > after), timeout_s)
            jpeg = self._jpeg
        return jpeg if jpeg is not None and jpeg[0] > after and not self._stopping.is_set() else None

    def _encode_loop(self) -> None:
        while not self._stopping.is_set():
            with self._changed:
                self._changed.wait_for(lambda: self._watchers > 0 or self._stopping.is_set())
            frame = self._frame
            if frame is not None and (self._jpeg is None or self._jpeg[0] != frame.sequence):
                jpeg = (frame.sequence, encode_jpeg(frame.image))
                with self._changed:
                    self._jpeg = jpeg
                    self._changed.notify_all()
            self._stopping.wait(self.period_s)

    def close(self) -> None:
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.join()


def encode_jpeg(image: Any) -> bytes:
    """A BGR frame as JPEG bytes, scaled down to PREVIEW_WIDTH when wider."""
    import cv2

    height, width = image.shape[:2]
    if width > PREVIEW_WIDTH:
        image = cv2.resize(image, (PREVIEW_WIDTH, max(1, round(height * PREVIEW_WIDTH / width))),
                           interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("OpenCV could not encode a %dx%d frame as JPEG" % (width, height))
    return data.tobytes()
