"""Seeded synthetic MiniCPM-V 4.6 / 4.7 checkpoints in transformers' layout (vision tower and merger only).

The same choices as converter.synthetic make the tokens depend on the image (strong patch embeddings, peaked
attention, LayerNorm gains that undo the scale-down of the outlier channels) and keep INT8 calibration honest (a
few residual channels in the hundreds). Sizes: tiny (width 64, 2 layers), small (SigLIP2-400M widths, 2 layers)
and full (27 layers); tiny and small insert the window merger after layer 0, full after transformers' default 6.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Sequence

import torch

from . import family
from .merger_layout import MERGE, VISION_TOWER, merger_shapes

_TINY = {"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 4}
ARCHITECTURES = {"4.6": "MiniCPMV4_6ForConditionalGeneration", "4.7": "MiniCPMV4_7ForConditionalGeneration"}


def merger_config(version: str, size: str, tiny_llm_hidden: int) -> Dict[str, Any]:
    """config.json with transformers' keys for a synthetic 4.6 / 4.7 checkpoint of `size`."""
    facts = family.facts_for(version)
    layers = family.VISION_LAYERS if size == "full" else 2
    insert = family.INSERT_LAYER_ID if size == "full" else 0
    vision: Dict[str, Any] = {
        "model_type": facts.model_type + "_vision", "hidden_size": family.VISION_WIDTH,
        "intermediate_size": family.VISION_MLP, "num_hidden_layers": layers,
        "num_attention_heads": family.VISION_HEADS, "num_channels": 3,
        "image_size": family.POSITION_GRID * family.PATCH_SIZE, "patch_size": family.PATCH_SIZE,
        "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "attention_dropout": 0.0,
        "insert_layer_id": insert, "window_kernel_size": [2, 2],
    }
    hidden = facts.llm_hidden
    if size == "tiny":
        vision.update(_TINY)
        hidden = tiny_llm_hidden
    config: Dict[str, Any] = {
        "architectures": [ARCHITECTURES[version]],
        "model_type": facts.model_type,
        "vision_config": vision,
        "text_config": {"model_type": "qwen3_5_text", "hidden_size": hidden},
        "insert_layer_id": insert,
        "image_size": 448,
        "downsample_mode": "16x",
        "merge_kernel_size": [2, 2],
        "merger_times": 1,
        "tie_word_embeddings": False,
        "dtype": "bfloat16",
        "_synthetic": {"size": size, "note": "seeded synthetic weights made by minicpmv-convert"},
    }
    if version == "4.6":
        config["drop_vision_last_layer"] = False
    return config


def merger_tensors(spec, seed: int, outlier_channels: Sequence[int], outlier_magnitude: float,
                   patch_gain: float, qk_gain: float) -> Dict[str, torch.Tensor]:
    """Seeded float32 tensors with the names and shapes of a merger checkpoint of `spec`."""
    generator = torch.Generator().manual_seed(seed)
    tensors: Dict[str, torch.Tensor] = {}
    for name, shape in merger_shapes(spec).items():
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("norm.weight"):
            tensors[name] = 1.0 + torch.randn(shape, generator=generator) * 0.1
        elif name.endswith("bias"):
            tensors[name] = torch.randn(shape, generator=generator) * 0.02
        elif name.endswith("position_embedding.weight"):
            tensors[name] = torch.randn(shape, generator=generator) * 0.3
        else:
            fan_in = shape[-1] if len(shape) == 2 else math.prod(shape[1:])
            tensors[name] = torch.randn(shape, generator=generator) * (0.5 / math.sqrt(fan_in))
    w, per_layer = spec.width, outlier_magnitude / max(spec.layers, 1)
    channels = [c for c in outlier_channels if c < w]
    seen = 0.0  # outlier magnitude in the residual stream before the current block
    for i in range(spec.layers):
        layer = VISION_TOWER + "encoder.layers.%d." % i
        for sign, channel in zip((1.0, -1.0, 1.0), channels):
            tensors[layer + "mlp.fc2.bias"][channel] = sign * per_layer
            tensors[layer + "mlp.fc2.weight"][channel] *= 8.0
        _undo(tensors[layer + "layer_norm1.weight"], channels, seen, w)
        seen += per_layer
        _undo(tensors[layer + "layer_norm2.weight"], channels, seen, w)
        for projection in ("q_proj", "k_proj"):
            tensors[layer + "self_attn.%s.weight" % projection] *= qk_gain
        if i == spec.insert_layer_id:
            window = VISION_TOWER + "vit_merger."
            _undo(tensors[window + "layer_norm1.weight"], channels, seen, w)
            _undo(tensors[window + "pre_norm.weight"], [c + k * w for k in range(MERGE) for c in channels],
                  seen, MERGE * w)
            for projection in ("q_proj", "k_proj"):
                tensors[window + "self_attn.%s.weight" % projection] *= qk_gain
    _undo(tensors[VISION_TOWER + "post_layernorm.weight"], channels, seen, w)
    tensors[VISION_TOWER + "embeddings.patch_embedding.weight"] *= patch_gain
    return tensors


def _undo(gain: torch.Tensor, channels: Sequence[int], outlier: float, width: int) -> None:
    """Scale a LayerNorm's gain on the ordinary channels by the std that `outlier`-sized channels give its input."""
    if not channels:
        return
    std = math.sqrt(len(channels) * outlier ** 2 / width + 1.0)
    ordinary = torch.ones_like(gain, dtype=torch.bool)
    ordinary[list(channels)] = False
    gain[ordinary] *= std
