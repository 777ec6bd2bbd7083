"""Every graph of synthetic bundles parsed and built by a real TensorRT builder (TensorRT-RTX here), per version,
size, precision and target, with the engine sizes set against the converter's memory estimate.

    python -m benchmarks.build_check --json                       # tiny and small, every version, both opsets
    python -m benchmarks.build_check --sizes full --versions 2.6 --targets orin-nano-8gb --json   # GPU machine

Per (version, size, target): a synthetic checkpoint, fp32 and fp16 graphs exported for the target (orin-nano-8gb:
opset 17, TensorRT 10.3; xavier-nx: opset 16, TensorRT 8.5), int8 graphs calibrated on 2 synthetic scenes without
the fallback search (the graph's shape is what is built, not its accuracy), then `build_check_bundle`: parsed,
built, build seconds, engine bytes, and the workspace limit each graph was built with. `estimate_weight_bytes` is
the sizing's weight figure for that module and precision; the ratio engine / estimate shows what it leaves out.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

from converter.build_check import build_check_bundle, require_builder
from converter.bundle import write_bundle
from converter.calibrate import calibrate
from converter.calibration_settings import Settings
from converter.checkpoint import load_tensors, read_layout
from converter.sizing import estimate_vision_bytes
from converter.synthetic import write_checkpoint
from edge.bundle.manifest import Bundle, write_manifest
from edge.device.profiles import load_profile
from edge.engines.tensorrt.builder import builder_name

VERSIONS = ("2.5", "2.6", "o-2.6", "4.0", "4.5")
TARGETS = ("orin-nano-8gb", "xavier-nx")


def bundle_rows(version: str, size: str, target: str, work: Path, trt: Any) -> List[Dict[str, Any]]:
    """Export, calibrate and build-check one bundle; one row per graph."""
    quiet = lambda message: None  # noqa: E731
    checkpoint = work / ("ck-%s-%s" % (version, size))
    if not checkpoint.exists():
        write_checkpoint(checkpoint, version, size)
    profile = load_profile(target)
    out = work / ("bundle-%s-%s-%s" % (version, size, target))
    start = time.perf_counter()
    layout = read_layout(checkpoint, version)
    estimates = estimate_vision_bytes(layout.spec, profile, ["fp32", "fp16", "int8"], layout.bundle_layout)
    memory = {"vision_estimates": {p: e.to_dict() for p, e in estimates.items()}}  # estimated, not held to budget
    write_bundle(load_tensors(layout), out, profile, ["fp32", "fp16"], overwrite=True, check=False, log=quiet,
                 memory=memory)
    settings = Settings(count=2, eval_count=1, search=False)
    calibrated = calibrate(Bundle.load(out), settings, quiet)
    write_manifest(out, calibrated.manifest)
    prepared = time.perf_counter() - start
    bundle = Bundle.load(out)
    report = build_check_bundle(bundle, trt, log=quiet)
    rows = []
    for file, graph in report["graphs"].items():
        estimate = estimates[graph["precision"]].modules[graph["module"]].weight_bytes
        rows.append({"version": version, "size": size, "target": target, "opset": bundle.target.opset,
                     "graph": file, "parsed": graph["parsed"], "built": graph["built"],
                     "build_seconds": graph.get("seconds"), "engine_bytes": graph.get("engine_bytes"),
                     "workspace_bytes": graph["workspace_bytes"], "estimate_weight_bytes": estimate,
                     "engine_over_estimate": round(graph["engine_bytes"] / estimate, 2) if graph["built"] else None,
                     "error": None if graph["built"] else graph["message"], "export_calibrate_seconds":
                     round(prepared, 1), "int8_fits_vision_budget":
                     estimates["int8"].total_bytes <= profile.vision_memory_budget_bytes})
    return rows


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", default=",".join(VERSIONS))
    parser.add_argument("--sizes", default="tiny,small")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--work", type=Path, help="keep checkpoints and bundles here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    trt = require_builder()
    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for size in args.sizes.split(","):
            for version in args.versions.split(","):
                for target in args.targets.split(","):
                    made = bundle_rows(version, size, target, work, trt)
                    print("%s %s %s: %d of %d graphs built" % (version, size, target, sum(r["built"] for r in made),
                                                              len(made)), file=sys.stderr, flush=True)
                    rows += made
    result = {"builder": builder_name(trt), "machine": platform.node(),
              "cpus": platform.processor() or platform.machine(), "rows": rows}
    print(json.dumps(result, indent=2) if args.json else "\n".join(
        "%(version)s %(size)s %(target)s %(graph)s built=%(built)s %(build_seconds)s s %(engine_bytes)s B" % r
        for r in rows))
    return 0 if all(r["built"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
