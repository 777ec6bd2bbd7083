"""``minicpmv-edge``: device-side commands."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from ..bundle.manifest import MODULES, Bundle
from ..diagnostics.bench_preprocess import DEFAULT_SIZES, format_report, run_bench
from ..encoder.vision_encoder import VisionEncoder
from ..errors import InputError
from ..fsutil import atomic_write_bytes, atomic_write_npy
from ..preprocess.scenes import synthetic_scene
from .shell import new_parser, run

PROG = "minicpmv-edge"


def _parser() -> argparse.ArgumentParser:
    parser, sub = new_parser(PROG, "Run MiniCPM-V's vision half on a Jetson.")
    inspect = sub.add_parser("inspect", help="verify a bundle's files (sha256) and summarise its manifest")
    inspect.add_argument("--bundle", required=True, type=Path)
    inspect.add_argument("--json", action="store_true")
    encode = sub.add_parser("encode", help="encode one image (or a synthetic scene) and report tokens and timings")
    encode.add_argument("--bundle", required=True, type=Path)
    source = encode.add_mutually_exclusive_group()
    source.add_argument("--image", type=Path, help="an image file (read with Pillow)")
    source.add_argument("--scene", type=_size, default=(1920, 1080), help="a synthetic WxH scene (default 1920x1080)")
    encode.add_argument("--resize", choices=("exact", "fast"), default="exact")
    encode.add_argument("--precision", help="graph precision (default: the bundle target's)")
    encode.add_argument("--max-slice-nums", type=int)
    encode.add_argument("--out", type=Path, help="write the tokens [n_images, Q, D] float32 here (.npy)")
    encode.add_argument("--json", action="store_true")
    build = sub.add_parser("build", help="build, cache and check the TensorRT engines of a bundle (trtexec-like "
                                         "flags)")
    build.add_argument("--bundle", required=True, type=Path)
    build.add_argument("--precision", choices=("fp32", "fp16", "int8"), help="default: the bundle target's")
    build.add_argument("--cache-dir", type=Path, default=Path("/var/cache/minicpmv-edge/engines"))
    build.add_argument("--saveEngine", type=Path, help="also copy the engines here: <path>.vpm / <path>.resampler")
    build.add_argument("--timingCacheFile", type=Path, help="TensorRT timing cache to read and update")
    build.add_argument("--memPoolSize", help="workspace:N in MiB, as trtexec (default: the target profile's)")
    build.add_argument("--useDLACore", type=int, help="build for this DLA core, with GPU fallback")
    build.add_argument("--builderOptimizationLevel", type=int, help="TensorRT builder optimization level")
    build.add_argument("--force", action="store_true", help="rebuild even when the cache has the engine")
    build.add_argument("--no-check", action="store_true", help="skip the check against ONNX Runtime")
    build.add_argument("--json", action="store_true")
    run_agent = sub.add_parser("run", help="camera -> preprocess -> VPM -> Resampler -> tokens, as the agent "
                                           "config says, until the source ends or SIGTERM")
    run_agent.add_argument("--config", required=True, type=Path)
    run_agent.add_argument("--max-frames", type=int)
    run_agent.add_argument("--json", action="store_true", help="print the final report as JSON")
    profile = sub.add_parser("profile", help="run the agent on its source and report per-stage times and shares "
                                             "(profile first: where does the frame time go?)")
    profile.add_argument("--config", required=True, type=Path)
    profile.add_argument("--frames", type=int, default=30)
    profile.add_argument("--no-reuse", action="store_true", help="encode every frame (frame reuse off)")
    profile.add_argument("--json", action="store_true")
    doctor = sub.add_parser("doctor", help="check JetPack, TensorRT, CUDA, pycuda, OpenCV/GStreamer, jtop, cameras "
                                           "and the engine cache; each problem with its fix")
    doctor.add_argument("--cache-dir", type=Path, default=Path("/var/cache/minicpmv-edge/engines"))
    doctor.add_argument("--json", action="store_true")
    bench = sub.add_parser("bench", help="benchmarks that print figures (--json for machines)")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    preprocess = bench_sub.add_parser("preprocess", help="exact and fast preprocessing vs the official PIL "
                                                         "pipeline: times, ratios, pixel and token distance")
    preprocess.add_argument("--sizes", type=_sizes, default=DEFAULT_SIZES,
                            help="comma-separated WxH inputs (default: 640x480,1280x720,1920x1080,4032x3024)")
    preprocess.add_argument("--repeats", type=int, default=5, help="timed runs per input (min and median)")
    preprocess.add_argument("--seed", type=int, default=0, help="synthetic scene seed")
    preprocess.add_argument("--bundle", type=Path, help="also encode with this bundle: token cosine fast vs exact")
    preprocess.add_argument("--max-slice-nums", type=int, help="slice budget (default: the bundle's, else 9)")
    preprocess.add_argument("--json", action="store_true")
    engines = bench_sub.add_parser("engines", help="a bundle's engines on this device: build time, per-stage "
                                                   "latency per precision, memory")
    engines.add_argument("--bundle", required=True, type=Path)
    engines.add_argument("--backend", choices=("tensorrt", "onnxruntime"), default="tensorrt")
    engines.add_argument("--precision", action="append", choices=("fp32", "fp16", "int8"),
                         help="repeat for several (default: every precision the bundle has)")
    engines.add_argument("--size", type=_size, default=(1920, 1080), help="frame WxH (default 1920x1080)")
    engines.add_argument("--repeats", type=int, default=5)
    engines.add_argument("--cache-dir", type=Path, default=Path("/var/cache/minicpmv-edge/engines"))
    engines.add_argument("--json", action="store_true")
    return parser


def _sizes(text: str) -> List[Tuple[int, int]]:
    """"640x480,1920x1080" -> [(640, 480), (1920, 1080)]."""
    try:
        sizes = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(len(s) != 2 or min(s) < 1 for s in sizes):
        raise argparse.ArgumentTypeError("expected WxH[,WxH...] with positive integers, got %r" % text)
    return sizes  # type: ignore[return-value]


def _size(text: str) -> Tuple[int, int]:
    sizes = _sizes(text)
    if len(sizes) != 1:
        raise argparse.ArgumentTypeError("expected one WxH, got %r" % text)
    return sizes[0]


def _encode(args: argparse.Namespace) -> int:
    encoder = VisionEncoder.from_bundle(args.bundle, precision=args.precision, resize=args.resize)
    if args.max_slice_nums is not None:
        try:
            encoder.max_slice_nums = args.max_slice_nums
        except ValueError as exc:
            raise InputError("--max-slice-nums: %s" % exc) from exc
    image = _read_image(args.image) if args.image else synthetic_scene(*args.scene)
    result = encoder.encode(image)
    if args.out:
        atomic_write_npy(args.out, result.tokens)
    summary = {"tokens_shape": list(result.tokens.shape), "grid": result.grid, "patch_grids": result.patch_grids,
               "timings_ms": {k: round(v, 2) for k, v in result.timings.items()},
               "prompt": "".join("{Q}" if isinstance(s, int) else s for s in encoder.prompt.segments(result.grid)),
               "out": str(args.out) if args.out else None}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print("tokens %s, grid %s, %s" % ("x".join(map(str, result.tokens.shape)), result.grid,
                                          ", ".join("%s %.1f ms" % kv for kv in summary["timings_ms"].items())))
        print("prompt layout ({Q} = %d <unk> placeholders): %s" % (encoder.prompt.query_num, summary["prompt"]))
    return 0


def _read_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError("cannot read image %s (%s): pass a PNG/JPEG file" % (path, exc)) from exc


def _inspect(args: argparse.Namespace) -> int:
    bundle = Bundle.load(args.bundle)
    model, target = bundle.model, bundle.manifest["target"]
    graphs = {m: {p: {"files": g["files"], "bytes": g["bytes"], "opset": g["opset"]}
                  for p, g in bundle.manifest["modules"][m]["graphs"].items()} for m in MODULES}
    if args.json:
        print(json.dumps({"bundle": str(bundle.path), "version": model["version"], "target": target,
                          "graphs": graphs, "files_verified": len(bundle.manifest["files"])}, indent=2))
        return 0
    print("bundle %s: MiniCPM-V %s, Q=%d D=%d, slice layout %s, target %s (TensorRT %s, opset %d)"
          % (bundle.path, model["version"], model["query_num"], model["embed_dim"], model["slice"]["layout"],
             target["profile"], target["tensorrt"], target["opset"]))
    for module, per_precision in graphs.items():
        for precision, graph in per_precision.items():
            print("  %-9s %-4s %8.1f MB  %s" % (module, precision, graph["bytes"] / 1e6, ", ".join(graph["files"])))
    print("  %d files verified by sha256" % len(bundle.manifest["files"]))
    return 0


def _workspace_mib(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    pool, _, size = text.partition(":")
    if pool != "workspace" or not size.isdigit():
        raise InputError("--memPoolSize takes workspace:N (N in MiB, as trtexec), got %r" % text)
    return int(size) << 20


def _build(args: argparse.Namespace) -> int:
    from ..engines.tensorrt.build import BuildSettings, build_bundle, import_tensorrt

    bundle = Bundle.load(args.bundle)
    settings = BuildSettings(args.precision, args.cache_dir, _workspace_mib(args.memPoolSize), args.useDLACore,
                             args.timingCacheFile, args.builderOptimizationLevel, args.force, not args.no_check)
    trt, memory = import_tensorrt()
    report, _ = build_bundle(bundle, trt, memory, settings, log=lambda message: print(message, file=sys.stderr))
    if args.saveEngine:
        for module, entry in report.items():
            atomic_write_bytes(Path("%s.%s" % (args.saveEngine, module)), Path(entry["engine"]).read_bytes())
    print(json.dumps(report, indent=2) if args.json else "\n".join(
        "%s: %s (%s)" % (m, e["engine"], "cached" if e["cached"] else "built in %.1f s" % e["seconds"])
        for m, e in report.items()))
    return 0


def _run(args: argparse.Namespace) -> int:
    import logging

    from ..agent.config import load_agent_config
    from ..agent.runner import make_pipeline, run_pipeline

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = run_pipeline(make_pipeline(load_agent_config(args.config), max_frames=args.max_frames))
    print(json.dumps(report, indent=2) if args.json else "frames %d (encoded %d, reused %d, errors %d)"
          % (report["frames"], report["encoded"], report["reused"], report["errors"]))
    return 0


def _profile(args: argparse.Namespace) -> int:
    from ..agent.config import load_agent_config
    from ..agent.runner import make_pipeline, run_pipeline

    report = run_pipeline(make_pipeline(load_agent_config(args.config), reuse=not args.no_reuse,
                                        max_frames=args.frames))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("%d frames (%d encoded, %d reused = %.0f%%); work %.1f ms per frame, camera wait %.1f ms"
          % (report["frames"], report["encoded"], report["reused"], 100 * report["reused_share"],
             report["frame_work_ms"], report["capture_wait_ms_per_frame"]))
    for stage, ms in report["stages_ms_per_frame"].items():
        share = report["stage_shares"][stage]
        print("  %-12s %9.2f ms/frame %5.1f%%  %s" % (stage, ms, 100 * share, "#" * int(round(40 * share))))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """Exit 0 when nothing failed (warnings allowed), 1 otherwise."""
    from ..diagnostics.doctor import format_findings, run_checks, summary

    findings = run_checks(args.cache_dir)
    print(json.dumps(summary(findings), indent=2) if args.json else format_findings(findings))
    return 1 if summary(findings)["failed"] else 0


def _bench(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise InputError("--repeats must be at least 1, got %d" % args.repeats)
    if args.bench == "engines":
        from ..diagnostics.bench_engines import run_bench as run_engines

        report = run_engines(args.bundle, args.backend, args.precision, args.size, args.repeats, args.cache_dir)
        print(json.dumps(report, indent=2) if args.json else "\n".join(
            "%s: ready in %.1f s; per frame preprocess %.1f ms, vpm %.1f ms, resampler %.1f ms; peak RSS %s"
            % (p["precision"], p["ready_s"], p["stages"]["preprocess"]["median_ms"], p["stages"]["vpm"]["median_ms"],
               p["stages"]["resampler"]["median_ms"], p["memory"]["peak_rss_bytes"]) for p in report["precisions"]))
        return 0
    report = run_bench(args.sizes, args.repeats, args.seed, args.bundle, args.max_slice_nums)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: one clear line and exit code 2 for bad input."""
    return run(_parser(), {"inspect": _inspect, "encode": _encode, "build": _build, "run": _run,
                                 "profile": _profile, "doctor": _doctor,
                                 "bench": _bench}, argv)


if __name__ == "__main__":
    sys.exit(main())
