"""``minicpmv-convert convert``: export -> calibrate -> check-ops -> verify, one module at a time, in one command.

Everything happens in a staging directory beside the output, which replaces the output only when every step has
passed, so a failed conversion leaves nothing half-written. The bundle carries every precision its target needs:
fp32 (the calibration and verification base), fp16, and int8 on Jetson targets (whose default is int8); fp32 on a
host without TensorRT.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from edge.bundle.manifest import Bundle, write_manifest
from edge.device.profiles import DeviceProfile
from edge.fsutil import atomic_directory

from .bundle import write_bundle
from .calibrate import Settings, calibrate_bundle
from .check_ops import check_bundle, format_report
from .checkpoint import VisionCheckpoint
from .verify import verify_bundle


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


def precisions_for(profile: DeviceProfile) -> List[str]:
    """The float precisions to export: int8 is added by calibration where the target runs int8."""
    return ["fp32", "fp16"] if profile.tensorrt is not None else ["fp32"]


def convert(plan: Plan, log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Run every step; returns the final manifest. Raises ConversionFailed when check-ops or the accuracy
    targets fail (the output is then left as it was)."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    start = time.perf_counter()
    with atomic_directory(plan.out, overwrite=plan.force) as staging:
        steps = 4 if plan.profile.default_precision == "int8" else 3
        log("[step 1/%d] export %s" % (steps, ", ".join(precisions_for(plan.profile))))
        write_bundle(plan.checkpoint, staging, plan.profile, precisions_for(plan.profile), overwrite=True,
                     check=plan.check, memory=plan.memory, log=log)
        step = 2
        if plan.profile.default_precision == "int8":
            log("[step 2/%d] calibrate int8 (%s)" % (steps, plan.calibration.method))
            manifest = calibrate_bundle(staging, plan.calibration, log)
            if not manifest["mixed_precision"]["met"]:
                raise ConversionFailed("int8 tokens reach cosine mean %.5f / min %.5f, short of the targets %g / %g "
                                       "even with every layer float" % (
                                           manifest["mixed_precision"]["token_cosine"]["mean"],
                                           manifest["mixed_precision"]["token_cosine"]["min"],
                                           plan.calibration.target_cosine, plan.calibration.min_cosine))
            step = 3
        _check_ops(staging, plan.profile, step, steps, log)
        log("[step %d/%d] verify on %d held-out images" % (steps, steps, plan.verify_images))
        verify_bundle(staging, plan.checkpoint.path, plan.verify_images, log=log)
        manifest = Bundle.load(staging).manifest
        manifest["conversion_seconds"] = round(time.perf_counter() - start, 1)
        manifest = write_manifest(staging, manifest)
    return manifest


def _check_ops(path: Path, profile: DeviceProfile, step: int, steps: int, log: Callable[[str], None]) -> None:
    """check-ops against the target's TensorRT, recorded in the manifest; a failure stops the conversion."""
    if profile.tensorrt is None:
        log("[step %d/%d] check-ops skipped: %s has no TensorRT" % (step, steps, profile.name))
        return
    log("[step %d/%d] check-ops against TensorRT %s" % (step, steps, profile.tensorrt))
    bundle = Bundle.load(path)
    report = check_bundle(bundle, profile.tensorrt)
    log(format_report(report, path))
    if not report["passed"]:
        raise ConversionFailed("check-ops found nodes TensorRT %s would refuse (listed above)" % profile.tensorrt)
    checks = dict(bundle.manifest.get("checks") or {})
    checks["tensorrt_ops"] = {report["tensorrt"]: {"table": report["table"], "passed": True,
                                                   "graphs": sorted(report["graphs"])}}
    write_manifest(path, dict(bundle.manifest, checks=checks))
