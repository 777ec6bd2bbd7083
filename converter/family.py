"""MiniCPM-V family facts, one row per version (docs/minicpmv.md), and version detection from config.json."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from edge.errors import InputError

VISION_WIDTH = 1152
VISION_MLP = 4304
VISION_HEADS = 16
VISION_LAYERS = 27
PATCH_SIZE = 14
POSITION_GRID = 70
RESAMPLER_HEAD_DIM = 128  # Resampler heads = D / 128
TINY_LLM_HIDDEN = 256  # D of --size tiny checkpoints: their token width, and the n_embd of make-gguf's LLMs


@dataclass(frozen=True)
class VersionFacts:
    """What differs between MiniCPM-V versions on the vision side and what the LLM side needs."""

    version: str
    query_num: int
    llm_hidden: int
    slice_layout: str  # edge.graph_inputs layout: how slices are batched, masked and given position ids
    use_image_id: bool
    prompt_style: str  # placeholder layout around the image tokens
    llm_family: str
    chat_template: str
    model_type: str


VERSIONS: Dict[str, VersionFacts] = {
    f.version: f
    for f in (
        VersionFacts("2.5", 96, 4096, "unmasked-1d", False, "v2.5", "llama3", "llama3", "minicpmv"),
        VersionFacts("2.6", 64, 3584, "masked-2d", True, "v2.6", "qwen2", "chatml", "minicpmv"),
        VersionFacts("o-2.6", 64, 3584, "masked-2d", True, "v2.6", "qwen2.5", "chatml", "minicpmo"),
        VersionFacts("4.0", 64, 2560, "masked-2d", True, "v2.6", "minicpm4", "chatml", "minicpmv"),
        VersionFacts("4.5", 64, 4096, "masked-2d", True, "v2.6", "qwen3", "chatml", "minicpmv"),
        # merger versions: no Resampler, so no fixed query count (query_num 0): a slice of h x w patches gives
        # h*w/16 tokens (downsample_mode "16x") or h*w/4 ("4x"). LLM width of Qwen3.5-0.8B (docs/minicpmv.md).
        VersionFacts("4.6", 0, 1024, "merger", True, "v4.6", "qwen3.5", "chatml", "minicpmv4_6"),
        VersionFacts("4.7", 0, 1024, "merger", True, "v4.7", "qwen3.5", "chatml", "minicpmv4_7"),
    )
}
MERGER_LAYOUT = "merger"  # slice_layout of the versions whose vision tower ends in mergers (4.6, 4.7)
DOWNSAMPLE_MODES = {"4x": 4, "16x": 16}  # downsample_mode -> patches per visual token
INSERT_LAYER_ID = 6  # transformers' default: the window-attention merger runs after this ViT layer
_UNSUPPORTED = {"2.0": "MiniCPM-V 2.0 (timm VPM)"}
_MODEL_TYPES = {f.model_type: f.version for f in VERSIONS.values() if f.model_type.startswith("minicpmv4_")}


def bundle_layout(version: str, downsample_mode: str = "") -> str:
    """The slice layout a bundle records (edge.preprocess.graph_inputs): merger versions name their mode."""
    layout = facts_for(version).slice_layout
    return "%s-%s" % (layout, downsample_mode) if layout == MERGER_LAYOUT else layout


def is_merger(version: str) -> bool:
    """Whether a version's vision tower ends in the window-attention merger and the downsample MLP (no Resampler)."""
    return facts_for(version).slice_layout == MERGER_LAYOUT


def facts_for(version: str) -> VersionFacts:
    """The facts row of a version name, or an InputError listing the supported ones."""
    if version in VERSIONS:
        return VERSIONS[version]
    reason = " (%s is not supported yet)" % _UNSUPPORTED[version] if version in _UNSUPPORTED else ""
    raise InputError("unknown model version %r%s: use one of %s" % (version, reason, ", ".join(VERSIONS)))


def _version_field(config: Dict[str, Any]) -> Optional[str]:
    value = config.get("version")
    if value is None:
        return None
    text = "%g" % value if isinstance(value, (int, float)) else str(value).strip()
    return text + ".0" if text.isdigit() else text  # 4 -> "4.0", 2.0 -> "2.0" (not "2")


def detect_version(config: Dict[str, Any], fallback: Optional[str] = None) -> str:
    """The version from config.json: model_type, then `version`, then query_num / LLM hidden size; `fallback`
    (e.g. the version a bundle records) when none of them tells."""
    model_type = config.get("model_type")
    if model_type == "minicpmo":
        return "o-2.6"
    if model_type in _MODEL_TYPES:
        return _MODEL_TYPES[model_type]
    if model_type not in (None, "minicpmv"):
        raise InputError("config.json has model_type %r, not a MiniCPM-V checkpoint: pass the directory of a "
                         "MiniCPM-V %s checkpoint" % (model_type, "/".join(VERSIONS)))
    field = _version_field(config)
    if field is not None:
        facts_for(field)
        return field
    query_num, hidden = config.get("query_num"), config.get("hidden_size")
    if query_num == 96:
        return "2.5"
    matches = [f.version for f in VERSIONS.values() if f.query_num
               and f.query_num == query_num and f.llm_hidden == hidden and f.model_type == "minicpmv"]
    if len(matches) == 1:
        return matches[0]
    if fallback is not None:
        return facts_for(fallback).version
    raise InputError("cannot tell the MiniCPM-V version from config.json (query_num=%r, hidden_size=%r): "
                     "pass --model-version with one of %s" % (query_num, hidden, ", ".join(VERSIONS)))
