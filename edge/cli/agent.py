"""`minicpmv-edge run` and `profile`: the agent on its camera, as the agent config says."""
from __future__ import annotations

import argparse
import json
import logging
from typing import Dict

from ..agent.config import PIPELINE, PIPELINES
from . import args as common
from .shell import Handler


def register(sub: argparse._SubParsersAction) -> Dict[str, Handler]:
    run = sub.add_parser("run", help="camera -> preprocess -> VPM -> Resampler -> tokens, as the agent config says, "
                                     "until the source ends or SIGTERM (exit 0); SIGHUP reloads the config; "
                                     "systemd Type=notify and watchdog, Prometheus metrics (docs/service.md)")
    common.add_config(run)
    run.add_argument("--max-frames", type=common.positive_int, help="stop after this many frames (default: the "
                                                                     "config's max_frames, else run on)")
    common.add_json(run)
    profile = sub.add_parser("profile", help="run the agent on its source and report per-stage times and shares "
                                             "(profile first: where does the frame time go?)")
    common.add_config(profile)
    profile.add_argument("--frames", type=common.positive_int, default=30, help="frames to profile (default 30)")
    profile.add_argument("--no-reuse", action="store_true", help="encode every frame (default: the config's "
                         "reuse.enabled, which is true unless the config sets it)")
    profile.add_argument("--pipeline", choices=PIPELINES, help="the frame loop: sequential (one frame at a time) "
                         "or pipelined (capture and preprocessing overlap the encode); default: the config's "
                         "pipeline, which is %s unless the config sets it" % PIPELINE)
    common.add_json(profile)
    return {"run": run_agent, "profile": profile_agent}


def run_agent(args: argparse.Namespace) -> int:
    from ..agent.config import load_agent_config
    from ..service.agent import serve_agent

    config = load_agent_config(args.config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = serve_agent(args.config, config, max_frames=args.max_frames)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("frames %d (encoded %d, reused %d, errors %d), dropped %d"
          % (report["frames"], report["encoded"], report["reused"], report["errors"], report["dropped"]))
    stream, requests = report["sinks"].get("stream"), report["requests"]
    if stream is not None:
        print("stream: %d frames published, %d cast, %d dropped from subscriber queues, "
              "%d subscribers now (%d accepted, %d refused), %d bad messages from subscribers"
              % (stream["published"], stream["packed"], stream["dropped"],
                 len(stream["subscribers"]), stream["accepted"], stream["refused"], stream["rejected"]))
    if requests is not None:
        print("images encoded for subscribers: %d (%d failed, %d refused as busy or stopping)%s"
              % (requests["served"], requests["failed"], requests["refused"],
                 "" if requests["encode_ms"] is None else ", %.1f ms each" % requests["encode_ms"]))
    return 0


def profile_agent(args: argparse.Namespace) -> int:
    from ..agent.config import load_agent_config
    from ..agent.runner import make_pipeline, run_pipeline
    from ..agent.sinks import NullSink

    report = run_pipeline(make_pipeline(load_agent_config(args.config), reuse=False if args.no_reuse else None,
                                        max_frames=args.frames, sink=NullSink(), mode=args.pipeline))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("%d frames (%d encoded, %d reused = %.0f%%, %d errors), dropped %d; work %.1f ms per frame, camera wait "
          "%.1f ms" % (report["frames"], report["encoded"], report["reused"], 100 * report["reused_share"],
                       report["errors"], report["dropped"], report["frame_work_ms"],
                       report["capture_wait_ms_per_frame"]))
    latency = report["latency_ms"]
    if latency["median"] is not None:
        print("%s loop; latency capture to sink: median %.1f ms, p90 %.1f ms"
              % (report["pipeline"], latency["median"], latency["p90"]))
    for stage, ms in report["stages_ms_per_frame"].items():
        share = report["stage_shares"][stage]
        print("  %-12s %9.2f ms/frame %5.1f%%  %s" % (stage, ms, 100 * share, "#" * int(round(40 * share))))
    print("tokens: none written (profile only measures; run writes them to the config's sink)")
    return 0
