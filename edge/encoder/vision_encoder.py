"""``edge.VisionEncoder``: image in, MiniCPM-V visual tokens out (preprocess -> VPM -> Resampler)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np

from ..bundle.manifest import MODULES, Bundle
from ..engines.base import Engine, check_backend, open_engine
from ..errors import InputError, SliceTooLarge
from ..preprocess.graph_inputs import PackedSlices, pack_slices
from ..preprocess.image_input import to_rgb
from ..preprocess.preprocessor import Preprocessor
from ..preprocess.slicing import SliceConfig
from .prompt import PromptLayout

Precision = Union[None, str, Mapping[str, Optional[str]]]


class EncodedImage(NamedTuple):
    """Tokens float32 [n_images, Q, D] (overview first, then tiles row-major), the grid and stage timings (ms)."""

    tokens: np.ndarray
    grid: Optional[Tuple[int, int]]
    timings: Dict[str, float]
    patch_grids: List[Tuple[int, int]]


class VisionEncoder:
    """A bundle's VPM and Resampler behind one call; build it with `from_bundle`."""

    def __init__(self, bundle: Bundle, engines: Dict[str, Engine], resize: str = "exact") -> None:
        self.bundle = bundle
        self.engines = engines
        facts, shapes = bundle.model, bundle.manifest["modules"]["vpm"]["shapes"]
        self.layout: str = facts["slice"]["layout"]
        self.max_batch: int = shapes["batch"]["max"]
        self.max_patches: int = shapes["patches"]["max"]
        self.max_slices_allowed: int = bundle.manifest["target"]["max_slices"]
        slicing = facts["slice"]
        config = SliceConfig(slicing["scale_resolution"], min(slicing["max_slice_nums"], self.max_slices_allowed),
                             slicing["patch_size"])
        self.preprocessor = Preprocessor(config, resize)
        self.prompt = PromptLayout.from_model(facts)  # where the tokens go in the LLM prompt

    @classmethod
    def from_bundle(cls, path: Union[str, Path], backend: str = "onnxruntime", precision: Precision = None,
                    resize: str = "exact") -> VisionEncoder:
        """Load and verify a bundle; `precision` None = the target's default, or a name, or one per module."""
        check_backend(backend)
        bundle = Bundle.load(Path(path))
        if backend == "tensorrt":
            if isinstance(precision, Mapping):
                raise InputError("the tensorrt backend builds both modules at one precision: pass a name")
            from ..engines.tensorrt.build import BuildSettings, build_bundle, import_tensorrt

            trt, memory = import_tensorrt()
            _, engines = build_bundle(bundle, trt, memory, BuildSettings(precision=precision),
                                      log=lambda message: None)
            return cls(bundle, engines, resize)
        per_module = precision if isinstance(precision, Mapping) else {m: precision for m in MODULES}
        engines = {m: open_engine(bundle.graph_path(m, per_module.get(m))) for m in MODULES}
        return cls(bundle, engines, resize)

    @property
    def max_slice_nums(self) -> int:
        return self.preprocessor.config.max_slice_nums

    @max_slice_nums.setter
    def max_slice_nums(self, value: int) -> None:
        """Change the slice budget between frames (the governor lowers it under memory or heat pressure)."""
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= self.max_slices_allowed:
            raise ValueError("max_slice_nums must be an integer 1..%d for this bundle (target %s), got %r"
                             % (self.max_slices_allowed, self.bundle.manifest["target"]["profile"], value))
        self.preprocessor.config = self.preprocessor.config._replace(max_slice_nums=value)

    def encode(self, image: Any, color: str = "rgb") -> EncodedImage:
        """Visual tokens of one image (numpy HxW[xC] uint8 or PIL); `color="bgr"` for OpenCV frames."""
        start = time.perf_counter()
        rgb = to_rgb(image, color)
        plan = self.preprocessor.plan(rgb)
        patch_grids = plan.patch_grids(self.preprocessor.config.patch_size)
        self._check_fits(plan.slice_sizes, patch_grids)  # before any resizing: refusing is cheap
        slices = self.preprocessor.slices(rgb, plan)
        pixel_dtype = self.engines["vpm"].input_dtypes["pixel_values"]
        batches = [pack_slices(slices[first:first + size], self.layout, pixel_dtype)
                   for first, size in self._batches(len(slices))]
        after_preprocess = time.perf_counter()
        embeds = [self.engines["vpm"].infer(batch.vpm)["vision_embeds"] for batch in batches]
        after_vpm = time.perf_counter()
        tokens = np.concatenate([self._resample(batch, embed) for batch, embed in zip(batches, embeds)])
        end = time.perf_counter()
        timings = {"preprocess": (after_preprocess - start) * 1e3, "vpm": (after_vpm - after_preprocess) * 1e3,
                   "resampler": (end - after_vpm) * 1e3, "total": (end - start) * 1e3}
        return EncodedImage(tokens.astype(np.float32, copy=False), plan.grid, timings, patch_grids)

    def _resample(self, batch: PackedSlices, embeds: np.ndarray) -> np.ndarray:
        return self.engines["resampler"].infer(dict(batch.resampler, vision_embeds=embeds))["image_tokens"]

    def _batches(self, count: int) -> List[Tuple[int, int]]:
        """(first, size) of each batch: up to the bundle's max batch; 2.5 (unmasked-1d) keeps one image together."""
        if self.layout == "unmasked-1d":
            return [(0, count)]
        return [(first, min(self.max_batch, count - first)) for first in range(0, count, self.max_batch)]

    def _check_fits(self, sizes: List[Tuple[int, int]], patch_grids: List[Tuple[int, int]]) -> None:
        for (width, height), (rows, cols) in zip(sizes, patch_grids):
            if rows * cols > self.max_patches:
                raise SliceTooLarge(
                    "a %dx%d slice has %d patches, more than the %d this bundle's graphs were sized for (target %s):"
                    " re-export the bundle for a target whose max_patches is at least %d"
                    % (width, height, rows * cols, self.max_patches, self.bundle.manifest["target"]["profile"],
                       rows * cols))
