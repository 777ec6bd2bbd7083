"""`minicpmv-edge bench preprocess | device-preprocess | engines | stream | llm | hooks | web | video | pipeline`:
benchmarks that print figures (--json for machines)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict

from ..diagnostics.bench_preprocess import DEFAULT_SIZES
from ..errors import InputError
from . import args as common
from .shell import Handler


def register(sub: argparse._SubParsersAction) -> Dict[str, Handler]:
    bench = sub.add_parser("bench", help="benchmarks that print figures (--json for machines)")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    preprocess = bench_sub.add_parser("preprocess", help="exact and fast preprocessing vs the official PIL "
                                                         "pipeline: times, ratios, pixel and token distance")
    preprocess.add_argument("--sizes", type=common.sizes, default=DEFAULT_SIZES,
                            help="comma-separated WxH inputs (default: 640x480,1280x720,1920x1080,4032x3024)")
    preprocess.add_argument("--repeats", type=common.positive_int, default=5,
                            help="timed runs per input (min and median; default 5)")
    preprocess.add_argument("--seed", type=int, default=0, help="synthetic scene seed")
    preprocess.add_argument("--bundle", type=Path, help="also encode with this bundle: token cosine fast vs exact")
    preprocess.add_argument("--max-slice-nums", type=int, help="slice budget (default: the bundle's, else 9)")
    common.add_json(preprocess)
    device = bench_sub.add_parser("device-preprocess", help="preprocessing on the CUDA device (pycuda) vs the "
                                                            "official PIL pipeline, with and without the upload")
    device.add_argument("--size", type=common.size, default=(1920, 1080),
                        help="the synthetic frame (default 1920x1080)")
    device.add_argument("--repeats", type=common.positive_int, default=20, help="timed runs, min reported (default 20)")
    device.add_argument("--seed", type=int, default=0, help="synthetic scene seed")
    device.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="strip dtype")
    common.add_json(device)
    engines = bench_sub.add_parser("engines", help="a bundle's engines on this device: build time, per-stage "
                                                   "latency per precision, memory")
    common.add_bundle(engines)
    engines.add_argument("--backend", choices=("tensorrt", "onnxruntime"), default="tensorrt",
                         help="what runs the graphs (default tensorrt)")
    engines.add_argument("--precision", action="append", choices=("fp32", "fp16", "int8"),
                         help="repeat for several (default: every precision the bundle has)")
    engines.add_argument("--size", type=common.size, default=(1920, 1080),
                         help="the synthetic frame, WxH (default 1920x1080)")
    engines.add_argument("--repeats", type=common.positive_int, default=5,
                         help="timed frames per precision, after one warm-up (default 5)")
    common.add_cache_dir(engines)
    common.add_json(engines)
    stream = bench_sub.add_parser("stream", help="the token stream vs a raw copy of the same bytes over a Unix "
                                                 "socket: MB/s, frames/s, latency, for a 10-slice 2.6 frame")
    stream.add_argument("--frames", type=common.positive_int, default=200,
                        help="frames per measurement, after 10 of warm-up (default 200)")
    stream.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16", help="token dtype (default fp16)")
    stream.add_argument("--rounds", type=common.positive_int, default=3,
                        help="measured rounds, raw and stream in turn; the medians are reported (default 3)")
    common.add_json(stream)
    llm = bench_sub.add_parser("llm", help="a GGUF LLM in llama.cpp: load time, image-row prefill, first token "
                                           "cold, with the system prompt cached and with the image rows cached, "
                                           "decode, peak RSS")
    llm.add_argument("--gguf", required=True, type=Path, help="the LLM as a GGUF file")
    llm.add_argument("--rows", type=common.positive_int, default=640,
                     help="random image rows to prefill (default 640: a 10-slice 2.6 frame)")
    llm.add_argument("--tokens", type=common.positive_int, default=32, help="tokens to decode (default 32)")
    llm.add_argument("--repeats", type=common.positive_int, default=3, help="timed runs (median; default 3)")
    llm.add_argument("--no-repack", dest="repack", action="store_false",
                     help="keep the weights out of llama.cpp's repacked CPU layouts (as llama.cpp's --no-repack)")
    common.add_json(llm)
    hooks = bench_sub.add_parser("hooks", help="what the service's loop hooks (governor, metrics, watchdog) add to "
                                               "each turn of the frame loop, against a frame's encode (needs "
                                               "'.[edge]' with prometheus-client)")
    common.add_bundle(hooks)
    hooks.add_argument("--repeats", type=common.positive_int, default=50, help="timed runs (median; default 50)")
    common.add_json(hooks)
    web = bench_sub.add_parser("web", help="the frame loop's fps with the web page closed vs open (an MJPEG client "
                                           "and /state polls), in one run on the config's camera")
    common.add_config(web, "the agent config (its camera, bundle, engines)")
    web.add_argument("--seconds", type=common.positive_float, default=10.0,
                     help="seconds per measurement (default 10)")
    web.add_argument("--rounds", type=common.positive_int, default=3,
                     help="rounds of closed then open; medians reported (default 3)")
    common.add_json(web)
    video = bench_sub.add_parser("video", help="4.5 video packing: tokens per second of video sent to the LLM "
                                               "per frame (N=1) vs grouped (N frames per Resampler call)")
    common.add_bundle(video)
    video.add_argument("--group-frames", type=common.positive_int, action="append",
                       help="frames per group; repeat (default: 1 and 6; the first is the ratios' baseline)")
    video.add_argument("--frames", type=common.positive_int, default=24, help="frames of the clip (default 24)")
    video.add_argument("--fps", type=common.positive_float, default=10.0, help="the clip's frame rate (default 10)")
    video.add_argument("--size", type=common.size, default=(448, 448), help="frame size WxH (default 448x448)")
    video.add_argument("--max-slice-nums", type=common.positive_int, default=1,
                       help="slice budget (default 1: one slice per frame, the official video setting)")
    common.add_json(video)
    pipeline = bench_sub.add_parser("pipeline", help="the sequential vs the pipelined frame loop on the config's "
                                                     "engines and camera, in turn: fps and per-frame latency")
    common.add_config(pipeline, "the agent config (its camera, bundle, engines)")
    pipeline.add_argument("--frames", type=common.positive_int, default=20,
                          help="frames counted per measurement (default 20)")
    pipeline.add_argument("--warmup", type=common.positive_int, default=2,
                          help="frames run before counting, per measurement (default 2)")
    pipeline.add_argument("--rounds", type=common.positive_int, default=2,
                          help="rounds of sequential then pipelined; fps medians (default 2)")
    common.add_json(pipeline)
    return {"bench": bench_command}


def bench_command(args: argparse.Namespace) -> int:
    if args.bench == "pipeline":
        from ..agent.config import load_agent_config
        from ..diagnostics import bench_pipeline

        report = bench_pipeline.run_bench(load_agent_config(args.config), args.frames, args.rounds, args.warmup)
        print(json.dumps(report, indent=2) if args.json else bench_pipeline.format_report(report))
        return 0
    if args.bench == "video":
        from ..diagnostics import bench_video
        from ..encoder.video_group import MAX_GROUP_FRAMES

        groups = args.group_frames or [1, MAX_GROUP_FRAMES]
        if max(groups) > MAX_GROUP_FRAMES:
            raise InputError("--group-frames must be 1..%d, got %d" % (MAX_GROUP_FRAMES, max(groups)))
        report = bench_video.run_bench(args.bundle, groups, args.frames, args.fps, args.size, args.max_slice_nums)
        print(json.dumps(report, indent=2) if args.json else bench_video.format_report(report))
        return 0
    if args.bench == "web":
        from ..agent.config import load_agent_config
        from ..diagnostics import bench_web

        report = bench_web.run_bench(load_agent_config(args.config), args.seconds, args.rounds)
        print(json.dumps(report, indent=2) if args.json else bench_web.format_report(report))
        return 0
    if args.bench == "hooks":
        from ..diagnostics import bench_hooks

        report = bench_hooks.run_bench(args.bundle, args.repeats)
        print(json.dumps(report, indent=2) if args.json else bench_hooks.format_report(report))
        return 0
    if args.bench == "llm":
        from ..diagnostics import bench_llm

        report = bench_llm.run_bench(args.gguf, args.rows, args.tokens, args.repeats, args.repack)
        print(json.dumps(report, indent=2) if args.json else bench_llm.format_report(report))
        return 0
    if args.bench == "stream":
        from ..diagnostics import bench_stream

        report = bench_stream.run_bench(args.frames, args.dtype, args.rounds)
        print(json.dumps(report, indent=2) if args.json else bench_stream.format_report(report))
        return 0
    if args.bench == "device-preprocess":
        from ..diagnostics import bench_device_preprocess
        from ..preprocess.device.selection import device_support

        support = device_support()
        if not support.ready:
            raise InputError("bench device-preprocess needs a CUDA device with pycuda, found %s: %s"
                             % (support.found, support.fix))
        report = bench_device_preprocess.run_bench(args.size, args.repeats, args.seed, dtype=args.dtype)
        print(json.dumps(report, indent=2) if args.json else bench_device_preprocess.format_report(report))
        return 0
    if args.bench == "engines":
        from ..diagnostics.bench_engines import run_bench as run_engines

        report = run_engines(args.bundle, args.backend, args.precision, args.size, args.repeats, args.cache_dir)
        print(json.dumps(report, indent=2) if args.json else "\n".join(
            "%s: ready in %.1f s; per frame preprocess %.1f ms, vpm %.1f ms, resampler %.1f ms; peak RSS %s"
            % (p["precision"], p["ready_s"], p["stages"]["preprocess"]["median_ms"], p["stages"]["vpm"]["median_ms"],
               p["stages"]["resampler"]["median_ms"], p["memory"]["peak_rss_bytes"]) for p in report["precisions"]))
        return 0
    from ..diagnostics.bench_preprocess import format_report, run_bench

    report = run_bench(args.sizes, args.repeats, args.seed, args.bundle, args.max_slice_nums)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
