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
from .merger_inputs import LAYOUT_MODES
from .resize import resizer
from .slicing import DEFAULT, SliceConfig, SlicePlan, plan_slices


class PreparedImage(NamedTuple):
    """The model inputs of one image: RGB uint8 [14h, 14w, 3] slices (overview first) and their plan."""

    slices: List[np.ndarray]
    plan: SlicePlan


def slice_config(bundle: Bundle, downsample_mode: Optional[str] = None) -> SliceConfig:
    """A bundle's slicing, with the slice budget capped by its target's max_slices. A merger bundle (4.6, 4.7;
    layout merger-16x or merger-4x) was exported for one downsample mode and its sizes snap to that mode's merge;
    `downsample_mode`, if given, must be that one. Other versions take no mode."""
    facts = bundle.model.slice
    config = SliceConfig(facts.scale_resolution, min(facts.max_slice_nums, bundle.target.max_slices),
                         facts.patch_size)
    mode = LAYOUT_MODES.get(facts.layout)
    if mode is not None and downsample_mode not in (None, mode):
        raise ValueError("this bundle was exported for downsample_mode %s, not %s: export one with --downsample-mode "
                         "%s" % (mode, downsample_mode, downsample_mode))
    if mode is None and downsample_mode is not None:
        raise ValueError("downsample_mode applies to MiniCPM-V 4.6 and 4.7 only; this bundle is version %s"
                         % bundle.model.version)
    return config.for_mode(mode) if mode else config


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
