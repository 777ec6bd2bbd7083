"""`minicpmv-edge build`: a bundle's TensorRT engines built (or found) in the engine cache and checked, with
trtexec-like flags."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, Optional

from ..bundle.manifest import Bundle
from ..errors import InputError
from ..fsutil import atomic_write_bytes
from . import args as common
from .shell import Handler


def register(sub: argparse._SubParsersAction) -> Dict[str, Handler]:
    parser = sub.add_parser("build", help="build, cache and check the TensorRT engines of a bundle (trtexec-like "
                                          "flags); TensorRT only: ONNX Runtime needs no build")
    common.add_bundle(parser)
    common.add_precision(parser, help="default: the bundle target's")
    common.add_cache_dir(parser)
    parser.add_argument("--saveEngine", type=Path, help="also copy the engines here: <path>.vpm / <path>.resampler")
    parser.add_argument("--timingCacheFile", type=Path, help="TensorRT timing cache to read and update")
    parser.add_argument("--memPoolSize", help="workspace:N in MiB, as trtexec (default: the bundle's memory estimate "
                                              "for the precision)")
    parser.add_argument("--useDLACore", type=int, help="build for this DLA core, with GPU fallback")
    parser.add_argument("--builderOptimizationLevel", type=int, help="TensorRT builder optimization level")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache has the engine")
    parser.add_argument("--no-check", action="store_true", help="skip the check against ONNX Runtime")
    common.add_json(parser)
    return {"build": build}


def workspace_bytes(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    pool, _, size = text.partition(":")
    if pool != "workspace" or not size.isdigit():
        raise InputError("--memPoolSize takes workspace:N (N in MiB, as trtexec), got %r" % text)
    return int(size) << 20


def build(args: argparse.Namespace) -> int:
    from ..engines.tensorrt.build import BuildSettings, build_bundle, import_tensorrt
    from ..monitor.readers import open_monitor

    bundle = Bundle.load(args.bundle)
    monitor = open_monitor(prefer="fallback")  # one reading of the RAM now: a build that cannot fit is refused
    try:
        snapshot = monitor.latest()
    finally:
        monitor.close()
    settings = BuildSettings(args.precision, args.cache_dir, workspace_bytes(args.memPoolSize), args.useDLACore,
                             args.timingCacheFile, args.builderOptimizationLevel, args.force, not args.no_check,
                             snapshot)
    trt, memory = import_tensorrt()
    report = build_bundle(bundle, trt, memory, settings, log=lambda message: print(message, file=sys.stderr))
    if args.saveEngine:
        for module, entry in report.items():
            atomic_write_bytes(Path("%s.%s" % (args.saveEngine, module)), Path(entry["engine"]).read_bytes())
    print(json.dumps(report, indent=2) if args.json else "\n".join(
        "%s: %s (%s)" % (m, e["engine"], "cached" if e["cached"] else "built in %.1f s" % e["seconds"])
        for m, e in report.items()))
    return 0
