"""What the frame loop hands on and what it needs from its collaborators.

One `FrameResult` per handled frame goes to the sink: an encoded frame's own tokens, or, for a frame that frame
reuse judged unchanged, the tokens of the earlier frame named by `reused_from`. The collaborators are Protocols, so
a sink (the npy files, the token stream), a source or an encoder needs only these methods.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, NamedTuple, Optional, Protocol, Tuple

import numpy as np

if TYPE_CHECKING:  # annotations only: importing the encoder would import the engines
    from ..camera.source import Frame
    from ..encoder.vision_encoder import EncodedImage


class FrameResult(NamedTuple):
    """One handled frame: what a sink receives."""

    sequence: int  # the camera frame's sequence number (0, 1, 2, ... per source)
    timestamp_s: float  # the camera's time.monotonic() when the frame was captured
    grid: Optional[Tuple[int, int]]  # (cols, rows) of the slices, None for an overview alone: the prompt layout
    tokens: np.ndarray  # float32 [1 + cols*rows, Q, D]: overview first, then tiles row-major
    timings_ms: Dict[str, float]  # this frame's stages: reuse_check, and preprocess, vpm, resampler when encoded
    reused_from: Optional[int] = None  # sequence of the frame whose tokens these are; None: this frame was encoded
    frames: int = 1  # camera frames these tokens cover: N for a 4.5 video group (this frame the group's last)
    positions: Optional[np.ndarray] = None  # int32 [rows, 3]: each token row's (t, h, w) on 4.7's canvas
    block_rows: Optional[Tuple[int, ...]] = None  # the token rows of each block when slices differ (4.6, 4.7)

    @property
    def reused(self) -> bool:
        return self.reused_from is not None


class Source(Protocol):
    """Frames from a camera, newest first (edge.camera.FrameSource)."""

    @property
    def finished(self) -> bool:
        """True once a source that ends (a file, a folder) has ended."""

    def start(self) -> Any:
        """Start capturing."""

    def stop(self) -> None:
        """Stop capturing and release the camera."""

    def latest(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The newest frame not returned before, or None after `timeout` seconds."""

    def stats(self) -> Dict[str, Any]:
        """Counters, `dropped` among them (frames replaced by a newer one before they were taken)."""


class Encoder(Protocol):
    """Image in, tokens out (edge.VisionEncoder)."""

    def encode(self, image: Any, color: str = "rgb") -> EncodedImage:
        """Tokens, grid and per-stage timings (ms: preprocess, vpm, resampler, total) of one image."""

    def close(self) -> None:
        """Free the engines."""


class StagedEncoder(Encoder, Protocol):
    """An encoder whose `encode` is `prepare` then `encode_prepared` (edge.VisionEncoder): the pipelined loop
    prepares one frame while the engines encode the one before."""

    def prepare(self, image: Any, color: str = "rgb") -> Any:
        """The image preprocessed for the engines (no engine buffer touched: any thread)."""

    def encode_prepared(self, prepared: Any) -> EncodedImage:
        """Tokens, grid and timings of a prepared image (the engines' thread)."""


class Requests(Protocol):
    """Images others asked to have encoded (edge.stream.requests.EncodeRequests): served by the frame loop, the one
    thread that uses the engines."""

    def __len__(self) -> int:
        """How many wait."""

    def serve(self, encode: Callable[[Any], Any]) -> int:
        """Encode every waiting image with `encode`, answering each requester; how many were served."""

    def close(self) -> None:
        """Refuse new images and fail the waiting ones."""

    def stats(self) -> Dict[str, int]:
        """served, failed, refused, waiting."""


class ReuseCheck(Protocol):
    """Whether a frame must be encoded or the last encoded frame's result still stands for it
    (edge.agent.frame_reuse.FrameReuse)."""

    @property
    def result(self) -> Any:
        """The result remembered last (a FrameResult in the pipeline)."""

    def should_encode(self, frame: Any, color: str = "bgr") -> bool:
        """True when `frame` differs from the remembered one enough to be encoded."""

    def remember(self, frame: Any, result: Any, color: str = "bgr") -> None:
        """Keep `result` as the encoded result of `frame`."""

    def reset(self) -> None:
        """Forget the result (the slice budget changed): the next frame is encoded."""

    def stats(self) -> Dict[str, Any]:
        """Counters and the last differences measured."""


class LoopHook(Protocol):
    """Called by the frame loop, from its own thread, once per turn (a frame handled, or a camera wait that ended
    without one): the governor acting on the loop's knobs, watchdog pings, metrics. A hook that raises is logged
    and counted; the loop goes on. A hook that also has a `close()` method is closed with the pipeline."""

    def tick(self, pipeline: Any) -> None:
        """One turn of `pipeline` (an edge.agent.pipeline.Pipeline) has ended."""


class Sink(Protocol):
    """Where frame results go: each handled frame's result, in order."""

    name: str  # its kind: "npy", "stream", ...

    def describe(self) -> str:
        """Where the tokens go, for the log and the summary."""

    def write(self, result: FrameResult) -> None:
        """Take one frame's result; raising counts an error for that frame and the loop goes on."""

    def close(self) -> None:
        """Flush and let go of what the sink holds (files, connections)."""

    def stats(self) -> Dict[str, Any]:
        """Its counters."""
