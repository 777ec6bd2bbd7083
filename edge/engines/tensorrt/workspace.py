"""TensorRT's WORKSPACE memory-pool limit for the vision engines: unfused attention's scratch plus tactic headroom.

Where TensorRT does not fuse the VPM's attention, the score and softmax-probability matrices [B, heads, L, L] live in
the WORKSPACE pool, so a limit below 2 x B x heads x L x L x (bytes a score) fails the build at the largest shapes
("Error Code 2: OutOfMemory"). Measured with TensorRT-RTX 1.7.1.116 (strongly typed) on the tiny VPM (width 64,
heads 4), binary search to 1 MiB over B 1-4 and L 1024-2048: fp32 and int8 (the int8 Q/DQ graph's float layers are
fp32) built from 2.00-2.05 x B x heads x L x L x 4 bytes on; fp16 (fused attention, no L x L scratch) built with at
most 24 MiB at every shape. The `small` VPM (real widths: 1152, heads 16, MLP 4304) needed up to 2 x scores plus
0.9 x B x L x MLP x 4 bytes (fp32 at B 4, L 2048: 2,274,222,592 bytes), so the MLP's hidden activation [B, L, MLP]
is counted on top, at the float width of that precision's layers (4 bytes fp32, 2 fp16, int8 as its softmax).

Weakly typed builders (TensorRT 8.x-10.x) get the FP16 flag with INT8 on int8 graphs, so their softmax may run in
fp16: 2 bytes a score, counted unfused to stay on the high side. Not measured.
"""
from __future__ import annotations

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


def attention_scratch_bytes(batch: int, heads: int, patches: int, precision: str, strongly_typed: bool) -> int:
    """Workspace bytes unfused VPM attention needs: scores and probabilities, 2 x [B, heads, L, L]; 0 for fp16."""
    element = float_bytes(precision, strongly_typed)
    return 0 if precision == "fp16" else 2 * batch * heads * patches * patches * element  # fp16: fused


def workspace_limit_bytes(profile_workspace: int, batch: int, heads: int, patches: int, mlp: int, precision: str,
                          strongly_typed: bool) -> int:
    """The WORKSPACE limit to build with: the profile's, or, if larger, the attention scratch + the MLP hidden
    activation [B, L, mlp] + TACTIC_HEADROOM_BYTES."""
    scratch = attention_scratch_bytes(batch, heads, patches, precision, strongly_typed)
    hidden = batch * patches * mlp * float_bytes(precision, strongly_typed)
    return max(profile_workspace, scratch + hidden + TACTIC_HEADROOM_BYTES)
