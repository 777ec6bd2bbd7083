"""The project's ONNX operator tables per TensorRT release (configs/tensorrt/onnx-ops-<release>.yaml)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import yaml

import configs
from edge.errors import InputError

TABLES_DIR = Path(configs.__file__).resolve().parent / "tensorrt"


def _key(release: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in release.split("."))


def releases() -> List[str]:
    """The releases that have a table, oldest first."""
    names = [p.stem[len("onnx-ops-"):] for p in TABLES_DIR.glob("onnx-ops-*.yaml")]
    return sorted(names, key=_key)


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
        """The table of `tensorrt`, or of the newest release before it (a conservative stand-in)."""
        try:
            wanted = _key(tensorrt)
        except ValueError:
            raise InputError("bad TensorRT version %r: write it as e.g. 8.5, 10.3" % tensorrt) from None
        known = [r for r in releases() if _key(r) <= wanted]
        if not known:
            raise InputError("no operator table for TensorRT %s: releases from %s on are supported"
                             % (tensorrt, releases()[0]))
        data = yaml.safe_load((TABLES_DIR / ("onnx-ops-%s.yaml" % known[-1])).read_text())
        return cls(data["tensorrt"], data["opset_ceiling"], data["int64_graph_io"], data["converted"],
                   data["not_converted"])
