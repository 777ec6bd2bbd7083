"""transformers' own MiniCPM-V 4.6 / 4.7 vision path (``MiniCPMV4_6VisionModel`` + ``MiniCPMV4_6Merger``, or the
4.7 classes) as the parity reference: built from the checkpoint's config.json, given the checkpoint's tensors (or
left at transformers' own seeded random init), fed the NaViT-packed pixels that transformers' image processor's
``reshape_by_patch`` makes, run through ``get_image_features``' steps for either ``downsample_mode``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from transformers import MiniCPMV4_6Config, MiniCPMV4_7Config
from transformers.models.minicpmv4_6.image_processing_minicpmv4_6 import MiniCPMV4_6ImageProcessor
from transformers.models.minicpmv4_6.modeling_minicpmv4_6 import MiniCPMV4_6Merger, MiniCPMV4_6VisionModel
from transformers.models.minicpmv4_7.modeling_minicpmv4_7 import MiniCPMV4_7Merger, MiniCPMV4_7VisionModel

CLASSES = {"minicpmv4_6": (MiniCPMV4_6Config, MiniCPMV4_6VisionModel, MiniCPMV4_6Merger),
           "minicpmv4_7": (MiniCPMV4_7Config, MiniCPMV4_7VisionModel, MiniCPMV4_7Merger)}
TOWER, MERGER = "model.vision_tower.", "model.merger."


class MergerReference:
    """The transformers vision tower and merger of one checkpoint config (eager attention, float32)."""

    def __init__(self, config: Dict, tensors: Optional[Dict[str, torch.Tensor]] = None, seed: int = 0) -> None:
        config_class, tower_class, merger_class = CLASSES[config["model_type"]]
        fields = {k: v for k, v in config.items() if k not in ("model_type", "architectures", "_synthetic")}
        self.config = config_class(**fields)
        self.config.vision_config._attn_implementation = "eager"
        torch.manual_seed(seed)
        self.tower = tower_class(self.config.vision_config).float().eval()
        self.merger = merger_class(self.config).float().eval()
        if tensors is not None:
            self.tower.load_state_dict({k[len(TOWER):]: v for k, v in tensors.items() if k.startswith(TOWER)})
            self.merger.load_state_dict({k[len(MERGER):]: v for k, v in tensors.items() if k.startswith(MERGER)})

    def state(self) -> Dict[str, torch.Tensor]:
        """The reference's own weights under checkpoint names (to build the project's modules from them)."""
        named = {TOWER + k: v for k, v in self.tower.state_dict().items()}
        named.update({MERGER + k: v for k, v in self.merger.state_dict().items()})
        return named

    @torch.no_grad()
    def tokens(self, slices: Sequence[np.ndarray], mode: str) -> List[np.ndarray]:
        """Per-slice [n_i, D] tokens of normalised float [3, 14h, 14w] slices packed into one NaViT sequence."""
        patch = self.config.vision_config.patch_size
        packer = MiniCPMV4_6ImageProcessor()
        strips = [packer.reshape_by_patch(torch.from_numpy(s), patch) for s in slices]
        pixel_values = torch.cat(strips, dim=-1).unsqueeze(0)
        sizes = torch.tensor([[s.shape[1] // patch, s.shape[2] // patch] for s in slices], dtype=torch.int32)
        use_vit_merger = mode != "4x"
        hidden = self.tower(pixel_values, target_sizes=sizes, use_vit_merger=use_vit_merger).last_hidden_state
        merged_sizes = sizes // 2 if use_vit_merger else sizes
        return [t.numpy() for t in self.merger(hidden, merged_sizes)]
