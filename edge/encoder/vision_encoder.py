"""``edge.VisionEncoder``: image in, MiniCPM-V visual tokens out (preprocess -> VPM -> Resampler).

Each batch of slices goes VPM then Resampler; where both engines keep tensors on the device (TensorRT), the VPM
output is handed to the Resampler there, with no round trip through the host.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np

from ..bundle.manifest import Bundle
from ..engines.base import Engine, host_array
from ..engines.factory import PerModule, open_engines
from ..engines.tensorrt.cache import DEFAULT_CACHE_DIR
from ..errors import SliceTooLarge
from ..preprocess.graph_inputs import pack_slices, slice_token_counts
from ..preprocess.image_input import to_rgb
from ..preprocess.preprocessor import Preprocessor, slice_config
from .prompt import PromptLayout
from .visual_positions import visual_positions


class EncodedImage(NamedTuple):
    """Tokens float32 [n_images, Q, D] (overview first, then tiles row-major), the grid and stage timings (ms).

    Merger versions (4.6, 4.7; slices differ in token count): tokens float32 [sum(token_counts), D], slice after
    slice in the same order, each slice's tokens in raster order over its token grid."""

    tokens: np.ndarray
    grid: Optional[Tuple[int, int]]
    timings: Dict[str, float]
    patch_grids: List[Tuple[int, int]]
    token_counts: Optional[List[int]] = None  # merger versions: the tokens of each slice
    positions: Optional[np.ndarray] = None  # 4.7: int32 [rows, 3], each token's (t, h, w) from the canvas origin


class VisionEncoder:
    """A bundle's VPM and Resampler behind one call; build it with `from_bundle`, close it (or use `with`) to free
    the engines."""

    def __init__(self, bundle: Bundle, engines: Mapping[str, Engine], resize: str = "exact") -> None:
        self.bundle = bundle
        self.engines = engines
        self.layout: str = bundle.model.slice.layout
        self.max_batch: int = bundle.shapes("vpm").batch.max
        self.max_patches: int = bundle.shapes("vpm").patches.max
        self.max_slices_allowed: int = bundle.target.max_slices
        self.preprocessor = Preprocessor(slice_config(bundle), resize)
        self.prompt = PromptLayout.from_facts(bundle.model)  # where the tokens go in the LLM prompt

    @classmethod
    def from_bundle(cls, path: Union[str, Path], backend: PerModule = "onnxruntime", precision: PerModule = None,
                    resize: str = "exact", cache_dir: Union[str, Path] = DEFAULT_CACHE_DIR) -> VisionEncoder:
        """Load and verify a bundle and open its engines: `backend` and `precision` are one value or one per module
        ({"vpm": ..., "resampler": ...}); precision None = the target's default. TensorRT engines come from the
        engine cache in `cache_dir` (built there when missing)."""
        bundle = Bundle.load(Path(path))
        return cls(bundle, open_engines(bundle, backend, precision, Path(cache_dir)), resize)

    def close(self) -> None:
        """Free the engines (device buffers, contexts, streams)."""
        for engine in self.engines.values():
            engine.close()

    def __enter__(self) -> VisionEncoder:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def max_slice_nums(self) -> int:
        return self.preprocessor.config.max_slice_nums

    @max_slice_nums.setter
    def max_slice_nums(self, value: int) -> None:
        """Change the slice budget between frames (the governor lowers it under memory or heat pressure)."""
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= self.max_slices_allowed:
            raise ValueError("max_slice_nums must be an integer 1..%d for this bundle (target %s), got %r"
                             % (self.max_slices_allowed, self.bundle.target.profile, value))
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
        vpm_s = resampler_s = 0.0
        tokens: List[np.ndarray] = []
        after_preprocess = time.perf_counter()
        for batch in batches:
            begin = time.perf_counter()
            embeds = self.engines["vpm"].infer(batch.vpm, device_outputs=("vision_embeds",))["vision_embeds"]
            middle = time.perf_counter()
            feeds = dict(batch.resampler, vision_embeds=embeds)
            out = host_array(self.engines["resampler"].infer(feeds)["image_tokens"], np.float32)
            if self.layout.startswith("merger-"):  # keep each slice's own tokens, drop the padding rows
                counts = slice_token_counts(batch.sizes, self.layout, 0)
                out = np.concatenate([out[row, :count] for row, count in enumerate(counts)])
            tokens.append(out)
            vpm_s, resampler_s = vpm_s + middle - begin, resampler_s + time.perf_counter() - middle
        end = time.perf_counter()
        timings = {"preprocess": (after_preprocess - start) * 1e3, "vpm": vpm_s * 1e3, "resampler": resampler_s * 1e3,
                   "total": (end - start) * 1e3}
        counts = positions = None
        if self.layout.startswith("merger-"):
            counts = slice_token_counts([grid for batch in batches for grid in batch.sizes], self.layout, 0)
        if self.prompt.style == "v4.7":  # its LLM places every visual token on a canvas (M-RoPE)
            positions = visual_positions(self.prompt, plan.grid, patch_grids, self.layout.split("-")[-1])
        return EncodedImage(np.concatenate(tokens), plan.grid, timings, patch_grids, counts, positions)

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
                    % (width, height, rows * cols, self.max_patches, self.bundle.target.profile, rows * cols))
