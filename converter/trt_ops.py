"""The project's ONNX operator tables per TensorRT release (configs/tensorrt/onnx-ops-<release>.yaml).

A release is checked against its own table. A release that device profiles name but that has no table of its own
is checked against the table of an older release of the same major version, named in `STAND_INS`: its parser
converts at least what that release's did, so the check may refuse a graph the device would take, never the
reverse. Any other release is refused, with the list of the known ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import yaml

import configs
from edge.errors import InputError

TABLES_DIR = Path(configs.__file__).resolve().parent / "tensorrt"
# Release -> the table it is checked against. 10.13: JetPack 7.0 (agx-thor) ships TensorRT 10.13, whose
# onnx-tensorrt operator list the project has no copy of; 10.3 (JetPack 6.1/6.2) is the newest 10.x table below it.
STAND_INS = {"10.13": "10.3"}


def _key(release: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in release.split("."))


def releases() -> List[str]:
    """The releases that have a table, oldest first."""
    names = [p.stem[len("onnx-ops-"):] for p in TABLES_DIR.glob("onnx-ops-*.yaml")]
    return sorted(names, key=_key)


def known_releases() -> List[str]:
    """Every release check-ops takes: those with a table and the stand-ins, oldest first."""
    return sorted(set(releases()) | set(STAND_INS), key=_key)


def release_of(tensorrt: str) -> str:
    """major.minor of a TensorRT version ("10.3", or a full one such as "10.3.0.30"); an InputError for anything
    that is not one."""
    try:
        parts = _key(tensorrt.strip())
    except ValueError:
        parts = ()
    if len(parts) < 2:
        raise InputError("bad TensorRT release %r: write it as major.minor, e.g. --trt 10.3 (known: %s)"
                         % (tensorrt, ", ".join(known_releases())))
    return "%d.%d" % parts[:2]


def table_release(tensorrt: str, fix: str = "pass one of them with --trt") -> str:
    """The release whose table checks `tensorrt`: its own, or its stand-in; an InputError naming the known
    releases, and ending with `fix`, for any other."""
    release = release_of(tensorrt)
    if release in releases():
        return release
    if release in STAND_INS:
        return STAND_INS[release]
    raise InputError("no operator table for TensorRT %s: check-ops knows %s; %s"
                     % (tensorrt, ", ".join(known_releases()), fix))


@dataclass(frozen=True)
class OperatorTable:
    """What one TensorRT release's ONNX parser converts."""

    release: str
    opset_ceiling: int
    int64_graph_io: bool
    converted: Dict[str, List[str]]  # operator -> data types
    not_converted: List[str]

    @property
    def major(self) -> int:
        return _key(self.release)[0]

    @classmethod
    def for_release(cls, tensorrt: str) -> OperatorTable:
        """The table that checks `tensorrt` (see `table_release`)."""
        data = yaml.safe_load((TABLES_DIR / ("onnx-ops-%s.yaml" % table_release(tensorrt))).read_text())
        return cls(data["tensorrt"], data["opset_ceiling"], data["int64_graph_io"], data["converted"],
                   data["not_converted"])
