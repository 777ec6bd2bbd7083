"""``minicpmv-convert convert``: export -> calibrate -> check-ops -> verify, one module at a time, in one command.

Everything happens in a staging directory beside the output, which replaces the output only when every step has
passed, so a failed conversion leaves nothing half-written. The bundle carries every precision its target needs:
fp32 (the calibration and verification base), fp16, and int8 on Jetson targets (whose default is int8); fp32 on a
host without TensorRT.

Each step hands the next what it holds: the checkpoint's tensors and the torch modules built once (export and
verify share them), and the manifest as a `Bundle` view of the staging directory (no step reads it back from disk
or hashes a file). The manifest is written once, at the end, when it lists every file of the bundle.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from edge.bundle.manifest import Bundle, write_manifest
from edge.device.profiles import DeviceProfile
from edge.fsutil import atomic_directory

from .build_check import RTX_WHEELS, build_check_bundle, format_build_report, import_builder
from .bundle import export_graphs
from .calibrate import Calibrated, calibrate
from .calibration_settings import Settings
from .check_ops import check_bundle, format_report
from .checkpoint import VisionCheckpoint
from .export import build_modules
from .targets import precisions_for
from .verify import Verification, verify


class ConversionFailed(Exception):
    """A step found a problem in what the converter itself produced (not bad input): exit 1."""


@dataclass
class Plan:
    """What to convert and how (the CLI's flags)."""

    checkpoint: VisionCheckpoint
    out: Path
    profile: DeviceProfile
    memory: Dict[str, Any]
    calibration: Settings
    verify_images: int = 4
    force: bool = False
    check: bool = True


@dataclass
class Converted:
    """What convert published: the manifest as written, and what each step found."""

    manifest: Dict[str, Any]
    calibrated: Optional[Calibrated]  # None on a target that does not run int8
    checks: Optional[Dict[str, Any]]  # the manifest's `checks`; None on a target without TensorRT
    verification: Verification
    seconds: float


def convert(plan: Plan, log: Optional[Callable[[str], None]] = None) -> Converted:
    """Run every step. Raises ConversionFailed when check-ops or the accuracy targets fail (the output is then
    left as it was)."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    start = time.perf_counter()
    int8 = plan.profile.default_precision == "int8"
    steps = 4 if int8 else 3
    staged = "%s (staged; published there when every step has passed)" % plan.out
    with atomic_directory(plan.out, overwrite=plan.force) as staging:
        precisions = precisions_for(plan.profile)
        log("[step 1/%d] export %s of %s" % (steps, ", ".join(precisions), staged))
        modules = build_modules(plan.checkpoint, plan.profile.max_patches)
        manifest = export_graphs(plan.checkpoint, modules, staging, plan.profile, precisions, plan.check, log=log,
                                 memory=plan.memory)
        calibrated = None
        if int8:
            log("[step 2/%d] calibrate int8 (%s)" % (steps, plan.calibration.method))
            calibrated = calibrate(Bundle(staging, manifest), plan.calibration, log)
            if not calibrated.met:
                cosine = calibrated.mixed_precision["token_cosine"]
                raise ConversionFailed("int8 tokens reach cosine mean %.5f / min %.5f, short of the targets %g / %g "
                                       "even with every layer float" % (cosine["mean"], cosine["min"],
                                                                        plan.calibration.target_cosine,
                                                                        plan.calibration.min_cosine))
            manifest = calibrated.manifest
        checks = _check_ops(Bundle(staging, manifest), plan.profile, staged, steps - 1, steps, log)
        if checks is not None:
            manifest = dict(manifest, checks=checks)
        log("[step %d/%d] verify on %d held-out images" % (steps, steps, plan.verify_images))
        verification = verify(Bundle(staging, manifest), plan.checkpoint, modules, plan.verify_images, log=log)
        seconds = round(time.perf_counter() - start, 1)
        manifest = write_manifest(staging, dict(manifest, verification=verification.summary,
                                                conversion_seconds=seconds))
    return Converted(manifest, calibrated, checks, verification, seconds)


def _check_ops(bundle: Bundle, profile: DeviceProfile, shown: str, step: int, steps: int,
               log: Callable[[str], None]) -> Optional[Dict[str, Any]]:
    """check-ops against the target's TensorRT, then check-ops --build where a TensorRT builder is importable: the
    manifest's `checks` entry (None without TensorRT); a failure stops the conversion."""
    if profile.tensorrt is None:
        log("[step %d/%d] check-ops skipped: %s has no TensorRT" % (step, steps, profile.name))
        return None
    log("[step %d/%d] check-ops against TensorRT %s" % (step, steps, profile.tensorrt))
    report = check_bundle(bundle, profile.tensorrt)
    log(format_report(report, shown))
    if not report["passed"]:
        raise ConversionFailed("check-ops found nodes TensorRT %s would refuse (listed above)" % profile.tensorrt)
    checks = {"tensorrt_ops": {report["tensorrt"]: {"table": report["table"], "passed": True,
                                                    "graphs": sorted(report["graphs"])}}}
    trt = import_builder()
    if trt is None:
        log("check-ops --build skipped: no TensorRT builder is importable (pip install %s)" % RTX_WHEELS)
        return checks
    built = build_check_bundle(bundle, trt, log=log)
    log(format_build_report(built, shown))
    if not built["passed"]:
        raise ConversionFailed("%s could not parse or build every graph (listed above)" % built["builder"])
    graphs = {file: {k: g[k] for k in ("seconds", "engine_bytes", "workspace_bytes")}
              for file, g in built["graphs"].items()}
    return dict(checks, tensorrt_build=dict(builder=built["builder"], compute_capability=built["compute_capability"],
                                            passed=True, graphs=graphs))
