"""The agent: an agent config -> sink, camera, frame reuse and encoder (backend and precision per module), run
until done; the engines are freed when the run ends."""
from __future__ import annotations

import signal
from typing import Any, Dict, Optional

from ..bundle.manifest import Bundle
from ..camera.pipelines import check_camera
from ..camera.source import FrameSource
from ..encoder.vision_encoder import VisionEncoder
from ..engines.factory import open_engines
from ..errors import InputError
from .config import AgentConfig
from .contracts import Sink, Source
from .frame_reuse import FrameReuse
from .pipeline import Pipeline
from .sinks import NpySink


def open_encoder(config: AgentConfig) -> VisionEncoder:
    """ONNX Runtime or TensorRT per module, at the precision per module the config gives (TensorRT engines come
    from the engine cache)."""
    bundle = Bundle.load(config.bundle)
    encoder = VisionEncoder(bundle, open_engines(bundle, config.backend, config.precision, config.engine_cache),
                            config.resize)
    if config.max_slice_nums is not None:
        try:
            encoder.max_slice_nums = config.max_slice_nums
        except ValueError as exc:
            encoder.close()
            raise InputError("agent config: %s" % exc) from exc
    return encoder


def make_pipeline(config: AgentConfig, reuse: Optional[bool] = None, max_frames: Optional[int] = None,
                  source: Optional[Source] = None, sink: Optional[Sink] = None) -> Pipeline:
    """Everything the config names, ready to run; `reuse`, `max_frames`, `source` and `sink` override the config.

    What can fail on bad input comes first (the camera's static checks: OpenCV, GStreamer, a missing file; the sink
    folder), the engines last, so a mistake is reported before a TensorRT engine is built."""
    if source is None:
        check_camera(config.camera)
        source = FrameSource(config.camera)
    if sink is None:
        sink = NpySink(config.sink.directory, config.sink.keep)
    enabled = config.reuse.enabled if reuse is None else reuse
    checker = FrameReuse.from_dict(config.reuse.settings) if enabled else None
    return Pipeline(open_encoder(config), source, sink, checker,
                    max_frames if max_frames is not None else config.max_frames)


def run_pipeline(pipeline: Pipeline) -> Dict[str, Any]:
    """Start the camera, run until done or SIGTERM/SIGINT, stop the camera, free the engines; the report."""
    def stop(signum: int, frame: Any) -> None:
        pipeline.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        pipeline.source.start()
        try:
            return pipeline.run()
        finally:
            pipeline.source.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pipeline.close()
