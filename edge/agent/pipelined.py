"""The pipelined frame loop (agent config `pipeline: pipelined`): the stages of `Pipeline` in three threads, so that
frame N+1 is captured, checked for reuse and preprocessed while frame N goes through the VPM and the Resampler and
frame N-1 is written to the sink.

- The prepare thread takes camera frames (honouring `paused`, `frame_interval_s` and `max_frames`), runs the reuse
  check and `encoder.prepare` on those to encode, and hands each frame on.
- The caller's thread, the one that opened the engines, is the encode stage and their only user: it encodes the
  frames handed to it (`encoder.encode_prepared`), serves encode requests, and ticks the hooks after every turn.
- The sink thread writes each result, in frame order, and measures the frame's latency from capture.

Stages hand frames on through slots of one whose giver waits until the next stage took the frame
(edge.agent.handoff), so at most one frame is in each stage: three in the loop. Once the encode stage has taken a
frame, the prepare stage waits before taking the next one from the camera so that its preparation ends a little
before that encode does (by the recent average times of the two stages): the frame handed to the engines is then as
new as the overlap allows, rather than one encode older, and a wrong guess costs some overlap, never order or bounds.
The hooks tick while the prepare thread is between two frames' reuse check and preprocessing, so what they change
(the slice budget, reuse, pause, interval) applies from the next frame not yet prepared; a frame already prepared is
encoded as it was prepared.

Frame reuse decides before a frame is encoded, so the result it remembers for a frame to encode is a `Pending`,
filled by the encode stage; a frame reusing it gets the tokens once they exist (frames reach the encode stage in
order). A frame whose encode failed is not reused: the frame after it that would have reused it is counted as an
error too, and the next check starts afresh. A fault in any stage skips that frame (counted, logged) and the loop goes
on; what the camera itself raises ends the run and is raised by `run`, as in the sequential loop. `stop()` takes no
new frame and finishes the frames already in the loop; every thread ends before `run` returns.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, NamedTuple, Optional

from .contracts import FrameResult, StagedEncoder
from .handoff import END, Handoff
from .pipeline import ENCODE_STAGES, REQUEST_POLL_S, Pipeline, _since_ms, block_rows_of

log = logging.getLogger("minicpmv-edge")
LEAD = 1.25  # start the next frame this many times its recent preparation time before the encode ends
SMOOTHING = 0.3  # weight of the newest time in the stages' averages


def _average(mean: float, value: float) -> float:
    """An exponential moving average (the first value as it is)."""
    return value if mean == 0.0 else (1 - SMOOTHING) * mean + SMOOTHING * value


class Pending:
    """What frame reuse remembers for a frame handed to the encode stage: its result once encoded (`result`), or
    `failed`."""

    def __init__(self, sequence: int) -> None:
        self.sequence = sequence
        self.result: Optional[FrameResult] = None
        self.failed = False


class Prepared(NamedTuple):
    """A frame handed from the prepare stage to the encode stage."""

    frame: Any  # the camera Frame
    check_ms: float  # the reuse check
    batches: Any  # the encoder's prepared batches; None when the frame reuses `pending`'s tokens
    pending: Pending  # the result this frame fills (to encode) or reuses


class PipelinedPipeline(Pipeline):
    """`Pipeline` with its stages overlapped (module docstring); the encoder must also have `prepare` and
    `encode_prepared` (edge.agent.contracts.StagedEncoder)."""

    encoder: StagedEncoder

    mode = "pipelined"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._knobs = threading.Lock()  # held by the prepare stage per frame and by the hooks' turn
        self._quit = threading.Event()  # stop() or the encode stage's end: the prepare stage takes no new frame
        self._to_encode, self._to_sink = Handoff(), Handoff()
        self._failure: Optional[BaseException] = None  # what ended the prepare stage, raised by run()
        self._encode_s = self._prepare_s = 0.0  # recent times of the two stages (averages), for the start time

    def run(self, poll_s: float = 0.5) -> Dict[str, Any]:
        """Loop until the source finishes, max_frames frames were taken, or stop() is called; the frames in the loop
        are finished, the threads joined, and the report returned."""
        wait_s = REQUEST_POLL_S if self.requests is not None else poll_s
        threads = [threading.Thread(target=self._prepare_stage, args=(wait_s,), name="frame-prepare", daemon=True),
                   threading.Thread(target=self._sink_stage, name="frame-sink", daemon=True)]
        for thread in threads:
            thread.start()
        try:
            while True:
                self.serve_requests()
                item = self._to_encode.take(wait_s)
                if item is END:
                    break
                if item is not None:
                    start = time.perf_counter()
                    self._encode(item)
                    self._encode_s = _average(self._encode_s, time.perf_counter() - start)
                self._tick_hooks()
        finally:
            self._quit.set()
            self._to_encode.close()  # a prepare stage waiting to hand a frame on gives up
            self._to_sink.give(END)  # after the frames already handed on; False if the sink thread is gone
            for thread in threads:
                thread.join()
        if self._failure is not None:
            raise self._failure
        return self.report()

    def stop(self) -> None:
        super().stop()
        self._quit.set()

    def _tick_hooks(self) -> None:
        with self._knobs:
            super()._tick_hooks()

    def _prepare_stage(self, wait_s: float) -> None:
        """Take frames, check and prepare each, and hand it to the encode stage, until the end; then END."""
        try:
            while not self._quit.is_set():
                if self.max_frames is not None and self.counters["frames"] >= self.max_frames:
                    break
                start = time.perf_counter()
                frame = self._next_frame(wait_s)
                if frame is None:
                    if self.source.finished:
                        break
                    continue
                self.count("frames")
                with self._knobs:
                    item = self._prepare(frame)
                self._prepare_s = _average(self._prepare_s, time.perf_counter() - start)
                if item is not None:
                    if not self._to_encode.give(item):
                        break
                    self._quit.wait(max(0.0, self._encode_s - LEAD * self._prepare_s))  # start just in time
        except BaseException as exc:  # raised by run(), as the sequential loop raises what its camera raises
            self._failure = exc
        finally:
            self._to_encode.give(END)

    def _prepare(self, frame: Any) -> Optional[Prepared]:
        """The reuse check, then the encoder's preprocessing for a frame to encode; None after a fault."""
        reuse = self.reuse
        try:
            start = time.perf_counter()
            if reuse is not None and isinstance(reuse.result, Pending) and reuse.result.failed:
                reuse.reset()  # nothing to reuse: that frame's encode failed
            encode = reuse is None or reuse.should_encode(frame.image, frame.color)
            check_ms = _since_ms(start)
            if not encode:
                return Prepared(frame, check_ms, None, reuse.result)
            batches = self.encoder.prepare(frame.image, color=frame.color)
        except Exception as exc:  # noqa: BLE001 - a bad frame must not stop the agent
            self.skipped(frame, exc)
            return None
        pending = Pending(frame.sequence)
        if reuse is not None:
            reuse.remember(frame.image, pending, frame.color)
        return Prepared(frame, check_ms, batches, pending)

    def _encode(self, item: Prepared) -> None:
        """The frame's tokens (encoded, or those of the frame it reuses) handed to the sink stage."""
        frame, pending = item.frame, item.pending
        try:
            if item.batches is None:
                source = pending.result
                if source is None:
                    raise RuntimeError("frame %d, whose tokens it would reuse, was not encoded" % pending.sequence)
                result = source._replace(sequence=frame.sequence, timestamp_s=frame.timestamp_s,
                                         timings_ms={"reuse_check": item.check_ms}, reused_from=source.sequence)
                self.count("reused")
            else:
                encoded = self.encoder.encode_prepared(item.batches)
                timings_ms = {"reuse_check": item.check_ms}
                timings_ms.update((stage, encoded.timings[stage]) for stage in ENCODE_STAGES)
                result = FrameResult(frame.sequence, frame.timestamp_s, encoded.grid, encoded.tokens, timings_ms,
                                     positions=encoded.positions, block_rows=block_rows_of(encoded.token_counts))
                pending.result = result
                self.count("encoded")
        except Exception as exc:  # noqa: BLE001 - a bad frame must not stop the agent
            if item.batches is not None:
                pending.failed = True  # the frames that would reuse its tokens are skipped too
            self.skipped(frame, exc)
            return
        for stage, ms in result.timings_ms.items():
            self.times[stage].append(ms)
        self._to_sink.give((frame, result))

    def _sink_stage(self) -> None:
        """Write each result handed on, in order, until END."""
        try:
            while True:
                item = self._to_sink.take()
                if item is END:
                    return
                self.write(*item)
        finally:
            self._to_sink.close()  # the encode stage never waits on a sink thread that is gone
