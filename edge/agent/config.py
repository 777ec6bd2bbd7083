"""The agent's YAML config (`minicpmv-edge run --config agent.yaml`), checked up front: one clear line per mistake.

    bundle: /opt/minicpmv-edge/bundle
    camera: {kind: csi, sensor_id: 0, width: 1920, height: 1080, fps: 30}   # see edge.camera.CameraConfig
    backend: {vpm: tensorrt, resampler: tensorrt}                          # or onnxruntime, per module
    precision: {vpm: null, resampler: null}                                # null: the bundle target's default
    resize: fast                                                           # exact | fast
    max_slice_nums: null                                                   # null: the bundle's
    reuse: {enabled: true, threshold: 2.0, max_reuse_age_s: 10}            # see edge.frame_reuse.FrameReuse
    sink: {kind: npy, directory: /var/lib/minicpmv-edge/tokens, keep: 100}
    engine_cache: /var/cache/minicpmv-edge/engines
    max_frames: null                                                       # stop after N frames (null: run on)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from ..engines.base import BACKENDS
from ..errors import InputError
from ..preprocess.resize import MODES

KEYS = ("bundle", "camera", "backend", "precision", "resize", "max_slice_nums", "reuse", "sink", "engine_cache",
        "max_frames")


@dataclass
class AgentConfig:
    bundle: Path
    camera: Dict[str, Any]
    backend: Dict[str, str] = field(default_factory=lambda: {"vpm": "onnxruntime", "resampler": "onnxruntime"})
    precision: Dict[str, Optional[str]] = field(default_factory=lambda: {"vpm": None, "resampler": None})
    resize: str = "exact"
    max_slice_nums: Optional[int] = None
    reuse: Dict[str, Any] = field(default_factory=lambda: {"enabled": True})
    sink: Dict[str, Any] = field(default_factory=lambda: {"kind": "npy", "directory": "tokens", "keep": 100})
    engine_cache: Path = Path("/var/cache/minicpmv-edge/engines")
    max_frames: Optional[int] = None


def _per_module(value: Any, name: str, path: Path) -> Dict[str, Any]:
    if isinstance(value, dict):
        unknown = set(value) - {"vpm", "resampler"}
        if unknown:
            raise InputError("%s: %s has unknown module %s: use vpm and resampler" % (path, name, sorted(unknown)[0]))
        return {"vpm": value.get("vpm"), "resampler": value.get("resampler")}
    return {"vpm": value, "resampler": value}


def load_agent_config(path: Path) -> AgentConfig:
    """Read and check the config; relative paths are taken from the config file's folder."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError("cannot read agent config %s (%s): pass --config with a YAML file" % (path, exc)) from exc
    except yaml.YAMLError as exc:
        raise InputError("%s is not valid YAML (%s): fix the file" % (path, str(exc).splitlines()[0])) from exc
    if not isinstance(data, dict):
        raise InputError("%s must be a YAML mapping with at least bundle: and camera:" % path)
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise InputError("%s: unknown key %r (known: %s)" % (path, unknown[0], ", ".join(KEYS)))
    for key in ("bundle", "camera"):
        if key not in data:
            raise InputError("%s has no %s: add it (see the README's agent section)" % (path, key))
    base = path.parent
    config = AgentConfig(bundle=base / data["bundle"], camera=dict(data["camera"]))
    config.backend = _per_module(data.get("backend", "onnxruntime"), "backend", path)
    if any(b not in BACKENDS for b in config.backend.values()):
        raise InputError("%s: backend must be one of %s per module" % (path, ", ".join(BACKENDS)))
    config.precision = _per_module(data.get("precision"), "precision", path)
    config.resize = data.get("resize", "exact")
    if config.resize not in MODES:
        raise InputError("%s: resize must be one of %s" % (path, ", ".join(MODES)))
    config.max_slice_nums = data.get("max_slice_nums")
    config.reuse = dict(data.get("reuse") or {"enabled": False})
    config.sink = dict(data.get("sink") or config.sink)
    if config.sink.get("kind") != "npy":
        raise InputError("%s: sink kind must be npy (the token stream arrives with a later release)" % path)
    config.sink["directory"] = str(base / config.sink.get("directory", "tokens"))
    config.engine_cache = base / data.get("engine_cache", str(config.engine_cache))
    config.max_frames = data.get("max_frames")
    if "path" in config.camera and not Path(str(config.camera["path"])).is_absolute():
        config.camera["path"] = str(base / config.camera["path"])  # file or folder sources
    return config
