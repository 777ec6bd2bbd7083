"""The agent: an agent config -> sink, camera, frame reuse and encoder (backend and precision per module), run
until done; the engines are freed when the run ends."""
from __future__ import annotations

import signal
from typing import Any, Callable, Dict, List, Optional

from ..bundle.facts import ModelFacts
from ..bundle.manifest import Bundle
from ..bundle.video import video_precision
from ..camera.pipelines import check_camera
from ..camera.source import FrameSource
from ..encoder.vision_encoder import VisionEncoder
from ..engines.factory import open_engines
from ..engines.tensorrt.build import BuildSettings
from ..errors import InputError
from ..monitor.governor import Governor
from ..monitor.governor_hook import GovernorHook, Monitor
from ..monitor.snapshot import Snapshot
from ..stream.address import read_secret
from ..stream.publisher import StreamPublisher
from ..stream.requests import EncodeRequests
from .config import AgentConfig, StreamConfig
from .contracts import Sink, Source
from .frame_reuse import FrameReuse
from .pipeline import Pipeline
from .pipelined import PipelinedPipeline
from .sinks import NpySink, SinkSet
from .video_pipeline import GroupingPipeline, open_grouper


def open_encoder(config: AgentConfig, bundle: Optional[Bundle] = None, snapshot: Optional[Snapshot] = None
                 ) -> VisionEncoder:
    """ONNX Runtime or TensorRT per module, at the precision per module the config gives (TensorRT engines come
    from the engine cache; a build `snapshot` shows cannot fit in RAM is refused); `bundle`: the config's, when
    already loaded."""
    bundle = bundle or Bundle.load(config.bundle)
    engines = open_engines(bundle, config.backend, config.precision, config.engine_cache,
                           BuildSettings(snapshot=snapshot))
    encoder = VisionEncoder(bundle, engines, config.resize)
    if config.max_slice_nums is not None:
        try:
            encoder.max_slice_nums = config.max_slice_nums
        except ValueError as exc:
            encoder.close()
            raise InputError("agent config: %s" % exc) from exc
    return encoder


def open_publisher(stream: StreamConfig, model: ModelFacts, requests: Optional[EncodeRequests] = None
                   ) -> StreamPublisher:
    """The token stream the config describes, serving this bundle's model version and token width; subscribers'
    images to encode go to `requests`."""
    secret = None if stream.secret_file is None else read_secret(stream.secret_file)
    return StreamPublisher(stream.address, model.version, model.embed_dim, stream.dtype, stream.queue_length,
                           stream.max_frame_bytes, secret, requests=requests).start()


def make_pipeline(config: AgentConfig, reuse: Optional[bool] = None, max_frames: Optional[int] = None,
                  source: Optional[Source] = None, sink: Optional[Sink] = None,
                  monitor: Optional[Monitor] = None, mode: Optional[str] = None) -> Pipeline:
    """Everything the config names, ready to run; `reuse`, `max_frames`, `source`, `sink` and `mode` (the frame
    loop: sequential or pipelined) override the config.

    What can fail on bad input comes first (the camera's static checks: OpenCV, GStreamer, a missing file; the sink
    folder, the stream's socket), the engines last, so a mistake is reported before a TensorRT engine is built. The
    token stream, when the config enables it, gets the results too (not when `sink` is given: profile), and its
    subscribers' images are encoded by this pipeline's engines. With `governor.enabled` the governor runs as a loop
    hook on `monitor`'s snapshots and the monitor's latest snapshot refuses an engine build that cannot fit; a
    monitor opened here (none given) is closed with the pipeline, a given one stays its giver's."""
    pipelined = (mode or config.pipeline) == "pipelined"
    if pipelined and config.video.grouped:
        raise InputError("pipeline: pipelined does not group video frames (video.group_frames > 1): set pipeline: "
                         "sequential, or video.group_frames: 1")
    if source is None:
        check_camera(config.camera)
        source = FrameSource(config.camera)
    bundle, requests = None, None
    if sink is None:
        sinks: List[Sink] = [NpySink(config.sink.directory, config.sink.keep)]
        if config.stream.enabled:
            bundle, requests = Bundle.load(config.bundle), EncodeRequests(config.stream.max_requests)
            sinks.append(open_publisher(config.stream, bundle.model, requests))
        sink = SinkSet(sinks)
    if config.video.grouped:  # before the engines: a bundle without the grouped graph is refused at once
        bundle = bundle or Bundle.load(config.bundle)
        video_precision(bundle)
    enabled = config.reuse.enabled if reuse is None else reuse
    checker = FrameReuse.from_dict(config.reuse.settings) if enabled else None
    owned = config.governor.enabled and monitor is None
    if owned:
        from ..monitor.readers import open_monitor

        monitor = open_monitor(interval_s=config.governor.interval_s)
    governed = monitor if config.governor.enabled else None
    try:
        encoder = open_encoder(config, bundle, None if governed is None else governed.latest())
    except BaseException:
        if bundle is not None:
            sink.close()  # the stream's socket, bound above
        if owned:
            governed.close()
        raise
    hooks = [] if governed is None else [GovernorHook(Governor(config.governor), governed, encoder.max_slice_nums,
                                                      owns_monitor=owned)]
    frames = max_frames if max_frames is not None else config.max_frames
    if not config.video.grouped:
        loop = PipelinedPipeline if pipelined else Pipeline
        return loop(encoder, source, sink, checker, frames, requests, hooks)
    try:  # the grouped Resampler on the Resampler's backend and precision, on the encoder's device memory
        engines = encoder.engines
        grouper = open_grouper(encoder.bundle, config.video.group_frames, engines.backends["resampler"],
                               engines.precisions["resampler"], config.engine_cache,
                               BuildSettings(snapshot=None if governed is None else governed.latest()),
                               engines.runtime)
    except BaseException:
        Pipeline(encoder, source, sink, checker, frames, requests, hooks).close()  # what the run would free
        raise
    return GroupingPipeline(encoder, source, sink, checker, frames, requests, hooks, grouper=grouper)


def run_pipeline(pipeline: Pipeline, started: Optional[Callable[[], Any]] = None,
                 ending: Optional[Callable[[], Any]] = None, reload: Optional[Callable[[], Any]] = None
                 ) -> Dict[str, Any]:
    """Start the camera, run until done or SIGTERM/SIGINT (the frame in progress is finished), stop the camera, free
    the engines and close the sinks (the stream drains); the report. `started` is called once the camera started,
    `ending` once the loop ended, `reload` on SIGHUP (from the signal handler: it must only set a flag)."""
    def stop(signum: int, frame: Any) -> None:
        pipeline.stop()

    handlers: Dict[int, Callable[[int, Any], Any]] = dict.fromkeys((signal.SIGTERM, signal.SIGINT), stop)
    if reload is not None:
        handlers[signal.SIGHUP] = lambda signum, frame: reload()
    previous = {s: signal.signal(s, handler) for s, handler in handlers.items()}
    try:
        pipeline.source.start()
        try:
            if started is not None:
                started()
            return pipeline.run()
        finally:
            if ending is not None:
                ending()
            pipeline.source.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pipeline.close()
