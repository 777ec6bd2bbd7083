"""The grouped (video) Resampler graphs of a bundle through a real TensorRT builder, with the profile and workspace
limit the engine factory builds them with (`minicpmv-convert check-ops --build` on this module alone):

    python -m benchmarks.video_build --bundle BUNDLE [--json]

Full TensorRT where importable, else TensorRT-RTX (ahead of time for compute capability 8.6, no GPU needed). Prints
per graph: parsed, built, seconds, engine bytes, workspace limit and profile; and the process's peak resident memory
(the builder's host memory on a machine without a GPU). The engines are thrown away.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

from converter.build_check import build_check_bundle, format_build_report, require_builder
from edge.bundle.manifest import VIDEO_MODULE, Bundle
from edge.bundle.video import video_precision
from edge.errors import InputError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, type=Path, help="a 4.5 bundle with the grouped graph")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    try:
        bundle = Bundle.load(args.bundle)
        video_precision(bundle)  # refuses a bundle without the grouped graph, naming export-video
        trt = require_builder()
    except InputError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    report = build_check_bundle(bundle, trt, log=lambda m: print(m, file=sys.stderr, flush=True),
                                modules=(VIDEO_MODULE,))
    report["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(report, indent=2) if args.json else "%s\npeak resident memory %.2f GB" % (
        format_build_report(report, args.bundle), report["peak_rss_bytes"] / 1e9))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
