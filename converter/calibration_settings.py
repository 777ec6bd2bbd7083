"""The calibration flags (``minicpmv-convert calibrate`` and ``convert``), checked before any work: this module
imports neither torch nor onnx, so bad flags are refused at once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edge.errors import InputError

from .calibration_data import check_source


@dataclass
class Settings:
    """What the user chose (CLI flags of ``minicpmv-convert calibrate``)."""

    source: Optional[Path] = None  # folder or video; None = built-in synthetic scenes
    count: int = 16
    method: str = "entropy"
    percentile: float = 99.99
    attention: bool = False  # quantize the attention matmuls too
    target_cosine: float = 0.995  # mean token cosine the search must reach
    min_cosine: float = 0.98  # and the worst token
    eval_count: int = 4  # held-out synthetic scenes for the search
    search: bool = True
    seed: int = 0

    def check(self) -> None:
        """An InputError naming the flag for a setting calibration cannot run with (checked before any work)."""
        if self.count < 1:
            raise InputError("--count must be at least 1 calibration image, got %d" % self.count)
        if self.eval_count < 1:
            raise InputError("--eval-images must be at least 1 held-out scene, got %d" % self.eval_count)
        if not 0 < self.percentile <= 100:
            raise InputError("--percentile must be above 0 and at most 100, got %g" % self.percentile)
        check_source(self.source, self.count)
