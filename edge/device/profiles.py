"""Device profiles: the facts about one target (Jetson module or development host) that sizing and builds use.

A profile is a YAML file under ``configs/devices/<name>.yaml`` (or any path given by the user). Every field
is required and typed; units are in the names (``*_bytes``, ``*_gbps``). Version numbers (TensorRT, CUDA,
JetPack, L4T, Python, compute capability) are strings, so that "3.10" does not become the float 3.1.
"""
from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import yaml

from ..errors import InputError

PRECISIONS = ("fp32", "fp16", "int8")
PROFILE_SUFFIXES = (".yaml", ".yml")
_VERSION_RE = re.compile(r"^\d+(\.\d+)+$")

# Highest ONNX opset each onnx-tensorrt parser accepts, from the first release of each row on. A release
# between two rows gets the lower row's ceiling: it is the one known to hold.
_OPSET_CEILINGS = (
    ((8, 5), 17),
    ((10, 0), 20),
    ((10, 16), 24),
)
_OLDEST_TENSORRT = (8, 5)  # JetPack 5.1; older releases are not targets
_DEFAULT_ONNX_OPSET = 17  # TensorRT-LLM exports its vision engines at 17; every target from 8.6 on parses it
_OPSET_WITHOUT_LAYERNORM = 16  # TensorRT 8.5 lacks LayerNormalization: at opset 16 the exporter decomposes it


@dataclass(frozen=True)
class JetPackRelease:
    """What one JetPack release ships: the versions a profile records for its device."""

    jetpack: str
    l4t: str
    cuda: str
    tensorrt: str
    python: str  # the system Python that carries JetPack's tensorrt module


# JetPack -> L4T, CUDA, TensorRT, system Python (docs/tensorrt.md versions; docs/jetson.md "Software on the device").
# L4T is the release each JetPack shipped first (5.1 = 35.2.1, 7.0 = 38.2); later point releases keep the same
# CUDA and TensorRT minor versions.
JETPACKS: Dict[str, JetPackRelease] = {
    r.jetpack: r
    for r in (
        JetPackRelease("5.1", "35.2", "11.4", "8.5", "3.8"),
        JetPackRelease("6.0", "36.3", "12.2", "8.6", "3.10"),
        JetPackRelease("6.1", "36.4", "12.6", "10.3", "3.10"),
        JetPackRelease("6.2", "36.4", "12.6", "10.3", "3.10"),
        JetPackRelease("7.0", "38.2", "13.0", "10.13", "3.12"),
    )
}
# SoC -> the JetPack releases of JETPACKS that run on it. Xavier stops at JetPack 5; JetPack 7.0 is Thor's
# (JetPack 7.2 brings Orin; the table leaves it out, as the project's TensorRT notes fix no versions for it).
_SOC_JETPACKS = {
    "t194": ("5.1",),
    "t234": ("5.1", "6.0", "6.1", "6.2"),
    "t264": ("7.0",),
}
_SOC_NAMES = {"t194": "Xavier", "t234": "Orin", "t264": "Thor"}


def _version_tuple(version: str, what: str) -> Tuple[int, int]:
    """(major, minor) of a dotted version string such as "8.5", "10.3.0.30"."""
    if not isinstance(version, str) or not _VERSION_RE.match(version.strip()):
        raise InputError("bad %s version %r: write it as a dotted string such as \"10.3\"" % (what, version))
    parts = version.strip().split(".")
    return int(parts[0]), int(parts[1])


def _tensorrt_release(tensorrt_version: str) -> Tuple[int, int]:
    """(major, minor) of a supported TensorRT release."""
    version = _version_tuple(tensorrt_version, "TensorRT")
    if version < _OLDEST_TENSORRT:
        raise InputError("TensorRT %s is not supported: targets start at TensorRT 8.5 (JetPack 5.1); "
                         "upgrade JetPack" % tensorrt_version)
    return version


def onnx_opset_for(tensorrt_version: Optional[str]) -> int:
    """ONNX opset to export for a TensorRT release (None: no TensorRT, e.g. ONNX Runtime on a host).

    16 for TensorRT 8.5, which has no LayerNormalization op; 17 for 8.6 and every later release.
    """
    if tensorrt_version is None:
        return _DEFAULT_ONNX_OPSET
    if _tensorrt_release(tensorrt_version) < (8, 6):
        return _OPSET_WITHOUT_LAYERNORM
    return _DEFAULT_ONNX_OPSET


def tensorrt_opset_ceiling(tensorrt_version: Optional[str]) -> Optional[int]:
    """Highest ONNX opset the TensorRT release's ONNX parser accepts; None when there is no TensorRT."""
    if tensorrt_version is None:
        return None
    version = _tensorrt_release(tensorrt_version)
    ceiling = _OPSET_CEILINGS[0][1]
    for first_release, opset in _OPSET_CEILINGS:
        if version >= first_release:
            ceiling = opset
    return ceiling


@dataclass(frozen=True)
class DeviceProfile:
    """One target device, as loaded from its YAML profile."""

    name: str
    description: str
    module: Optional[str]  # P-number, e.g. "p3767-0003"; None for a development host
    soc: str
    ram_bytes: int
    memory_bandwidth_gbps: float
    compute_capability: Optional[str]  # "8.7" Orin, "7.2" Xavier, "11.0" Thor; None without a GPU target
    dla_cores: int
    jetpack: Optional[str]
    l4t: Optional[str]
    cuda: Optional[str]
    tensorrt: Optional[str]  # the JetPack's TensorRT release, e.g. "10.3"; None: ONNX Runtime only
    python: str  # the system Python the device side runs on, e.g. "3.10"
    default_precision: str  # one of PRECISIONS
    vision_memory_budget_bytes: int  # for the vision engines (weights + activations), out of unified memory
    os_reserve_bytes: int  # left to the OS and services
    max_slices: int  # max_slice_nums the device can afford
    max_batch: int  # slices per engine call
    max_patches: int  # largest patch count per slice the engines accept
    workspace_bytes: int  # TensorRT builder workspace limit
    power_modes: Tuple[str, ...]  # nvpmodel mode names
    default_power_mode: Optional[str]  # one of power_modes; None when power_modes is empty

    @property
    def onnx_opset(self) -> int:
        """ONNX opset to export for this device's TensorRT."""
        return onnx_opset_for(self.tensorrt)

    @property
    def opset_ceiling(self) -> Optional[int]:
        """Highest ONNX opset this device's TensorRT parses; None without TensorRT."""
        return tensorrt_opset_ceiling(self.tensorrt)

    @property
    def is_jetson(self) -> bool:
        """True for a Jetson module (it has a JetPack release)."""
        return self.jetpack is not None

    @property
    def llm_memory_bytes(self) -> int:
        """Unified memory left for the LLM and the agent once the OS and vision shares are taken."""
        return self.ram_bytes - self.os_reserve_bytes - self.vision_memory_budget_bytes

    def to_dict(self) -> Dict[str, Any]:
        """Plain dict (lists, not tuples) in field order, e.g. for a bundle manifest or --json output."""
        result = {f.name: getattr(self, f.name) for f in fields(self)}
        result["power_modes"] = list(self.power_modes)
        return result


# Field name -> (accepted Python types, may be null). bool is rejected wherever int is expected.
_FIELD_TYPES = {
    "name": ((str,), False),
    "description": ((str,), False),
    "module": ((str,), True),
    "soc": ((str,), False),
    "ram_bytes": ((int,), False),
    "memory_bandwidth_gbps": ((int, float), False),
    "compute_capability": ((str,), True),
    "dla_cores": ((int,), False),
    "jetpack": ((str,), True),
    "l4t": ((str,), True),
    "cuda": ((str,), True),
    "tensorrt": ((str,), True),
    "python": ((str,), False),
    "default_precision": ((str,), False),
    "vision_memory_budget_bytes": ((int,), False),
    "os_reserve_bytes": ((int,), False),
    "max_slices": ((int,), False),
    "max_batch": ((int,), False),
    "max_patches": ((int,), False),
    "workspace_bytes": ((int,), False),
    "power_modes": ((list,), False),
    "default_power_mode": ((str,), True),
}
_VERSION_FIELDS = ("compute_capability", "jetpack", "l4t", "cuda", "tensorrt", "python")
_POSITIVE_FIELDS = ("ram_bytes", "memory_bandwidth_gbps", "vision_memory_budget_bytes", "os_reserve_bytes",
                    "max_slices", "max_batch", "max_patches", "workspace_bytes")
assert set(_FIELD_TYPES) == {f.name for f in fields(DeviceProfile)}, "_FIELD_TYPES differs from DeviceProfile"


def profiles_dir() -> Path:
    """Folder of the shipped profiles: configs/devices beside edge/ (a checkout, or both installed side by
    side), else the installed `configs` package's data."""
    beside = Path(__file__).resolve().parents[2] / "configs" / "devices"
    if beside.is_dir():
        return beside
    spec = importlib.util.find_spec("configs")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "devices"
            if candidate.is_dir():
                return candidate
    return beside


def list_profiles() -> List[str]:
    """Names of the shipped profiles, sorted."""
    folder = profiles_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix == ".yaml" and p.is_file())


def _looks_like_path(name_or_path: Union[str, os.PathLike[str]]) -> bool:
    if not isinstance(name_or_path, str):
        return True
    return "/" in name_or_path or os.sep in name_or_path or name_or_path.endswith(PROFILE_SUFFIXES)


def load_profile(name_or_path: Union[str, os.PathLike[str]], jetpack: Optional[str] = None) -> DeviceProfile:
    """Load a shipped profile by name (e.g. "orin-nano-8gb") or any profile YAML by path.

    `jetpack` (e.g. "6.0") describes the module under another JetPack release it can run: see `with_jetpack`.
    """
    if _looks_like_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise InputError("profile file %s does not exist: pass an existing profile YAML or a target name "
                             "(%s)" % (path, ", ".join(list_profiles())))
    else:
        path = profiles_dir() / (name_or_path + ".yaml")
        if not path.is_file():
            raise InputError("unknown target %r: choose one of %s, or pass a path to a profile YAML"
                             % (name_or_path, ", ".join(list_profiles()) or "(no profiles shipped)"))
    profile = _load_file(path)
    return profile if jetpack is None else with_jetpack(profile, jetpack)


def with_jetpack(profile: DeviceProfile, jetpack: str) -> DeviceProfile:
    """`profile` under another JetPack release: jetpack, l4t, cuda, tensorrt and python taken from JETPACKS.

    "6.2.1" means 6.2 (point releases keep the TensorRT minor). Refused with an InputError: a target that is not a
    Jetson, a release missing from JETPACKS, and a release the module's SoC cannot run (Xavier: 5.1; Orin: 5.1,
    6.0, 6.1, 6.2; Thor: 7.0). Other fields (power modes, budgets) stay as the profile gives them.
    """
    text = str(jetpack).strip()
    if not _VERSION_RE.match(text):
        raise InputError("bad JetPack version %r: write it as a dotted string such as \"6.0\"" % (jetpack,))
    release = "%d.%d" % _version_tuple(text, "JetPack")
    if release not in JETPACKS:
        raise InputError("JetPack %s is not a supported release: choose one of %s"
                         % (text, ", ".join(JETPACKS)))
    if not profile.is_jetson:
        raise InputError("target %s is not a Jetson module: --jetpack applies to Jetson targets only" % profile.name)
    supported = _SOC_JETPACKS.get(profile.soc)
    if supported is None:
        raise InputError("target %s has SoC %r, which the JetPack table does not know: set jetpack, l4t, cuda, "
                         "tensorrt and python in its profile YAML instead" % (profile.name, profile.soc))
    if release not in supported:
        raise InputError("target %s (%s) cannot run JetPack %s: choose one of %s"
                         % (profile.name, _SOC_NAMES[profile.soc], text, ", ".join(supported)))
    if release == profile.jetpack:
        return profile
    versions = JETPACKS[release]
    return replace(profile, jetpack=versions.jetpack, l4t=versions.l4t, cuda=versions.cuda,
                   tensorrt=versions.tensorrt, python=versions.python,
                   description=re.sub(r"JetPack [0-9.]+", "JetPack " + release, profile.description))


def _load_file(path: Path) -> DeviceProfile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError("cannot read profile %s (%s): check the path and its permissions"
                         % (path, getattr(error, "strerror", None) or error)) from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = " at line %d, column %d" % (mark.line + 1, mark.column + 1) if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise InputError("profile %s is not valid YAML%s (%s): fix the syntax"
                         % (path, where, problem)) from error
    if not isinstance(data, dict):
        raise InputError("profile %s must be a YAML mapping of field: value, got %s: see "
                         "configs/devices/*.yaml" % (path, type(data).__name__))
    return _from_mapping(data, path)


def _from_mapping(data: Dict[Any, Any], path: Path) -> DeviceProfile:
    unknown = sorted(str(key) for key in data if key not in _FIELD_TYPES)
    if unknown:
        raise InputError("profile %s has unknown field(s) %s: remove them or fix their spelling"
                         % (path, ", ".join(unknown)))
    missing = [key for key in _FIELD_TYPES if key not in data]
    if missing:
        raise InputError("profile %s lacks field(s) %s: add them (see configs/devices/*.yaml)"
                         % (path, ", ".join(missing)))
    for key, (types, nullable) in _FIELD_TYPES.items():
        value = data[key]
        if value is None and nullable:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types) + (" or null" if nullable else "")
            hint = " (quote version numbers, e.g. \"3.10\")" if key in _VERSION_FIELDS else ""
            raise InputError("profile %s: field %r must be %s, got %r%s" % (path, key, expected, value, hint))
    for key in _VERSION_FIELDS:
        if data[key] is not None and not _VERSION_RE.match(data[key]):
            raise InputError("profile %s: field %r is %r: write a dotted version string such as \"10.3\""
                             % (path, key, data[key]))
    for key in _POSITIVE_FIELDS:
        if data[key] <= 0:
            raise InputError("profile %s: field %r must be positive, got %r" % (path, key, data[key]))
    if data["dla_cores"] < 0:
        raise InputError("profile %s: field 'dla_cores' must be 0 or more, got %r"
                         % (path, data["dla_cores"]))
    if data["default_precision"] not in PRECISIONS:
        raise InputError("profile %s: field 'default_precision' is %r: choose one of %s"
                         % (path, data["default_precision"], ", ".join(PRECISIONS)))
    modes = data["power_modes"]
    if not all(isinstance(mode, str) for mode in modes):
        raise InputError("profile %s: field 'power_modes' must be a list of mode names (strings), got %r"
                         % (path, modes))
    default_mode = data["default_power_mode"]
    if modes and default_mode not in modes:
        raise InputError("profile %s: field 'default_power_mode' is %r: choose one of power_modes (%s)"
                         % (path, default_mode, ", ".join(modes)))
    if not modes and default_mode is not None:
        raise InputError("profile %s: field 'default_power_mode' is %r but power_modes is empty: set it to "
                         "null" % (path, default_mode))
    reserved = data["vision_memory_budget_bytes"] + data["os_reserve_bytes"]
    if reserved >= data["ram_bytes"]:
        raise InputError("profile %s: vision_memory_budget_bytes + os_reserve_bytes (%d) must be below "
                         "ram_bytes (%d): lower them" % (path, reserved, data["ram_bytes"]))
    if data["tensorrt"] is not None and _version_tuple(data["tensorrt"], "TensorRT") < _OLDEST_TENSORRT:
        raise InputError("profile %s: field 'tensorrt' is %r: the oldest supported TensorRT is 8.5 "
                         "(JetPack 5.1)" % (path, data["tensorrt"]))
    values = dict(data)
    values["memory_bandwidth_gbps"] = float(values["memory_bandwidth_gbps"])
    values["power_modes"] = tuple(modes)
    return DeviceProfile(**values)
