"""The grouped (video) Resampler graph through a real TensorRT builder: parse and build fp32 and fp16.

    python -m benchmarks.video_build --checkpoint CK [--groups 3] [--json]

Exports the grouped graph of a 4.5 checkpoint (opset 17) into a temporary folder and builds it with full TensorRT
where importable, else TensorRT-RTX (ahead of time, compute capability 8.6, no GPU needed), with the profile: frames
1..6 per group, 1..`--groups` groups (slice positions), 1..1024 patches per frame (a 448x448 slice), opt one group
of 6 full frames. The engines are thrown away: this checks that the graph parses and builds.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any, Dict

from converter.build_check import RTX_CAPABILITY, require_builder
from converter.checkpoint import load_vision_checkpoint
from converter.export import export_graph
from converter.video_export import MODULE, build_group_module, group_feeds, group_graph_io
from edge.engines.tensorrt.builder import BuildFailed, BuildOptions, build_engine, builder_name, is_rtx

PATCHES = 1024
WORKSPACE_BYTES = 8 << 30


def run(checkpoint: Path, groups: int) -> Dict[str, Any]:
    trt = require_builder()
    ck = load_vision_checkpoint(checkpoint)
    width, frames = ck.spec.width, 6
    shapes = {"vision_embeds": ((1, 1, width), (frames, PATCHES, width), (groups * frames, PATCHES, width)),
              "tgt_sizes": ((1, 2), (frames, 2), (groups * frames, 2)),
              "temporal_ids": ((1, 1), (1, frames), (groups, frames))}
    capability = RTX_CAPABILITY if is_rtx(trt) else None
    graphs: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for precision in ("fp32", "fp16"):
            graph = export_graph(build_group_module(ck, 70), MODULE, precision, group_graph_io(ck), group_feeds(ck),
                                 Path(scratch), 17)
            options = BuildOptions(precision, shapes, WORKSPACE_BYTES, compute_capability=capability)
            try:
                built = build_engine(trt, Path(scratch) / graph.files[0], options, lambda message: None)
            except BuildFailed as failure:
                graphs[precision] = {"built": False, "stage": failure.stage, "message": str(failure)}
            else:
                graphs[precision] = {"built": True, "seconds": round(built.seconds, 1),
                                     "engine_bytes": len(built.engine)}
    return {"builder": builder_name(trt), "compute_capability": capability or "this machine's GPU",
            "checkpoint": str(checkpoint), "profile": shapes, "graphs": graphs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="a MiniCPM-V 4.5 checkpoint")
    parser.add_argument("--groups", type=int, default=3, help="most groups (slice positions) per call (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    report = run(args.checkpoint, args.groups)
    print(json.dumps(report, indent=2) if args.json else
          "\n".join("%s: %s" % (p, "built in %.1f s" % g["seconds"] if g["built"] else g["message"])
                    for p, g in report["graphs"].items()))


if __name__ == "__main__":
    main()
