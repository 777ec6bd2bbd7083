"""`minicpmv-edge doctor`: is this box ready to run the agent? Each check says what it found and, when something
is wrong, the fix. Checks never raise: a probe that fails becomes a finding.
"""
from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from ..camera.pipelines import opencv_has_gstreamer
from ..device.facts import l4t_release, module_model

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_FREE_BYTES = 4 << 30  # engines of a full-size bundle plus room to rebuild them


class Finding(NamedTuple):
    check: str
    status: str
    found: str
    fix: str = ""


def _module_version(name: str) -> Optional[str]:
    try:
        module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return None
    return str(getattr(module, "__version__", "present"))


def check_platform() -> List[Finding]:
    l4t, model = l4t_release(), module_model()
    found = "%s, L4T %s" % (model, l4t) if l4t else "not a Jetson (no /etc/nv_tegra_release)"
    status = OK if l4t else WARN
    python = "%d.%d" % sys.version_info[:2]
    py_ok = (3, 8) <= sys.version_info[:2] <= (3, 12)
    return [Finding("jetson", status, found, "" if l4t else "TensorRT engines need a Jetson; ONNX Runtime runs here"),
            Finding("python", OK if py_ok else WARN, python,
                    "" if py_ok else "JetPack's TensorRT and OpenCV are built for its system Python (3.8-3.12)")]


def check_libraries(version: Callable[[str], Optional[str]] = _module_version) -> List[Finding]:
    findings = []
    for name, label, fix, missing_status in (
            ("tensorrt", "TensorRT", "use JetPack's python3 or a venv made with --system-site-packages", WARN),
            ("pycuda", "pycuda", "pip install pycuda (builds against JetPack's CUDA in a few minutes)", WARN),
            ("onnxruntime", "ONNX Runtime", "pip install onnxruntime (the portable backend)", FAIL),
            ("numpy", "numpy", "pip install numpy", FAIL),
            ("jtop", "jetson-stats", "sudo pip3 install jetson-stats, then sudo jtop --install-service", WARN)):
        found = version(name)
        findings.append(Finding(label, OK if found else missing_status, found or "missing", "" if found else fix))
    return findings


def check_opencv(build_info: Optional[Callable[[], str]] = None) -> Finding:
    try:
        import cv2

        info = (build_info or cv2.getBuildInformation)()
    except Exception:  # noqa: BLE001
        return Finding("OpenCV", WARN, "missing", "use JetPack's python3-opencv (has GStreamer) for cameras")
    if opencv_has_gstreamer(info):
        return Finding("OpenCV", OK, "%s with GStreamer" % cv2.__version__)
    return Finding("OpenCV", WARN, "%s without GStreamer" % cv2.__version__,
                   "CSI/RTSP cameras need GStreamer: use JetPack's OpenCV through a venv made with "
                   "--system-site-packages, and do not pip-install opencv-python over it")


def check_cameras(dev: Path = Path("/dev")) -> Finding:
    videos = sorted(p.name for p in dev.glob("video*")) if dev.is_dir() else []
    argus = Path("/tmp/argus_socket").exists()
    found = ", ".join(videos) or "no /dev/video*"
    if argus:
        found += "; nvargus-daemon socket present"
    return Finding("cameras", OK if videos else WARN, found,
                   "" if videos else "connect a camera, or run from a video file or image folder")


def check_jtop_service(socket: Path = Path("/run/jtop.sock")) -> Finding:
    if socket.exists():
        return Finding("jtop service", OK, str(socket))
    return Finding("jtop service", WARN, "no %s" % socket, "sudo jtop --install-service (monitoring runs degraded)")


def check_cache(cache_dir: Path) -> Finding:
    """The engine cache: a writable directory with room for engines (a missing one is made by the first build
    where its nearest existing parent is writable)."""
    if cache_dir.exists() and not cache_dir.is_dir():
        return Finding("engine cache", FAIL, "%s is not a directory" % cache_dir,
                       "remove it, or pass --cache-dir with a directory")
    probe = cache_dir if cache_dir.exists() else next((p for p in cache_dir.parents if p.exists()), Path("/"))
    writable = os.access(str(probe), os.W_OK)
    free = "%.1f GiB free" % (shutil.disk_usage(str(probe)).free / (1 << 30))
    if not cache_dir.exists():
        found = "%s does not exist; %s is %swritable, %s" % (cache_dir, probe, "" if writable else "not ", free)
        if not writable:
            return Finding("engine cache", FAIL, found, "create it writable for the service user (sudo mkdir -p %s "
                           "&& sudo chown <service user> %s), or pass --cache-dir" % (cache_dir, cache_dir))
        return Finding("engine cache", WARN, found, "the first build creates it (as the user who runs the build: "
                       "create it for the service user beforehand)")
    found = "%s (%s), %s" % (cache_dir, "writable" if writable else "not writable", free)
    if not writable:
        return Finding("engine cache", FAIL, found, "make it writable for the service user, or pass --cache-dir")
    if shutil.disk_usage(str(probe)).free < MIN_FREE_BYTES:
        return Finding("engine cache", WARN, found, "free disk space: engines and rebuilds need about 4 GiB")
    return Finding("engine cache", OK, found)


def check_preprocessing(probe: Optional[Callable[[], Any]] = None) -> Finding:
    """Which preprocessing path `resize: auto` takes on this box, and why (docs/preprocessing.md)."""
    from ..preprocess.device.selection import device_support

    support = (probe or device_support)()
    if support.ready:
        return Finding("preprocessing", OK, "device (resize: auto or device): %s" % support.found)
    return Finding("preprocessing", WARN, "exact on the CPU (resize: auto); device unavailable: %s" % support.found,
                   "for device preprocessing: %s" % support.fix)


def run_checks(cache_dir: Path) -> List[Finding]:
    return (check_platform() + check_libraries() + [check_opencv(), check_cameras(), check_jtop_service(),
                                                    check_cache(cache_dir), check_preprocessing()])


def summary(findings: List[Finding]) -> Dict[str, Any]:
    return {"findings": [f._asdict() for f in findings],
            "failed": sum(f.status == FAIL for f in findings), "warnings": sum(f.status == WARN for f in findings)}


def format_findings(findings: List[Finding]) -> str:
    lines = ["%-4s %-14s %s%s" % (f.status.upper(), f.check, f.found, "\n" + " " * 20 + "fix: " + f.fix if f.fix
                                  else "") for f in findings]
    failed = sum(f.status == FAIL for f in findings)
    lines.append("%d problems, %d warnings" % (failed, sum(f.status == WARN for f in findings)))
    return "\n".join(lines)
