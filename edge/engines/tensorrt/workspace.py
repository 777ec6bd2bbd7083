"""TensorRT's WORKSPACE memory-pool limit for the vision engines: what the largest shapes need in scratch, plus
headroom.

Where TensorRT does not fuse the VPM's attention, the score and softmax-probability matrices [B, heads, L, L] live in
the WORKSPACE pool, so a limit below them fails the build at the largest shapes ("Error Code 2: OutOfMemory").
Measured with TensorRT-RTX 1.7.1.116 (strongly typed), binary search on the limit:
- tiny VPM (width 64, heads 4, MLP 256), B 1-4, L 1024-2048: fp32 and int8 (the int8 Q/DQ graph's float layers are
  fp32) built from 2.00-2.05 x B x heads x L x L x 4 bytes on; fp16 (fused attention) with at most 24 MiB.
- `small` VPM (real widths: 1152, heads 16, MLP 4304), fp32, L 2048: B 4 needed 2 x scores + 131 MB
  (2,278,462,976 bytes), B 10 2 x scores + 527 MB (5,895,902,976): the hidden activations [B, L, MLP] and
  [B, L, width] count too, B x L x (MLP + 2 x width) x 4 bytes covers both.
- `small` Resampler of 2.5 (D 4096, 96 queries), L 2048: fp32 needed 372 MB at B 4 and 1486 MB at B 10, fp16 152 MB
  and 655 MB: about 3 x [B, L, D] of its float width plus the scores 2 x [B, D/128, Q, L], whose softmax the graphs
  run in fp32 at every precision.

Weakly typed builders (TensorRT 8.x-10.x) get the FP16 flag with INT8 on int8 graphs, so their float layers may run
in fp16: 2 bytes an element, with attention still counted unfused to stay on the high side. Not measured.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import InputError

MIB = 1 << 20
TACTIC_HEADROOM_BYTES = 64 * MIB  # the other layers' tactics on top of the attention scratch (fp16 needed <= 24 MiB)
STRONGLY_TYPED_MAJOR = 11  # TensorRT 11+ and TensorRT-RTX: types come from the ONNX, no FP16/INT8 builder flags
_SCORE_BYTES = {"fp32": 4, "int8": 2}  # int8 on a weakly typed builder: fp16 softmax


def strongly_typed_release(tensorrt: str) -> bool:
    """True for a TensorRT release (e.g. "10.3", "11.1.0.9") whose builder is strongly typed (major 11 and up)."""
    major = str(tensorrt).strip().split(".")[0]
    if not major.isdigit():
        raise InputError("bad TensorRT version %r: write it as a dotted string such as \"10.3\"" % (tensorrt,))
    return int(major) >= STRONGLY_TYPED_MAJOR


def float_bytes(precision: str, strongly_typed: bool) -> int:
    """Bytes an element of the graph's float layers takes in the engine: fp16 2, fp32 4; int8 4 on a strongly typed
    builder (its float layers stay fp32), 2 on a weakly typed one (the FP16 flag)."""
    if precision == "fp16":
        return 2
    if precision not in _SCORE_BYTES:
        raise InputError("unknown precision %r: choose one of fp32, fp16, int8" % (precision,))
    return 4 if strongly_typed else _SCORE_BYTES[precision]


@dataclass(frozen=True)
class VisionDims:
    """The widths that size the scratch: the VPM's heads, width and MLP, the Resampler's D and queries."""

    heads: int
    width: int
    mlp: int
    embed_dim: int
    query_num: int


def attention_scratch_bytes(batch: int, heads: int, patches: int, precision: str, strongly_typed: bool) -> int:
    """Workspace bytes unfused VPM attention needs: scores and probabilities, 2 x [B, heads, L, L]; 0 for fp16."""
    element = float_bytes(precision, strongly_typed)
    return 0 if precision == "fp16" else 2 * batch * heads * patches * patches * element  # fp16: fused


def vpm_scratch_bytes(dims: VisionDims, batch: int, patches: int, precision: str, strongly_typed: bool) -> int:
    """Attention scratch + the hidden activations [B, L, MLP + 2 x width] at the float layers' width."""
    element = float_bytes(precision, strongly_typed)
    hidden = batch * patches * (dims.mlp + 2 * dims.width) * element
    return attention_scratch_bytes(batch, dims.heads, patches, precision, strongly_typed) + hidden


def resampler_scratch_bytes(dims: VisionDims, batch: int, patches: int, precision: str, strongly_typed: bool) -> int:
    """3 x [B, L, D] at the float layers' width + the fp32 scores and probabilities 2 x [B, D/128, Q, L]."""
    element = float_bytes(precision, strongly_typed)
    scores = 2 * batch * (dims.embed_dim // 128) * dims.query_num * patches * 4
    return 3 * batch * patches * dims.embed_dim * element + scores


def workspace_limit_bytes(profile_workspace: int, dims: VisionDims, batch: int, patches: int, precision: str,
                          strongly_typed: bool) -> int:
    """The WORKSPACE limit to build both modules with: the profile's, or, if larger, the larger module's scratch +
    TACTIC_HEADROOM_BYTES."""
    scratch = max(vpm_scratch_bytes(dims, batch, patches, precision, strongly_typed),
                  resampler_scratch_bytes(dims, batch, patches, precision, strongly_typed))
    return max(profile_workspace, scratch + TACTIC_HEADROOM_BYTES)


def group_workspace_bytes(dims: VisionDims, batch: int, patches: int, precision: str, strongly_typed: bool) -> int:
    """The WORKSPACE limit for the grouped (video) Resampler at `batch` = groups x frames slices of `patches` keys:
    4 x [B, L, D] at the float layers' width + the fp32 scores and probabilities 2 x [B, D/128, Q, L] + the fp32
    input [B, L, width] + TACTIC_HEADROOM_BYTES (not the VPM's limit: the grouped graph has no ViT attention).
    TensorRT-RTX 1.7.1.116, `small` 4.5 (D 4096, width 1152, Q 64), B 6, L 2048: fp32 built within 1078 MiB, fp16
    within 694 MiB (docs/benchmarks.md); at B 18 neither built, with limits from 3 x to 4 x [B, L, D]."""
    element = float_bytes(precision, strongly_typed)
    scores = 2 * batch * (dims.embed_dim // 128) * dims.query_num * patches * 4
    return (4 * batch * patches * dims.embed_dim * element + scores + batch * patches * dims.width * 4
            + TACTIC_HEADROOM_BYTES)
