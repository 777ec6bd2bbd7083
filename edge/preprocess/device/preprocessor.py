"""``DevicePreprocessor``: an RGB frame in, the VPM's feeds out, with the pixels resized, cut and normalised on
the device.

Per frame: the uint8 frame is copied once into a pinned host buffer and uploaded asynchronously; the overview and
the refined image are resized by Pillow's passes (coefficients from ``edge.preprocess.pillow_resample``, uint8
after each pass, in Pillow's order); one kernel writes every batch's strips into one device buffer. Each batch's
``pixel_values`` is a DeviceTensor into that buffer, which the TensorRT runner binds as it is; position ids, patch
counts and tgt_sizes are the small host arrays of ``graph_inputs.index_inputs``. Everything is queued on the device
memory's one stream: work that follows on that stream (the engines) sees the strips without a synchronize. The
strips are valid until the next frame.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...engines.base import DeviceTensor
from ..graph_inputs import PackedSlices, index_inputs
from ..pillow_resample import HORIZONTAL, ResamplePass, pillow_pass_rule, resize_plan
from ..slicing import SlicePlan
from .buffers import DeviceBuffers
from .cuda_source import BLOCK, PATCH
from .kernels import compile_kernels
from .strip_map import batch_layouts, normalise_table, slice_params, strip_elements

Size = Tuple[int, int]


def _blocks(count: int) -> int:
    return (count + BLOCK - 1) // BLOCK


class DevicePreprocessor:
    """Pillow-exact preprocessing on the device behind `memory` (PycudaMemory: int pointers, one stream)."""

    def __init__(self, memory: Any, layout: str, pixel_dtype: Any = np.float32, rule: Optional[str] = None,
                 cache_dir: Any = None) -> None:
        self.memory = memory
        self.layout = layout
        self.pixel_dtype = np.dtype(pixel_dtype)
        self.rule = rule or pillow_pass_rule()
        self.kernels = compile_kernels(cache_dir)
        self.buffers = DeviceBuffers(memory)
        self._table = normalise_table(self.pixel_dtype)
        self._writer = self.kernels["write_strips_f32" if self.pixel_dtype == np.float32 else "write_strips_f16"]
        self._frame_size: Optional[Size] = None
        self._index_inputs: Dict[Tuple[Tuple[int, int], ...], PackedSlices] = {}

    def upload(self, rgb: np.ndarray) -> None:
        """Queue the copy of an HxWx3 uint8 frame to the device (through a pinned buffer)."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError("expected an HxWx3 uint8 RGB frame, got %s %s" % (rgb.dtype, rgb.shape))
        staging = self.buffers.pinned("frame", rgb.nbytes)[: rgb.nbytes]
        self.memory.synchronize()  # the previous frame's upload may still read the pinned buffer
        np.copyto(staging.reshape(rgb.shape), rgb)
        self.memory.to_device(self.buffers.get("frame", rgb.nbytes), staging)
        self._frame_size = (rgb.shape[1], rgb.shape[0])

    def __call__(self, rgb: np.ndarray, plan: SlicePlan, batches: Sequence[Tuple[int, int]]) -> List[PackedSlices]:
        """Upload `rgb` and queue its preprocessing: the feeds of each (first, size) batch of `plan`'s slices."""
        self.upload(rgb)
        return self.run(plan, batches)

    def run(self, plan: SlicePlan, batches: Sequence[Tuple[int, int]]) -> List[PackedSlices]:
        """Queue the preprocessing of the uploaded frame (its upload is not repeated: for benchmarks)."""
        if self._frame_size != plan.image_size:
            raise ValueError("the plan is for a %dx%d image but the uploaded frame is %s"
                             % (plan.image_size + (self._frame_size,)))
        frame = self.buffers.get("frame", 0)
        overview = self._resize(frame, plan.image_size, plan.source_size, "overview")
        refined, refined_width = overview, plan.source_size[0]
        if plan.refine_size is not None:
            refined = self._resize(frame, plan.image_size, plan.refine_size, "refined")
            refined_width = plan.refine_size[0]
        layouts = batch_layouts(plan.patch_grids(PATCH), batches)
        params = slice_params(plan, layouts)
        strips = self.buffers.get("strips", strip_elements(layouts) * self.pixel_dtype.itemsize)
        self._writer.prepared_async_call(
            (_blocks(PATCH * max(layout.longest for layout in layouts)), 3 * PATCH, len(params)), (BLOCK, 1, 1),
            self.memory.stream, overview, plan.source_size[0], refined, refined_width,
            self.buffers.table(("params", plan, tuple(batches)), params),
            self.buffers.table(("normalise", self.pixel_dtype.str), self._table), strips)
        return [self._feeds(layout.sizes, DeviceTensor(strips + layout.offset * self.pixel_dtype.itemsize,
                                                       layout.shape, self.pixel_dtype, self.memory))
                for layout in layouts]

    def _feeds(self, sizes: List[Tuple[int, int]], pixels: DeviceTensor) -> PackedSlices:
        """The batch's feeds; its index inputs are computed once per set of slice sizes."""
        key = tuple(sizes)
        if key not in self._index_inputs:
            self._index_inputs[key] = index_inputs(sizes, self.layout, None)
        feeds = self._index_inputs[key]
        return feeds._replace(vpm=dict(feeds.vpm, pixel_values=pixels))

    def _resize(self, frame: int, in_size: Size, out_size: Size, name: str) -> int:
        """Queue Pillow's passes from the frame to the buffer `name`; the frame itself when the size is equal."""
        source, width = frame, in_size[0]
        steps = resize_plan(in_size, out_size, self.rule)
        for index, step in enumerate(steps):
            target_width = step.coefficients.out_size if step.axis == HORIZONTAL else width
            target = self.buffers.get(name if index == len(steps) - 1 else "scratch", step.rows * target_width * 3)
            self._pass(step, source, width, target)
            source, width = target, target_width
        return source

    def _pass(self, step: ResamplePass, source: int, width: int, target: int) -> None:
        table = step.coefficients
        key = (table.in_size, table.out_size)
        first = self.buffers.table(key + ("first",), table.first)
        count = self.buffers.table(key + ("count",), table.count)
        weights = self.buffers.table(key + ("weights",), table.weights)
        if step.axis == HORIZONTAL:
            self.kernels["resample_horizontal"].prepared_async_call(
                (_blocks(table.out_size), step.rows, 1), (BLOCK, 1, 1), self.memory.stream,
                source, width, step.row_start, target, table.out_size, step.rows, first, count, weights, table.taps)
        else:
            self.kernels["resample_vertical"].prepared_async_call(
                (_blocks(width * 3), step.rows, 1), (BLOCK, 1, 1), self.memory.stream,
                source, width, step.row_start, target, step.rows, first, count, weights, table.taps)

    @property
    def device_bytes(self) -> int:
        """Device memory held for frames, intermediate images, strips and tables."""
        return self.buffers.device_bytes

    def close(self) -> None:
        self.buffers.close()
