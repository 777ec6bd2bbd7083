"""Camera sources for the agent: CSI (Argus), USB/V4L2, RTSP, a video file or a folder of images, as BGR frames.

A `FrameSource` keeps only the newest frame (a slot of one): a frame the consumer did not take before the next
one arrived is dropped and counted, so a slow encoder never builds a backlog. A freshness watchdog ends a
connection when no frame arrives within `stale_timeout_s` (or `start_timeout_s` after opening), or when
`max_repeats` frames in a row are identical to the frame before (Argus can keep returning the last frame with
success after a fault, so `read()` succeeding proves nothing). Stalls, read errors, failed opens and the end of a
live stream are logged, counted and followed by a reconnect after an exponential backoff. A file or folder with
`loop: false` ends (the source reports `finished`); with `loop: true` it is reopened at once.

Threads, not a process: a frame stays in this process's memory with no copy (a 1080p BGR frame is 6 MB; a child
process would need shared memory and a copy per frame), and OpenCV's `read()` releases the GIL, so capture overlaps
the encoder. Each connection opens and reads in its own thread under a supervisor thread that never blocks on the
camera: when a `read()` (or an open) hangs, the supervisor abandons that thread, which releases its capture if the
call ever returns, and reconnects. What a thread cannot do is kill a libargus call that deadlocked until the process
exits (docs/jetson.md); that shows as `stuck_readers` > 0 with no new frames, and the way out is the process restart
that systemd's watchdog does (the agent pings it only from its work loop). A capture child process that can be killed is
a follow-up; the `opener` seam (the one place a capture is made) is where it would plug in.
"""
from __future__ import annotations

import logging
import random
import threading
import time
import zlib
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Union

import numpy as np

from .config import CameraConfig
from .pipelines import check_camera, open_capture

log = logging.getLogger(__name__)

COUNTERS = ("frames", "dropped", "reconnects", "stale_timeouts", "repeated_frames", "repeat_stalls", "read_errors",
            "open_errors", "end_of_stream", "loops", "internal_errors")
OUTCOME_COUNTERS = {"read_error": "read_errors", "open_error": "open_errors", "end_of_stream": "end_of_stream"}
CAP_PROP_FPS = 5  # cv2.CAP_PROP_FPS, the same number in OpenCV 3, 4 and 5: fakes need no cv2

def content_signature(image: np.ndarray) -> int:
    """crc32 of the shape and of about 160x90 pixels on a regular grid: equal for identical frames, and a few tens
    of kB hashed whatever the frame size (a real sensor's noise makes two frames differ on such a grid)."""
    step_y, step_x = max(1, image.shape[0] // 90), max(1, image.shape[1] // 160)
    sample = np.ascontiguousarray(image[::step_y, ::step_x])
    return zlib.crc32(sample, zlib.crc32(repr(image.shape).encode("ascii")))


class Frame(NamedTuple):
    """One captured frame."""

    image: np.ndarray  # HxWx3 uint8, BGR as OpenCV delivers it: encode with color="bgr"
    timestamp_s: float  # time.monotonic() when read() returned it
    sequence: int  # 0, 1, 2, ... per source, across reconnects
    signature: int  # content_signature(image)
    connection: int  # 1 = the first connection, 2 = after the first reconnect or reopen, ...
    color: str = "bgr"


class Backoff:
    """Reconnect delays: initial_s, doubled per failure up to max_s, each spread by +-jitter (a fraction)."""

    def __init__(self, initial_s: float, max_s: float, jitter: float = 0.0, factor: float = 2.0,
                 rng: Optional[random.Random] = None) -> None:
        self.initial_s, self.max_s, self.jitter, self.factor = initial_s, max_s, jitter, factor
        self.rng = rng or random.Random()
        self.failures = 0

    def next(self) -> float:
        """The delay before the next attempt; counts a failure."""
        delay = min(self.max_s, self.initial_s * self.factor ** min(self.failures, 64))
        if self.jitter:
            delay *= 1.0 + self.rng.uniform(-self.jitter, self.jitter)
        self.failures += 1
        return min(self.max_s, delay)

    def reset(self) -> None:
        self.failures = 0


class _Connection:
    """One open-and-read attempt, run by its own thread; the supervisor watches it."""

    def __init__(self, number: int, started_at: float) -> None:
        self.number = number
        self.started_at = started_at
        self.last_frame_at: Optional[float] = None
        self.interval_s = 0.0  # pacing of a file or folder
        self.frames = 0  # delivered
        self.fresh = 0  # delivered and different from the frame before
        self.repeats = 0
        self.outcome: Optional[str] = None  # end_of_stream | read_error | open_error | repeated | stale | stopped
        self.cancelled = threading.Event()
        self.done = threading.Event()


class FrameSource:
    """Frames from one camera, newest first: `start()`, `latest(timeout)`, `stats()`, `stop()`, or `with`.

    `opener(config)` makes the capture object (anything with read() -> (ok, image) and release(); isOpened() and
    get() are used when present); the default is `open_capture`, and only then is OpenCV checked at start().
    `sleep(seconds)` waits out a backoff (default: an event wait that stop() interrupts); `rng` draws the jitter.
    Nothing raises from the capture threads: faults become counters in stats() and log lines.
    """

    def __init__(self, config: Union[CameraConfig, Mapping[str, Any]],
                 opener: Optional[Callable[[CameraConfig], Any]] = None,
                 sleep: Optional[Callable[[float], Any]] = None, rng: Optional[random.Random] = None,
                 build_info: Optional[str] = None) -> None:
        self.config = config if isinstance(config, CameraConfig) else CameraConfig.from_dict(config)
        self.name = self.config.describe()
        self._opener = opener or open_capture
        self._check_opencv = opener is None
        self._build_info = build_info
        self._stopping = threading.Event()
        self._sleep = sleep or self._stopping.wait
        self._backoff = Backoff(self.config.backoff_initial_s, self.config.backoff_max_s, self.config.backoff_jitter,
                                rng=rng)
        self._lock = threading.Condition()
        self._slot: Optional[Frame] = None
        self._slot_taken = True
        self._sequence = 0
        self._last_signature: Optional[int] = None
        self._last_frame_at: Optional[float] = None
        self._counters: Dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._state = "idle"
        self._connection: Optional[_Connection] = None
        self._stuck: List[_Connection] = []
        self._backoff_s = 0.0
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ consumer side

    def start(self) -> FrameSource:
        """Check what can be checked up front (InputError with the fix), then start capturing in the background."""
        if self._thread is not None:
            raise RuntimeError("FrameSource.start() was called twice")
        if self._check_opencv:
            check_camera(self.config, self._build_info)
        self._state = "connecting"
        self._thread = threading.Thread(target=self._supervise, name="camera %s" % self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop capturing and release the camera (waits up to timeout_s for the threads)."""
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._lock:
            if self._state != "finished":
                self._state = "stopped"
            self._lock.notify_all()

    def __enter__(self) -> FrameSource:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def latest(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The newest frame not returned before, waiting up to `timeout` seconds (None: until one comes); None on
        timeout, or at once when the source has finished or was stopped and holds no new frame."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._slot_taken:
                if self._state in ("finished", "stopped") or self._stopping.is_set():
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._lock.wait(remaining)
            self._slot_taken = True
            return self._slot

    def frames(self, poll_s: float = 0.5) -> Iterator[Frame]:
        """Each new frame until the source finishes or is stopped."""
        while True:
            frame = self.latest(poll_s)
            if frame is not None:
                yield frame
            elif self.finished or self._stopping.is_set():
                return

    @property
    def finished(self) -> bool:
        """True once a file or folder with loop: false has ended."""
        return self._state == "finished"

    def stats(self) -> Dict[str, Any]:
        """Counters (frames, dropped, reconnects, stale_timeouts, repeated_frames, repeat_stalls, read_errors,
        open_errors, end_of_stream, loops, internal_errors) and the state now."""
        with self._lock:
            self._stuck = [c for c in self._stuck if not c.done.is_set()]
            result: Dict[str, Any] = dict(self._counters)
            result.update(
                source=self.name, state=self._state,
                connection=self._connection.number if self._connection else 0,
                stuck_readers=len(self._stuck), backoff_s=self._backoff_s,
                last_frame_age_s=None if self._last_frame_at is None else time.monotonic() - self._last_frame_at)
            return result

    # ------------------------------------------------------------------ supervisor thread

    def _count(self, name: str) -> None:
        with self._lock:
            self._counters[name] += 1

    def _supervise(self) -> None:
        number = 0
        reconnect = False
        while not self._stopping.is_set():
            number += 1
            if reconnect:
                self._count("reconnects")
            try:
                connection = self._watch(number)
            except Exception:  # a bug here must not end capture for good
                log.exception("camera %s: internal error in the capture supervisor", self.name)
                self._count("internal_errors")
                connection = None
            outcome = (connection.outcome if connection else None) or "internal_error"
            if outcome == "stopped" or self._stopping.is_set():
                break
            if outcome == "end_of_stream" and self.config.kind in ("file", "folder") and connection:
                if not self.config.loop:
                    log.info("camera %s: end of stream after %d frames", self.name, self._counters["frames"])
                    with self._lock:
                        self._state = "finished"
                        self._lock.notify_all()
                    return
                if connection.frames:  # rewind at once; an empty file goes through the backoff instead
                    self._count("loops")
                    log.info("camera %s: end of stream, looping", self.name)
                    reconnect = False
                    continue
            if connection and connection.fresh:
                self._backoff.reset()
            delay = self._backoff.next()
            with self._lock:
                self._state, self._backoff_s = "backoff", delay
            log.warning("camera %s: %s; reconnecting in %.2f s", self.name, outcome.replace("_", " "), delay)
            self._sleep(delay)
            reconnect = True
        with self._lock:
            if self._state != "finished":
                self._state = "stopped"
            self._lock.notify_all()

    def _watch(self, number: int) -> _Connection:
        """Run one connection until it ends or goes stale; return it with its outcome set."""
        connection = _Connection(number, time.monotonic())
        with self._lock:
            self._connection = connection
            self._state = "connecting"
        thread = threading.Thread(target=self._read, args=(connection,), daemon=True,
                                  name="camera %s read %d" % (self.name, number))
        thread.start()
        config = self.config
        poll_s = min(0.05, config.stale_timeout_s / 4)
        while not connection.done.wait(poll_s):
            if self._stopping.is_set():
                self._abandon(connection, "stopped")
                return connection
            with self._lock:
                last = connection.last_frame_at
            if last is None:
                since, limit = connection.started_at, config.start_timeout_s
            else:  # a paced file or folder may legitimately wait longer than the timeout between frames
                since, limit = last, max(config.stale_timeout_s, 3 * connection.interval_s)
            if time.monotonic() - since > limit:
                self._count("stale_timeouts")
                log.warning("camera %s: no %s frame for %.1f s (stale)", self.name,
                            "first" if last is None else "new", limit)
                self._abandon(connection, "stale")
                return connection
        return connection

    def _abandon(self, connection: _Connection, outcome: str) -> None:
        with self._lock:
            connection.cancelled.set()
            if connection.outcome is None:
                connection.outcome = outcome
        if not connection.done.wait(min(1.0, self.config.stale_timeout_s)):
            log.warning("camera %s: connection %d is still blocked in the camera; abandoned (it releases the camera "
                        "if the call ever returns)", self.name, connection.number)
            with self._lock:
                self._stuck.append(connection)

    # ------------------------------------------------------------------ connection threads

    def _end(self, connection: _Connection, outcome: str, detail: str) -> None:
        with self._lock:
            if connection.cancelled.is_set() or connection.outcome is not None:
                return
            connection.outcome = outcome
            self._counters[OUTCOME_COUNTERS[outcome]] += 1
        level = logging.INFO if outcome == "end_of_stream" else logging.WARNING
        log.log(level, "camera %s: %s", self.name, detail)

    def _read(self, connection: _Connection) -> None:
        capture = None
        try:
            try:
                capture = self._opener(self.config)
                opened = capture is not None and (not hasattr(capture, "isOpened") or bool(capture.isOpened()))
            except Exception as exc:
                self._end(connection, "open_error", "could not open (%s: %s)" % (type(exc).__name__, exc))
                return
            if not opened:
                self._end(connection, "open_error", "could not open (is it connected, and free?)")
                return
            log.info("camera %s: opened (connection %d)", self.name, connection.number)
            connection.interval_s = self._interval_s(capture)
            next_due = 0.0
            while not connection.cancelled.is_set():
                if connection.interval_s:
                    wait_s = next_due - time.monotonic()
                    if wait_s > 0 and connection.cancelled.wait(wait_s):
                        break
                    next_due = max(time.monotonic(), next_due) + connection.interval_s
                try:
                    ok, image = capture.read()
                except Exception as exc:
                    self._end(connection, "read_error", "read() raised %s: %s" % (type(exc).__name__, exc))
                    return
                if not ok or image is None:
                    if self.config.kind in ("file", "folder"):
                        self._end(connection, "end_of_stream", "end of stream")
                    else:
                        self._end(connection, "read_error", "read() returned no frame")
                    return
                if not self._deliver(connection, image):
                    return
        except Exception as exc:
            log.exception("camera %s: internal error while reading", self.name)
            self._end(connection, "read_error", "internal error: %s" % exc)
        finally:
            if capture is not None:
                try:
                    capture.release()
                except Exception as exc:
                    log.warning("camera %s: release() raised %s: %s", self.name, type(exc).__name__, exc)
            connection.done.set()

    def _interval_s(self, capture: Any) -> float:
        """Seconds between frames for a file (its own rate unless fps is set; 0 = unpaced) or a folder."""
        fps = self.config.fps
        if self.config.kind == "file" and fps is None:
            try:
                fps = float(capture.get(CAP_PROP_FPS)) if hasattr(capture, "get") else 0.0
            except Exception:
                fps = 0.0
            if not 0 < fps <= 1000:
                fps = 30.0  # the file does not say (or says nonsense)
        if self.config.kind not in ("file", "folder") or not fps:
            return 0.0
        return 1.0 / fps

    def _deliver(self, connection: _Connection, image: np.ndarray) -> bool:
        """Put a frame in the slot (dropping an untaken one); False when the connection must end."""
        now = time.monotonic()
        signature = content_signature(image)
        with self._lock:
            if connection.cancelled.is_set():
                return False
            connection.last_frame_at = self._last_frame_at = now
            repeated = signature == self._last_signature
            self._last_signature = signature
            if repeated:
                connection.repeats += 1
                self._counters["repeated_frames"] += 1
                if self.config.max_repeats and connection.repeats >= self.config.max_repeats:
                    self._counters["repeat_stalls"] += 1
                    connection.outcome = "repeated"
                    stalled = True
                else:
                    stalled = False
            else:
                connection.repeats, stalled = 0, False
                connection.fresh += 1
            if not stalled:
                if not self._slot_taken:
                    self._counters["dropped"] += 1
                self._slot = Frame(image, now, self._sequence, signature, connection.number)
                self._slot_taken = False
                self._sequence += 1
                self._counters["frames"] += 1
                connection.frames += 1
                self._state = "streaming"
                self._lock.notify_all()
        if stalled:
            log.warning("camera %s: %d frames in a row identical to the one before (stalled)", self.name,
                        connection.repeats)
            return False
        return True
