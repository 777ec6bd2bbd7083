"""TensorRT's WORKSPACE limit for the vision engines: the attention scratch per precision and builder typing, the
headroom on top, and the TensorRT-RTX measurements it must cover."""
from __future__ import annotations

import pytest

from edge.engines.tensorrt.workspace import (
    TACTIC_HEADROOM_BYTES,
    attention_scratch_bytes,
    strongly_typed_release,
    workspace_limit_bytes,
)
from edge.errors import InputError

MIB, GIB = 1 << 20, 1 << 30
# Smallest WORKSPACE limit at which the tiny VPM (heads 4) built, TensorRT-RTX 1.7.1.116 (strongly typed), binary
# search to 1 MiB: (precision, B, L) -> bytes. int8 needed what fp32 did at every shape.
MEASURED_TINY = {
    ("fp32", 1, 1024): 33550464, ("fp32", 1, 2048): 135249920, ("fp32", 2, 2048): 273645056,
    ("fp32", 4, 2048): 548338432, ("fp32", 4, 1024): 137346816, ("fp32", 3, 1500): 219125760,
    ("fp16", 1, 1024): 9436160, ("fp16", 1, 2048): 11533056, ("fp16", 2, 2048): 15726848,
    ("fp16", 4, 2048): 24114432, ("fp16", 4, 1024): 15726848, ("fp16", 3, 1500): 16775296,
}

# The same for the `small` VPM (real widths: 1152, heads 16, MLP 4304; 2 layers), fp32: (B, L) -> bytes.
MEASURED_SMALL = {(1, 1024): 26212864, (1, 2048): 466587904, (2, 2048): 1070530816, (4, 2048): 2274222592,
                  (4, 1024): 533692672}


def test_headroom_is_64_mib() -> None:
    assert TACTIC_HEADROOM_BYTES == 64 * MIB


def test_real_size_siglip_scratch() -> None:
    """SigLIP-400M (16 heads) at B 4, L 2048: scores and probabilities are 2 x 256 Mi elements."""
    assert attention_scratch_bytes(4, 16, 2048, "fp32", strongly_typed=False) == 2 * GIB
    assert attention_scratch_bytes(4, 16, 2048, "fp32", strongly_typed=True) == 2 * GIB
    assert attention_scratch_bytes(4, 16, 2048, "int8", strongly_typed=True) == 2 * GIB
    assert attention_scratch_bytes(4, 16, 2048, "int8", strongly_typed=False) == GIB
    assert attention_scratch_bytes(4, 16, 2048, "fp16", strongly_typed=False) == 0
    assert attention_scratch_bytes(4, 16, 2048, "fp16", strongly_typed=True) == 0


def test_tiny_scratch() -> None:
    """Tiny VPM (4 heads) at B 1, L 1024: 2 x 4 Mi scores of 4 bytes = 32 MiB (16 MiB at fp16 softmax)."""
    assert attention_scratch_bytes(1, 4, 1024, "fp32", strongly_typed=True) == 32 * MIB
    assert attention_scratch_bytes(1, 4, 1024, "int8", strongly_typed=False) == 16 * MIB
    assert attention_scratch_bytes(3, 4, 1500, "fp32", strongly_typed=False) == 2 * 3 * 4 * 1500 * 1500 * 4


def test_limit_is_the_profile_workspace_or_scratch_plus_mlp_plus_headroom() -> None:
    mlp = 4 * 2048 * 4304 * 4  # SigLIP-400M's MLP hidden [4, 2048, 4304] in fp32
    assert workspace_limit_bytes(512 * MIB, 4, 16, 2048, 4304, "fp32", False) == 2 * GIB + mlp + 64 * MIB
    assert workspace_limit_bytes(512 * MIB, 4, 16, 2048, 4304, "int8", False) == GIB + mlp // 2 + 64 * MIB
    assert workspace_limit_bytes(512 * MIB, 4, 16, 2048, 4304, "int8", True) == 2 * GIB + mlp + 64 * MIB
    assert workspace_limit_bytes(512 * MIB, 4, 16, 2048, 4304, "fp16", True) == 512 * MIB
    assert workspace_limit_bytes(4 * GIB, 4, 16, 2048, 4304, "fp32", True) == 4 * GIB  # the profile's is larger
    assert workspace_limit_bytes(MIB, 1, 4, 1024, 256, "fp16", True) == 1024 * 256 * 2 + 64 * MIB  # no scratch


@pytest.mark.parametrize("shape", sorted(MEASURED_TINY))
def test_limit_covers_the_tensorrt_rtx_measurements(shape) -> None:
    """With a 1 MiB profile figure, the limit alone covers what the strongly typed builder needed, with no more than
    the MLP term and the headroom to spare."""
    precision, batch, patches = shape
    for built in (precision, "int8") if precision == "fp32" else (precision,):
        limit = workspace_limit_bytes(MIB, batch, 4, patches, 256, built, strongly_typed=True)
        spare = batch * patches * 256 * (2 if built == "fp16" else 4) + TACTIC_HEADROOM_BYTES
        assert MEASURED_TINY[shape] <= limit < MEASURED_TINY[shape] + spare + 2 * MIB


@pytest.mark.parametrize("shape", sorted(MEASURED_SMALL))
def test_limit_covers_the_small_vpm_measurements(shape) -> None:
    """The real-width VPM (heads 16, MLP 4304) needed more than the scores alone at B 4, L 2048."""
    batch, patches = shape
    assert MEASURED_SMALL[shape] <= workspace_limit_bytes(MIB, batch, 16, patches, 4304, "fp32", True)


@pytest.mark.parametrize("version, strong", [
    ("8.5", False), ("8.6", False), ("10.3", False), ("10.13", False), ("11.0", True), ("11.1.0.9", True),
    ("12.0", True),
])
def test_strongly_typed_release(version: str, strong: bool) -> None:
    assert strongly_typed_release(version) is strong


@pytest.mark.parametrize("call", [
    lambda: strongly_typed_release("ten"),
    lambda: attention_scratch_bytes(1, 4, 1024, "int4", False),
])
def test_bad_input_refused(call) -> None:
    with pytest.raises(InputError):
        call()
