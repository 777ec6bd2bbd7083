"""TensorRT calibration caches (text) for the implicit-INT8 fallback on 8.x / 10.x.

Format: a header ``TRT-<version>-EntropyCalibration2`` (version = major*1000 + minor*100 + patch on 8.x, e.g.
8502; major*10000 + minor*100 + patch on 10.x, e.g. 100300), then ``tensor: <hex of the float32 scale>`` per
tensor, where the dynamic range is scale * 127. TensorRT ignores a cache whose header does not match it.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Dict

from edge.fsutil import atomic_write_text

# The patch release each JetPack ships (a cache is matched on the full version).
JETPACK_PATCH = {"8.5": 2, "8.6": 2}


def cache_version(tensorrt: str) -> int:
    """The number TensorRT writes in a cache header for `tensorrt` (e.g. "8.5" -> 8502, "10.3" -> 100300)."""
    parts = [int(p) for p in tensorrt.split(".")]
    major, minor = parts[0], parts[1]
    patch = parts[2] if len(parts) > 2 else JETPACK_PATCH.get("%d.%d" % (major, minor), 0)
    if major >= 10:
        return major * 10000 + minor * 100 + patch
    return major * 1000 + minor * 100 + patch


def write_calibration_cache(path: Path, amax: Dict[str, float], tensorrt: str) -> None:
    """One line per tensor with its scale amax / 127 as the big-endian hex of a float32."""
    lines = ["TRT-%d-EntropyCalibration2" % cache_version(tensorrt)]
    for name, value in sorted(amax.items()):
        lines.append("%s: %s" % (name, struct.pack(">f", max(value, 1e-12) / 127.0).hex()))
    atomic_write_text(path, "\n".join(lines) + "\n")
