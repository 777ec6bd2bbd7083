"""``minicpmv-convert``: host-side commands (synthetic checkpoints and GGUF LLMs, checkpoint inspection, ONNX export,
benchmarks).

Everything a command was given is checked before torch is imported (a few seconds), so bad input is refused at
once: targets, --out, the LLM, calibration flags, and the checkpoint as far as its files tell
(``converter.checkpoint_layout``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from edge.bundle.manifest import MODULES, Bundle
from edge.cli.shell import new_parser, run
from edge.device.profiles import JETPACKS, DeviceProfile, list_profiles, load_profile
from edge.errors import InputError
from edge.fsutil import refuse_existing

from . import family
from .checkpoint_layout import CheckpointLayout, read_layout, with_downsample_mode
from .targets import precisions_for
from .trt_ops import known_releases, table_release

PROG = "minicpmv-convert"


def _parser() -> argparse.ArgumentParser:
    parser, sub = new_parser(PROG, "Convert MiniCPM-V's vision half into a Jetson bundle.")

    make = sub.add_parser("make-checkpoint", help="write a seeded synthetic checkpoint (vision weights only)")
    make.add_argument("--model-version", required=True, choices=list(family.VERSIONS),
                      help="MiniCPM-V version whose config and tensor layout to imitate")
    make.add_argument("--size", default="tiny", choices=["tiny", "small", "full"],
                      help="tiny: width 64, 2 layers; small: the real widths, 2 layers; full: the real 27-layer "
                           "VPM (default tiny)")
    make.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    make.add_argument("--seed", type=int, default=0, help="random seed of the weights (default 0)")
    make.add_argument("--shards", type=int, default=1, help="safetensors shards (an index is written when > 1)")
    make.add_argument("--format", dest="weight_format", default="safetensors", choices=["safetensors", "bin"],
                      help="weight file format (default safetensors)")
    make.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"], help="stored weight dtype")
    make.add_argument("--force", action="store_true", help="replace --out if it exists")

    gguf = sub.add_parser("make-gguf", help="write a seeded random tiny GGUF LLM in the architecture of a "
                                            "version's LLM, with its special tokens and chat template (tests)")
    gguf.add_argument("--model-version", required=True, choices=list(family.VERSIONS),
                      help="MiniCPM-V version whose LLM to imitate")
    gguf.add_argument("--out", required=True, type=Path, help="GGUF file to write")
    gguf.add_argument("--seed", type=int, default=0, help="random seed of the weights (default 0)")
    gguf.add_argument("--force", action="store_true", help="replace --out if it exists")
    gguf.add_argument("--moe", action="store_true", help="4.7 only: its 35B-A3B mixture-of-experts LLM (qwen35moe) "
                                                         "instead of the 1B dense one")

    inspect = sub.add_parser("inspect", help="detect the version and check the vision tensors of a checkpoint")
    _add_checkpoint_args(inspect)
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")

    export = sub.add_parser("export", help="export the VPM and the Resampler to ONNX in a bundle")
    _add_export_args(export)
    export.add_argument("--precision", action="append", choices=["fp32", "fp16"],
                        help="graph precision; repeat for several (default fp32; int8 comes from calibrate, or "
                             "from convert for a Jetson target)")
    export.add_argument("--json", action="store_true", help="print the manifest's graph figures as JSON")

    convert = sub.add_parser("convert", help="export -> calibrate -> check-ops -> verify: the bundle a target "
                                             "needs, in one command (nothing is written unless every step passes)")
    _add_export_args(convert)
    _add_calibration_args(convert)
    convert.add_argument("--verify-images", type=int, default=4, help="held-out images for verify (default 4)")
    convert.add_argument("--json", action="store_true", help="print the conversion summary as JSON")

    bench = sub.add_parser("bench", help="time the torch reference (the baseline) and a bundle's ONNX graphs")
    _add_checkpoint_args(bench)
    bench.add_argument("--bundle", type=Path, help="also time and compare this bundle's graphs (ONNX Runtime)")
    bench.add_argument("--device", default="cpu", help="torch device for the reference, e.g. cuda")
    bench.add_argument("--dtype", default="fp32", choices=["fp32", "fp16"], help="torch reference dtype")
    bench.add_argument("--slice", default="32x32", help="slice size in patches, ROWSxCOLS (32x32 = 448x448)")
    bench.add_argument("--batch", type=int, default=1, help="slices per call (default 1)")
    bench.add_argument("--repeats", type=int, default=5, help="timed runs per measurement; the median is "
                                                                "reported (default 5)")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    calibrate = sub.add_parser("calibrate", help="INT8 Q/DQ graphs for a bundle: calibrate on images, then keep "
                                                 "the most harmful layers float until a target token cosine")
    calibrate.add_argument("--bundle", required=True, type=Path, help="bundle with fp32 graphs (from export)")
    _add_calibration_args(calibrate)
    calibrate.add_argument("--json", action="store_true", help="print the int8 graphs and the search as JSON")
    check = sub.add_parser("check-ops", help="check every graph of a bundle against a TensorRT release's ONNX "
                                             "parser: operators, opset, int64 I/O, Q/DQ legality")
    check.add_argument("--bundle", required=True, type=Path, help="bundle to check")
    check.add_argument("--trt", help="TensorRT release: %s, or a full version such as 10.3.0.30 (default: the "
                                     "bundle target's)" % ", ".join(known_releases()))
    check.add_argument("--build", action="store_true", help="also parse and build every graph with a real TensorRT "
                                                            "builder (full TensorRT where installed, else "
                                                            "TensorRT-RTX): profiles, workspace, node-level errors")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    video = sub.add_parser("export-video", help="add MiniCPM-V 4.5's grouped (video) Resampler graph to a 4.5 "
                                                "bundle: N <= 6 frames -> one group of tokens")
    video.add_argument("--bundle", required=True, type=Path, help="a 4.5 bundle (from export or convert)")
    _add_checkpoint_args(video)
    video.add_argument("--precision", action="append", choices=["fp32", "fp16"],
                       help="graph precision; repeat for several (default fp32)")
    verify = sub.add_parser("verify", help="every precision of a bundle vs the torch float32 reference on held-out "
                                           "images: cosines, relative errors, per-layer errors, CPU time, report")
    verify.add_argument("--bundle", required=True, type=Path, help="bundle to verify")
    verify.add_argument("--checkpoint", required=True, type=Path, help="the checkpoint the bundle was exported from")
    verify.add_argument("--images", type=int, default=4, help="held-out images (default 4)")
    verify.add_argument("--data", type=Path, help="a folder of images or a video file (default: built-in synthetic "
                                                 "scenes, a seed calibration does not use)")
    verify.add_argument("--report", type=Path, help="HTML report path (default BUNDLE/report.html)")
    verify.add_argument("--json", action="store_true", help="print the summary written to the manifest as JSON")
    return parser


def _add_checkpoint_args(parser: argparse.ArgumentParser) -> None:
    """The checkpoint a command reads, and its version."""
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="local Hugging Face MiniCPM-V directory (config.json + safetensors or .bin weights)")
    parser.add_argument("--model-version", choices=list(family.VERSIONS),
                        help="override the version detected from config.json")


def _add_export_args(parser: argparse.ArgumentParser) -> None:
    """What export and convert share: the checkpoint, the output and the target."""
    _add_checkpoint_args(parser)
    parser.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    parser.add_argument("--downsample-mode", choices=list(family.DOWNSAMPLE_MODES),
                        help="MiniCPM-V 4.6/4.7: the token compression the bundle's graphs run, 16x (window "
                             "merger + downsample MLP) or 4x (downsample MLP only); default: the config's")
    parser.add_argument("--target", default="host-x86",
                        help="device profile (%s) or a profile YAML path" % ", ".join(list_profiles()))
    parser.add_argument("--jetpack", help="JetPack release on the device (%s); its TensorRT sets the opset "
                                          "(default: the profile's)" % ", ".join(JETPACKS))
    parser.add_argument("--llm-gguf", type=Path, help="the llama.cpp GGUF LLM the device also runs: the vision "
                                                      "engines, the LLM and the OS reserve must fit its RAM")
    parser.add_argument("--llm-bytes", type=int, help="the LLM's memory in bytes, KV cache included (instead of "
                                                      "--llm-gguf)")
    parser.add_argument("--llm-context", type=int, help="LLM context in tokens, for the KV cache of --llm-gguf "
                                                        "(default 4096)")
    parser.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs torch check per graph")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")


def _add_calibration_args(parser: argparse.ArgumentParser) -> None:
    """What calibrate and convert share."""
    parser.add_argument("--data", type=Path, help="a folder of images or a video file (default: built-in "
                                                  "synthetic scenes)")
    parser.add_argument("--count", type=int, default=16, help="calibration images (default 16)")
    parser.add_argument("--method", choices=("entropy", "percentile", "minmax"), default="entropy",
                        help="how activation ranges are set: entropy (KL, as TensorRT's entropy calibrator), "
                             "percentile of |x|, or minmax (default entropy)")
    parser.add_argument("--percentile", type=float, default=99.99,
                        help="the |x| percentile kept by --method percentile (default 99.99)")
    parser.add_argument("--quantize-attention", action="store_true",
                        help="also quantize the attention matmuls (usually kept fp16 for 1024-token slices)")
    parser.add_argument("--target-cosine", type=float, default=0.995, help="mean token cosine to reach")
    parser.add_argument("--min-cosine", type=float, default=0.98, help="worst token cosine to reach")
    parser.add_argument("--eval-images", type=int, default=4, help="held-out scenes for the search")
    parser.add_argument("--no-search", action="store_true", help="quantize every layer, no fallback search")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic calibration scenes (default 0)")


def _calibration_settings(args: argparse.Namespace):
    """The calibration flags, checked (before any work)."""
    from .calibration_settings import Settings

    settings = Settings(args.data, args.count, args.method, args.percentile, args.quantize_attention,
                        args.target_cosine, args.min_cosine, args.eval_images, not args.no_search, args.seed)
    settings.check()
    return settings


def _check_target(args: argparse.Namespace, precisions_of: Callable[[DeviceProfile], List[str]]
                  ) -> Tuple[DeviceProfile, List[str], CheckpointLayout, Dict[str, Any]]:
    """Profile, the precisions to export for it, --out, the LLM, the checkpoint's layout and the memory estimate,
    all checked before torch is imported (refused before anything is written when it cannot fit)."""
    from .sizing import describe, llm_bytes_from_args, size_bundle

    profile = load_profile(args.target, jetpack=args.jetpack)
    precisions = precisions_of(profile)
    refuse_existing(args.out, args.force)
    llm_bytes = llm_bytes_from_args(args.llm_gguf, args.llm_bytes, args.llm_context)
    layout = with_downsample_mode(read_layout(args.checkpoint, args.model_version), args.downsample_mode)
    memory = size_bundle(layout.spec, profile, precisions, layout.bundle_layout, llm_bytes,
                         log=lambda message: print(message, file=sys.stderr))
    print(describe(memory, profile), file=sys.stderr)
    return profile, precisions, layout, memory


def _load(layout: CheckpointLayout):
    """The checkpoint's vision tensors (torch is imported here)."""
    from .checkpoint import load_tensors

    start = time.perf_counter()
    ck = load_tensors(layout)
    print("read MiniCPM-V %s vision weights from %s in %.1f s" % (ck.version, ck.path, time.perf_counter() - start),
          file=sys.stderr)
    return ck


def _make_checkpoint(args: argparse.Namespace) -> int:
    refuse_existing(args.out, args.force)
    import torch

    from .synthetic import write_checkpoint

    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    out = write_checkpoint(args.out, args.model_version, args.size, seed=args.seed, shards=args.shards,
                           weight_format=args.weight_format, dtype=dtype, overwrite=args.force)
    print("wrote synthetic MiniCPM-V %s (%s) checkpoint to %s" % (args.model_version, args.size, out))
    return 0


def _make_gguf(args: argparse.Namespace) -> int:
    refuse_existing(args.out, args.force)
    if args.out.is_dir():
        raise InputError("%s is a directory: --out must name a .gguf file" % args.out)
    try:
        from .gguf_writer import write_gguf
    except ImportError as exc:
        raise InputError("make-gguf needs the gguf package (%s): pip install -e '.[llm]'" % exc) from None
    from .gguf_writer import RECIPES

    llm = family.facts_for(args.model_version).llm_family
    if llm not in RECIPES:
        raise InputError("make-gguf has no recipe for the %s LLM of MiniCPM-V %s yet: pass --model-version with one "
                         "of %s" % (llm, args.model_version, ", ".join(
                             v for v, f in family.VERSIONS.items() if f.llm_family in RECIPES)))

    written = write_gguf(args.out, args.model_version, seed=args.seed, overwrite=args.force, moe=args.moe)
    print("wrote a tiny random %s GGUF (MiniCPM-V %s LLM, n_embd %d, %d tokens) to %s"
          % (written.arch, written.version, written.n_embd, written.n_vocab, written.path))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    layout = read_layout(args.checkpoint, args.model_version)
    from .checkpoint import load_tensors

    ck = load_tensors(layout)
    params = sum(t.numel() for t in ck.tensors.values())
    summary = {"checkpoint": str(ck.path), "version": ck.version, "vision": ck.spec.__dict__,
               "resampler_heads": ck.spec.resampler_heads, "vision_parameters": params,
               "weights_sha256": ck.weights_sha256}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        head = ("merger (window merger after layer %d, %d downsample MLP, config mode %s) D=%d"
                % (ck.spec.insert_layer_id, ck.spec.merger_times, ck.spec.downsample_mode, ck.spec.embed_dim)
                if ck.spec.is_merger else "Resampler Q=%d D=%d (%d heads)"
                % (ck.spec.query_num, ck.spec.embed_dim, ck.spec.resampler_heads))
        print("MiniCPM-V %s at %s: VPM %d layers x width %d, %s, %.1f M vision parameters"
              % (ck.version, ck.path, ck.spec.layers, ck.spec.width, head, params / 1e6))
    return 0


def _export(args: argparse.Namespace) -> int:
    profile, precisions, layout, memory = _check_target(args, lambda profile: args.precision or ["fp32"])
    from .bundle import write_bundle

    ck = _load(layout)
    manifest = write_bundle(ck, args.out, profile, precisions, overwrite=args.force,
                            check=not args.no_check, memory=memory)
    if args.json:
        bundle = Bundle(args.out, manifest)
        graphs = {m: {p: {k: bundle.graph(m, p).raw[k] for k in ("files", "bytes", "opset", "export_seconds",
                                                                   "export_check")}
                      for p in bundle.precisions(m)} for m in MODULES}
        print(json.dumps({"bundle": str(args.out), "version": ck.version, "graphs": graphs,
                          "memory": bundle.target.memory}, indent=2))
    print("bundle written to %s (MiniCPM-V %s, target %s)" % (args.out, ck.version, profile.name),
          file=sys.stderr if args.json else sys.stdout)
    return 0


def _convert_precisions(profile: DeviceProfile) -> List[str]:
    """What convert exports for `profile`; a TensorRT release check-ops (its last step) has no table for is
    refused now rather than after export and calibration."""
    if profile.tensorrt is not None:
        table_release(profile.tensorrt, "set tensorrt in target %s's profile to one of them, or pass --jetpack"
                      % profile.name)
    return precisions_for(profile)


def _convert(args: argparse.Namespace) -> int:
    """Exit 0 with the bundle written, 1 when a step fails on what the converter made, 2 for bad input."""
    if args.verify_images < 1:
        raise InputError("--verify-images must be at least 1, got %d" % args.verify_images)
    settings = _calibration_settings(args)
    profile, _, layout, memory = _check_target(args, _convert_precisions)
    from .convert import ConversionFailed, Plan, convert

    plan = Plan(_load(layout), args.out, profile, memory, settings, args.verify_images, args.force,
                not args.no_check)
    try:
        converted = convert(plan)
    except ConversionFailed as exc:
        print("%s: conversion failed, %s left unchanged: %s" % (PROG, args.out, exc), file=sys.stderr)
        return 1
    bundle, verification = Bundle(args.out, converted.manifest), converted.verification.summary
    summary = {"bundle": str(args.out), "version": bundle.model.version, "target": profile.name,
               "precisions": {m: bundle.precisions(m) for m in MODULES},
               "default_precision": bundle.target.default_precision,
               "mixed_precision": converted.calibrated.mixed_precision if converted.calibrated else None,
               "checks": converted.checks,
               "chain_cosine": {p: v["chain"] for p, v in verification["precisions"].items()},
               "report": verification["report"], "seconds": converted.seconds}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print("bundle %s for %s (MiniCPM-V %s) in %.0f s; default %s; chain token cosine vs torch: %s; report %s"
              % (args.out, profile.name, bundle.model.version, summary["seconds"], summary["default_precision"],
                 ", ".join("%s mean %.5f min %.5f" % (p, c["mean"], c["min"])
                           for p, c in summary["chain_cosine"].items()), args.out / summary["report"]))
    return 0


def _slice_patches(text: str) -> Tuple[int, int]:
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError("--slice %r is not ROWSxCOLS in patches: write e.g. 32x32 for a 448x448 slice"
                         % text) from None
    return rows, cols


def _bench(args: argparse.Namespace) -> int:
    slice_patches = _slice_patches(args.slice)
    layout = read_layout(args.checkpoint, args.model_version)
    bundle = Bundle.load(args.bundle) if args.bundle else None
    from .bench import run_bench

    result = run_bench(args, layout, bundle, slice_patches)
    print(json.dumps(result, indent=2) if args.json else "\n".join("%s: %s" % kv for kv in result.items()))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate_bundle

    calibrated = calibrate_bundle(args.bundle, _calibration_settings(args))
    result: Dict[str, Any] = {m: {k: calibrated.int8[m][k] for k in ("files", "quantized_layers", "kept_float")}
                              for m in MODULES}
    result["mixed_precision"] = calibrated.mixed_precision
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        cosine = calibrated.mixed_precision["token_cosine"]
        print("int8 graphs written to %s: token cosine mean %.5f min %.5f (target %g / %g) %s"
              % (args.bundle, cosine["mean"], cosine["min"], args.target_cosine, args.min_cosine,
                 "met" if calibrated.met else "NOT met"))
    return 0


def _check_ops(args: argparse.Namespace) -> int:
    """Exit 0 when every graph would parse (and, with --build, parses and builds), 1 when some would not (offending
    nodes listed), 2 for bad input."""
    from .build_check import build_check_bundle, format_build_report, require_builder
    from .check_ops import check_bundle, format_report

    if args.trt:
        table_release(args.trt)  # refused before the bundle is read and hashed
    trt = require_builder() if args.build else None
    bundle = Bundle.load(args.bundle)
    tensorrt = args.trt or bundle.target.tensorrt
    if tensorrt is None:
        raise InputError("bundle %s targets %s, which has no TensorRT: pass --trt RELEASE (e.g. --trt 10.3)"
                         % (args.bundle, bundle.target.profile))
    report = check_bundle(bundle, str(tensorrt))
    if trt is not None:
        report["build"] = build_check_bundle(bundle, trt, log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report, args.bundle))
        if trt is not None:
            print(format_build_report(report["build"], args.bundle))
    return 0 if report["passed"] and report.get("build", {}).get("passed", True) else 1


def _verify(args: argparse.Namespace) -> int:
    from .calibration_data import check_source
    from .verify import format_table, verify_bundle

    check_source(args.data, args.images)
    result = verify_bundle(args.bundle, args.checkpoint, args.images, args.data, args.report).summary
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def _export_video(args: argparse.Namespace) -> int:
    """Exit 0 with the grouped graph listed in the bundle, 2 for bad input (not a 4.5 bundle, another checkpoint)."""
    bundle = Bundle.load(args.bundle)
    layout = read_layout(args.checkpoint, args.model_version)
    if bundle.model.version != "4.5" or layout.facts.version != "4.5":
        raise InputError("export-video takes a MiniCPM-V 4.5 bundle and checkpoint (got bundle %s, checkpoint %s): "
                         "only 4.5 has the grouped video Resampler" % (bundle.model.version, layout.facts.version))
    from .video_export import add_video_graphs

    manifest = add_video_graphs(args.bundle, _load(layout), args.precision or ["fp32"],
                                log=lambda message: print(message, file=sys.stderr))
    print("grouped video Resampler (%s) added to %s" % (", ".join(manifest["video"]["graphs"]), args.bundle))
    return 0


COMMANDS = {"make-checkpoint": _make_checkpoint, "make-gguf": _make_gguf, "inspect": _inspect, "export": _export,
            "bench": _bench, "calibrate": _calibrate, "check-ops": _check_ops, "convert": _convert, "verify": _verify,
            "export-video": _export_video}


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: one clear line and exit code 2 for bad input."""
    return run(_parser(), COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
