"""``edge.VisionEncoder``: image in, MiniCPM-V visual tokens out (preprocess -> VPM -> Resampler).

Each batch of slices goes VPM then Resampler; where both engines keep tensors on the device (TensorRT), the VPM
output is handed to the Resampler there, with no round trip through the host.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np

from ..bundle.manifest import Bundle
from ..engines.base import Engine, host_array
from ..engines.factory import PerModule, open_engines
from ..engines.tensorrt.cache import DEFAULT_CACHE_DIR
from ..errors import InputError, SliceTooLarge
from ..preprocess.device.selection import DEVICE_MODES, choose_path, open_device_preprocessor
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


class PreparedBatches(NamedTuple):
    """An image made ready for the engines (`VisionEncoder.prepare`): its packed VPM/Resampler batches, the grid, the
    patch grids of its slices and the preprocessing time (ms). With device preprocessing the batches are made by
    `on_device`, which queues the kernels on the engines' stream and so runs in `encode_prepared`."""

    batches: List[Any]  # one PackedSlices per engine batch; empty when `on_device` makes them
    grid: Optional[Tuple[int, int]]
    patch_grids: List[Tuple[int, int]]
    preprocess_ms: float
    on_device: Optional[Callable[[], List[Any]]] = None


class VpmFeatures(NamedTuple):
    """The VPM rows of each slice of one image ([rows*cols, width] float32, overview first), their patch grids
    (rows, cols), the image's slice grid and stage timings (ms: preprocess, vpm)."""

    rows: List[np.ndarray]
    patch_grids: List[Tuple[int, int]]
    grid: Optional[Tuple[int, int]]
    timings: Dict[str, float]


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
        # resize "device" or "auto": Pillow-exact preprocessing on the device when it can run (docs/preprocessing.md)
        self.preprocess_path, self.preprocess_reason = choose_path(resize) if resize in DEVICE_MODES else (resize, "")
        if self.layout.startswith("merger-") and self.preprocess_path == "device":
            if resize == "device":  # the device kernels write raster strips; merger graphs take merge order
                raise InputError("resize: device cannot feed a MiniCPM-V 4.6/4.7 bundle (its patches go in merge "
                                 "order, laid out on the CPU): use resize: exact or auto")
            self.preprocess_path, self.preprocess_reason = "exact", "4.6/4.7 bundles are packed on the CPU"
        self.preprocessor = Preprocessor(slice_config(bundle), "exact" if self.preprocess_path == "device"
                                         else self.preprocess_path)
        self.device_preprocessor = (open_device_preprocessor(engines["vpm"], self.layout)
                                    if self.preprocess_path == "device" else None)
        self.prompt = PromptLayout.from_facts(bundle.model)  # where the tokens go in the LLM prompt

    @classmethod
    def from_bundle(cls, path: Union[str, Path], backend: PerModule = "onnxruntime", precision: PerModule = None,
                    resize: str = "exact", cache_dir: Union[str, Path] = DEFAULT_CACHE_DIR) -> VisionEncoder:
        """Load and verify a bundle and open its engines: `backend` and `precision` are one value or one per module
        ({"vpm": ..., "resampler": ...}); precision None = the target's default. TensorRT engines come from the
        engine cache in `cache_dir` (built there when missing)."""
        bundle = Bundle.load(Path(path))
        engines = open_engines(bundle, backend, precision, Path(cache_dir))
        try:
            return cls(bundle, engines, resize)
        except BaseException:  # e.g. resize="device" on a box without pycuda: free what was opened
            for engine in engines.values():
                engine.close()
            raise

    def close(self) -> None:
        """Free the engines (device buffers, contexts, streams) and the device preprocessing's buffers."""
        if self.device_preprocessor is not None:
            self.device_preprocessor.close()
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
        encoded = self.encode_prepared(self.prepare(image, color))
        encoded.timings["total"] = (time.perf_counter() - start) * 1e3
        return encoded

    def prepare(self, image: Any, color: str = "rgb") -> PreparedBatches:
        """The preprocessing half of `encode`: the image sliced and packed into the VPM's batches, with the slice
        budget read once (a change of `max_slice_nums` applies to images prepared after it). Touches no engine's
        buffers (device preprocessing is left to `encode_prepared`), so it may run in another thread than the
        engines'."""
        start = time.perf_counter()
        rgb = to_rgb(image, color)
        plan = self.preprocessor.plan(rgb)
        patch_grids = plan.patch_grids(self.preprocessor.config.patch_size)
        self._check_fits(plan.slice_sizes, patch_grids)  # before any resizing: refusing is cheap
        if self.device_preprocessor is not None:  # strips stay on the device, queued on the engines' stream
            device, sizes = self.device_preprocessor, self._batches(len(patch_grids))
            return PreparedBatches([], plan.grid, patch_grids, (time.perf_counter() - start) * 1e3,
                                   lambda: device(rgb, plan, sizes))
        slices = self.preprocessor.slices(rgb, plan)
        pixel_dtype = self.engines["vpm"].input_dtypes["pixel_values"]
        batches = [pack_slices(slices[first:first + size], self.layout, pixel_dtype)
                   for first, size in self._batches(len(slices))]
        return PreparedBatches(batches, plan.grid, patch_grids, (time.perf_counter() - start) * 1e3)

    def encode_prepared(self, prepared: PreparedBatches) -> EncodedImage:
        """The engines' half of `encode`: the device preprocessing if any, then VPM and Resampler on each prepared
        batch, in the engines' thread."""
        start = time.perf_counter()
        batches, preprocess_ms = prepared.batches, prepared.preprocess_ms
        if prepared.on_device is not None:
            batches = prepared.on_device()
            preprocess_ms += (time.perf_counter() - start) * 1e3
        vpm_s = resampler_s = 0.0
        tokens: List[np.ndarray] = []
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
        timings = {"preprocess": preprocess_ms, "vpm": vpm_s * 1e3, "resampler": resampler_s * 1e3,
                   "total": prepared.preprocess_ms + (time.perf_counter() - start) * 1e3}
        counts = positions = None
        if self.layout.startswith("merger-"):
            counts = slice_token_counts([grid for batch in batches for grid in batch.sizes], self.layout, 0)
        if self.prompt.style == "v4.7":  # its LLM places every visual token on a canvas (M-RoPE)
            positions = visual_positions(self.prompt, prepared.grid, prepared.patch_grids, self.layout.split("-")[-1])
        return EncodedImage(np.concatenate(tokens), prepared.grid, timings, prepared.patch_grids, counts, positions)

    def vpm_features(self, image: Any, color: str = "rgb") -> VpmFeatures:
        """The VPM output of each slice of one image, not yet resampled (the grouped video Resampler takes the
        features of several frames at once; edge.encoder.video_group)."""
        start = time.perf_counter()
        rgb = to_rgb(image, color)
        plan = self.preprocessor.plan(rgb)
        patch_grids = plan.patch_grids(self.preprocessor.config.patch_size)
        self._check_fits(plan.slice_sizes, patch_grids)
        slices = self.preprocessor.slices(rgb, plan)
        pixel_dtype = self.engines["vpm"].input_dtypes["pixel_values"]
        after_preprocess = time.perf_counter()
        rows: List[np.ndarray] = []
        grids: List[Tuple[int, int]] = []
        for first, size in self._batches(len(slices)):
            batch = pack_slices(slices[first:first + size], self.layout, pixel_dtype)
            embeds = host_array(self.engines["vpm"].infer(batch.vpm)["vision_embeds"], np.float32)
            for index, (r, c) in enumerate(batch.resampler["tgt_sizes"].tolist()):
                rows.append(embeds[index, : r * c])
                grids.append((r, c))
        timings = {"preprocess": (after_preprocess - start) * 1e3,
                   "vpm": (time.perf_counter() - after_preprocess) * 1e3}
        return VpmFeatures(rows, grids, plan.grid, timings)

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
