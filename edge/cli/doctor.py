"""`minicpmv-edge doctor`: is this box ready to run the agent? Exit 0 when nothing failed, 1 otherwise."""
from __future__ import annotations

import argparse
import json
from typing import Dict

from . import args as common
from .shell import Handler


def register(sub: argparse._SubParsersAction) -> Dict[str, Handler]:
    parser = sub.add_parser("doctor", help="check JetPack, TensorRT, CUDA, pycuda, OpenCV/GStreamer, jtop, cameras "
                                           "and the engine cache; each problem with its fix")
    common.add_cache_dir(parser)
    common.add_json(parser)
    return {"doctor": doctor}


def doctor(args: argparse.Namespace) -> int:
    from ..diagnostics.doctor import format_findings, run_checks, summary

    findings = run_checks(args.cache_dir)
    print(json.dumps(summary(findings), indent=2) if args.json else format_findings(findings))
    return 1 if summary(findings)["failed"] else 0
