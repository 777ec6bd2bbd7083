"""The standing question: asked about the camera's newest frame every `every_s` seconds through the ChatService (so
it waits its turn behind API requests and shares their KV cache), skipped while the scene has not changed since the
last answer. Each answer is logged, kept as the latest (``GET /v1/scene/latest``) and appended to an answers file."""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

from ..errors import InputError
from .api import ChatRequest
from .conversation import IMAGE_MARK, frame_source
from .service import ChatService, Reply

log = logging.getLogger("minicpmv-edge.llm.schedule")
MAX_EVERY_S = 86400.0  # a day: the longest period (threading's waits overflow far beyond it)
MAX_ANSWERS_BYTES = 16 << 20  # the answers file moves to <file>.1 past this size


class ScheduleConfig(NamedTuple):
    """`question` asked every `every_s` seconds; each answer also appended to `answers_file` when set."""

    question: str
    every_s: float
    answers_file: Optional[Path] = None


class AnswersFile:
    """One JSON line per answer, appended whole; a line that would take the file past `max_bytes` first moves it to
    `<name>.1` (replacing the one before), so at most about twice `max_bytes` are kept."""

    def __init__(self, path: Path, max_bytes: int = MAX_ANSWERS_BYTES) -> None:
        self.path, self.max_bytes = Path(path), max_bytes
        try:
            with open(self.path, "ab"):
                pass
        except OSError as exc:
            raise InputError("--answers-file: cannot append to %s (%s): give a file in a writable folder"
                             % (path, exc.strerror or exc)) from None

    def append(self, record: Dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        size = self.path.stat().st_size if self.path.exists() else 0
        if size and size + len(line) > self.max_bytes:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        with open(self.path, "ab") as file:  # one write of the whole line, flushed as the file closes
            file.write(line)


class StandingQuestion:
    """Asks `config.question` in a thread (`start`, `close`). `latest` is the newest answer's record; `counts` says
    what became of each period: answered, unchanged (the frame last answered, or a reuse of it), no_frame, errors.
    `on_answer`, when given, is called with each answer's record (an alert rule's state machine)."""

    def __init__(self, service: ChatService, config: ScheduleConfig,
                 on_answer: Optional[Callable[[Dict[str, Any]], None]] = None, name: str = "standing-question") -> None:
        if service.follower is None:
            raise InputError("a standing question (--ask) needs the token stream to follow (--stream)")
        self.service, self.config, self.on_answer = service, config, on_answer
        self.answers = None if config.answers_file is None else AnswersFile(config.answers_file)
        self.request = ChatRequest([("user", IMAGE_MARK + "\n" + config.question)], None, False, None, 0.0, None)
        self.counts = dict.fromkeys(("answered", "unchanged", "no_frame", "errors"), 0)
        self._answered: Optional[Tuple[Any, ...]] = None  # the last answer's image source: frame (and connection)
        self._latest: Optional[Dict[str, Any]] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> StandingQuestion:
        self._thread.start()
        return self

    @property
    def latest(self) -> Optional[Dict[str, Any]]:
        with self._lock:
            return None if self._latest is None else dict(self._latest)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop: a wait ends at once, an answer being made at its next piece."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        """Ask at start + k * every_s; periods that pass while an answer is being made are not made up."""
        every, start, k = self.config.every_s, time.monotonic(), 1
        while not self._stop.wait(start + k * every - time.monotonic()):
            self._ask()
            k = max(k + 1, math.floor((time.monotonic() - start) / every) + 1)

    def _ask(self) -> None:
        newest = self.service.follower.newest()
        if newest is None:
            self.counts["no_frame"] += 1
            if self.counts["no_frame"] == 1:
                log.warning("no camera frame to answer about yet (%s): the standing question waits for one",
                            self.service.follower.error or "the agent has not published a frame")
            return
        frame, connection = newest
        if self._answered == frame_source(frame, connection):
            self.counts["unchanged"] += 1
            log.debug("frame %d shows the scene last answered about: skipped", frame.frame_id)
            return
        asked_at, started = time.time(), time.monotonic()
        try:
            answered = self._answer()
        except Exception as exc:  # noqa: BLE001 - an ApiError, LlmError...: the schedule outlives any one answer
            self.counts["errors"] += 1
            log.error("the standing question about frame %d failed: %s", frame.frame_id, exc)
            return
        if answered is None:  # stopped while answering
            return
        text, reply = answered
        facts = reply.frame
        record = {"frame_id": facts["frame_id"], "timestamp_s": facts["timestamp_s"],
                  "reused_from": facts["reused_from"], "question": self.config.question, "answer": text,
                  "finish_reason": reply.answer.finish_reason, "asked_at": round(asked_at, 3),
                  "seconds": round(time.monotonic() - started, 3)}
        with self._lock:
            self._latest, self._answered = record, reply.image.source
        self.counts["answered"] += 1
        log.info("answer about frame %d: %s (%s, %.2f s)", record["frame_id"], json.dumps(text, ensure_ascii=False),
                 record["finish_reason"], record["seconds"])
        if self.answers is not None:
            try:
                self.answers.append(record)
            except OSError as exc:
                self.counts["errors"] += 1
                log.error("cannot append the answer to %s: %s", self.answers.path, exc)
        if self.on_answer is not None:
            try:
                self.on_answer(record)
            except Exception:  # noqa: BLE001 - a failing consumer must not end the schedule
                self.counts["errors"] += 1
                log.exception("handling the answer about frame %d failed", record["frame_id"])

    def _answer(self) -> Optional[Tuple[str, Reply]]:
        """(text, Reply) of one greedy answer about the newest frame; None when stopped before its end."""
        steps = self.service.answer(self.request)
        try:
            reply, pieces = next(steps), []
            for piece in steps:
                if self._stop.is_set():
                    return None
                pieces.append(piece)
            return "".join(pieces), reply
        finally:
            steps.close()
