"""Argument types and the flags several commands share, each with its help text."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Tuple

from ..engines.tensorrt.cache import DEFAULT_CACHE_DIR


def sizes(text: str) -> List[Tuple[int, int]]:
    """"640x480,1920x1080" -> [(640, 480), (1920, 1080)]."""
    try:
        parsed = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        parsed = []
    if not parsed or any(len(s) != 2 or min(s) < 1 for s in parsed):
        raise argparse.ArgumentTypeError("expected WxH[,WxH...] with positive integers, got %r" % text)
    return parsed  # type: ignore[return-value]


def size(text: str) -> Tuple[int, int]:
    parsed = sizes(text)
    if len(parsed) != 1:
        raise argparse.ArgumentTypeError("expected one WxH, got %r" % text)
    return parsed[0]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("expected an integer of at least 1, got %r" % text)
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("expected a number greater than 0, got %r" % text)
    return value


CONFIG_HELP = "the agent config YAML (keys: docs/agent-config.md; examples: configs/agent/)"


def add_config(parser: argparse.ArgumentParser, help: str = CONFIG_HELP) -> None:
    parser.add_argument("--config", required=True, type=Path, help=help)


def add_bundle(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--bundle", required=required, type=Path,
                        help="a bundle directory written by minicpmv-convert (manifest.yaml + graphs)")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def add_cache_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                        help="TensorRT engine cache (default %s)" % DEFAULT_CACHE_DIR)


def add_precision(parser: argparse.ArgumentParser, **options) -> None:
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), **options)
