"""Image -> RGB uint8 slices in model order, per the slice plan (geometry in ``edge.slicing``).

Resizing happens once per plan entry (overview, refined image) in uint8, as the official processor does; the
tiles are views of the refined image. Normalisation is left to ``edge.graph_inputs.pack_slices``, which does
it while laying the slices out as strips.
"""
from __future__ import annotations

from typing import Any, List, NamedTuple, Optional

import numpy as np

from ..bundle.manifest import Bundle
from .image_input import to_rgb
from .resize import resizer
from .slicing import DEFAULT, SliceConfig, SlicePlan, plan_slices


class PreparedImage(NamedTuple):
    """The model inputs of one image: RGB uint8 [14h, 14w, 3] slices (overview first) and their plan."""

    slices: List[np.ndarray]
    plan: SlicePlan


MERGER_LAYOUT = "merger"  # slice layout of the versions with a merger instead of a Resampler (4.6, 4.7)
DEFAULT_DOWNSAMPLE_MODE = "16x"  # transformers' default for 4.6 / 4.7


def slice_config(bundle: Bundle, downsample_mode: Optional[str] = None) -> SliceConfig:
    """A bundle's slicing, with the slice budget capped by its target's max_slices. For a merger version (4.6,
    4.7) sizes snap to the merge of `downsample_mode` (default "16x"); other versions take no mode."""
    facts = bundle.model.slice
    config = SliceConfig(facts.scale_resolution, min(facts.max_slice_nums, bundle.target.max_slices),
                         facts.patch_size)
    if facts.layout == MERGER_LAYOUT:
        return config.for_mode(downsample_mode or DEFAULT_DOWNSAMPLE_MODE)
    if downsample_mode is not None:
        raise ValueError("downsample_mode applies to MiniCPM-V 4.6 and 4.7 only; this bundle is version %s"
                         % bundle.model.version)
    return config


class Preprocessor:
    """Slices images as the official processor does; `config.max_slice_nums` may be changed between calls."""

    def __init__(self, config: SliceConfig = DEFAULT, resize: str = "exact") -> None:
        self.config = config
        self.resize_mode = resize
        self._resize = resizer(resize)

    def plan(self, rgb: np.ndarray) -> SlicePlan:
        return plan_slices((rgb.shape[1], rgb.shape[0]), self.config)

    def __call__(self, image: Any, color: str = "rgb") -> PreparedImage:
        rgb = to_rgb(image, color)
        plan = self.plan(rgb)
        return PreparedImage(self.slices(rgb, plan), plan)

    def slices(self, rgb: np.ndarray, plan: SlicePlan) -> List[np.ndarray]:
        """The RGB slices of `plan`, overview first, then the tiles (views of the refined image) row-major."""
        slices = [self._resize(rgb, plan.source_size)]
        if plan.grid is not None and plan.refine_size is not None and plan.tile_size is not None:
            refined = self._resize(rgb, plan.refine_size)
            (cols, rows), (width, height) = plan.grid, plan.tile_size
            slices += [refined[r * height:(r + 1) * height, c * width:(c + 1) * width]
                       for r in range(rows) for c in range(cols)]
        return slices
