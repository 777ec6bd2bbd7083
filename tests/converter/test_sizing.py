"""Whole-box memory check: exact parameter counts, the estimate's formula, GGUF files, and what export refuses
(exit 2, one line, nothing written) or records in the manifest."""
from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

import pytest

from converter.checkpoint import load_vision_checkpoint
from converter.checkpoint_layout import expected_shapes, vision_spec
from converter.cli import main as convert_main
from converter.sizing import (
    GIB,
    KV_BYTES_PER_TOKEN,
    check_box,
    estimate_vision_bytes,
    llm_bytes_from_args,
    llm_bytes_from_gguf,
    size_bundle,
    vision_parameters,
)
from converter.synthetic import synthetic_config
from edge.bundle.manifest import Bundle
from edge.device.profiles import load_profile
from edge.errors import InputError

MIB = 1 << 20
LLM_8B_Q4_BYTES = 4_700_000_000  # a 7-8B model at Q4_K_M (Qwen2-7B's is 4.68 GB)
JETSONS = ["orin-nano-4gb", "orin-nano-8gb", "orin-nx-8gb", "orin-nx-16gb", "agx-orin-32gb", "agx-orin-64gb",
           "xavier-nx", "agx-thor"]


def full_spec(version: str = "2.6"):
    return vision_spec(synthetic_config(version, "full"), version)


def tiny_spec(version: str = "2.6"):
    return vision_spec(synthetic_config(version, "tiny"), version)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


@pytest.fixture(scope="module")
def llm_gguf(tmp_path_factory) -> Path:
    """A sparse 4.7 GB file that starts with the GGUF magic: the size of a 7-8B Q4 LLM, no disk used."""
    path = tmp_path_factory.mktemp("llm") / "llm-8b-q4_k_m.gguf"
    with open(path, "wb") as handle:
        handle.write(b"GGUF\x03\x00\x00\x00")
    os.truncate(path, LLM_8B_Q4_BYTES)
    return path


# --- parameters and the estimate's formula --------------------------------------------------------------------


def test_parameters_equal_the_checkpoint_tensors(make_checkpoint: Callable[..., Path]) -> None:
    """The counts the estimate uses are the sizes of the vision tensors the checkpoint really holds."""
    ck = load_vision_checkpoint(make_checkpoint("2.6"))
    counts = vision_parameters(ck.spec)
    for module in ("vpm", "resampler"):
        actual = sum(t.numel() for name, t in ck.tensors.items() if name.startswith(module + "."))
        assert counts[module] == actual
    assert sum(counts.values()) == sum(t.numel() for t in ck.tensors.values())
    estimate = estimate_vision_bytes(ck.spec, load_profile("orin-nano-8gb"), ["fp16"])["fp16"]
    assert {m: e.parameters for m, e in estimate.modules.items()} == counts


def test_full_size_vpm_matches_the_spec() -> None:
    """docs/minicpmv.md: about 418 M parameters in the VPM, 15.2 M per layer."""
    spec = full_spec()
    counts = vision_parameters(spec)
    assert counts["vpm"] == pytest.approx(418e6, rel=0.02)
    per_layer = sum(math.prod(s) for n, s in expected_shapes(spec).items() if n.startswith("vpm.encoder.layers.0."))
    assert per_layer == pytest.approx(15.2e6, rel=0.01)


def test_weight_bytes_per_precision() -> None:
    """fp32 4 and fp16 2 bytes a parameter; int8 about 1 (matmul/conv weights) with the rest at 2."""
    spec, profile = full_spec(), load_profile("orin-nano-8gb")
    estimates = estimate_vision_bytes(spec, profile, ["fp32", "fp16", "int8"])
    counts = vision_parameters(spec)
    table = 4 * profile.max_patches * spec.embed_dim // 2  # the Resampler's float32 sin-cos table
    assert estimates["fp32"].modules["vpm"].weight_bytes == 4 * counts["vpm"]
    assert estimates["fp16"].modules["vpm"].weight_bytes == 2 * counts["vpm"]
    assert estimates["fp16"].modules["resampler"].weight_bytes == 2 * counts["resampler"] + table
    total = sum(counts.values())
    int8 = sum(m.weight_bytes for m in estimates["int8"].modules.values()) - table
    assert total < int8 < 1.05 * total  # position table, LayerNorms, biases, queries stay 16-bit


def test_activation_formula_and_workspace() -> None:
    """Largest live tensors at max batch x max patches, 2 bytes each in fp16, the VPM's attention scores left to the
    workspace; fp16's workspace is the profile's (fused attention), counted once."""
    spec, profile = full_spec(), load_profile("orin-nano-4gb")
    estimate = estimate_vision_bytes(spec, profile, ["fp16"])["fp16"]
    b, n = profile.max_batch, profile.max_patches
    assert (estimate.batch, estimate.patches) == (b, n)
    vpm = 2 * (b * 3 * 14 * 14 * n + b * n * (spec.width + spec.mlp))
    d, q = spec.embed_dim, spec.query_num
    resampler = 2 * (b * n * spec.width + 2 * b * n * d + b * (d // 128) * q * n + b * q * d)
    assert estimate.modules["vpm"].activation_bytes == vpm
    assert estimate.modules["resampler"].activation_bytes == resampler
    assert estimate.workspace_bytes == profile.workspace_bytes
    assert estimate.total_bytes == sum(m.total_bytes for m in estimate.modules.values()) + profile.workspace_bytes
    fp32 = estimate_vision_bytes(spec, profile, ["fp32"])["fp32"]
    assert fp32.modules["vpm"].activation_bytes == 2 * vpm


def test_real_size_workspace_per_precision() -> None:
    """SigLIP-400M (width 1152, 16 heads, MLP 4304) at 4 x 2048 on TensorRT 10.3: scores and probabilities 2 x [4,
    16, 2048, 2048] and the MLP hidden [4, 2048, 4304] in fp32 (4 bytes) and int8 (fp16, 2 bytes), plus 64 MiB;
    fp16 keeps the profile's 512 MiB. The hidden activations count at [4, 2048, MLP + 2 x width]."""
    spec, profile = full_spec(), load_profile("orin-nano-8gb")
    assert (spec.width, spec.heads, profile.max_batch, profile.max_patches, profile.tensorrt) == \
        (1152, 16, 4, 2048, "10.3")
    estimates = estimate_vision_bytes(spec, profile, ["fp32", "fp16", "int8"])
    scores, hidden = 4 * 16 * 2048 * 2048, 4 * 2048 * (4304 + 2 * 1152)
    assert estimates["fp32"].workspace_bytes == (2 * scores + hidden) * 4 + 64 * MIB
    assert estimates["int8"].workspace_bytes == (2 * scores + hidden) * 2 + 64 * MIB
    assert estimates["fp16"].workspace_bytes == profile.workspace_bytes == 512 * MIB
    int8 = estimates["int8"]
    assert int8.total_bytes == sum(m.weight_bytes + m.activation_bytes for m in int8.modules.values()) + \
        (2 * scores + hidden) * 2 + 64 * MIB


def test_tiny_workspace_per_precision() -> None:
    """The tiny model (VPM: 4 heads, width 64, MLP 256; Resampler: D 256, 64 queries) at 4 x 2048 with a 1 MiB
    profile figure: the larger module's scratch + 64 MiB (the Resampler's for fp16, whose VPM attention is fused)."""
    spec, profile = tiny_spec(), replace(load_profile("orin-nano-8gb"), workspace_bytes=MIB)
    estimates = estimate_vision_bytes(spec, profile, ["fp32", "fp16", "int8"])
    scores, hidden = 4 * 4 * 2048 * 2048, 4 * 2048 * (256 + 2 * 64)
    resampler_fp16 = 3 * 4 * 2048 * 256 * 2 + 2 * 4 * 2 * 64 * 2048 * 4
    assert (spec.heads, spec.width, spec.mlp, spec.embed_dim, spec.query_num) == (4, 64, 256, 256, 64)
    assert estimates["fp32"].workspace_bytes == (2 * scores + hidden) * 4 + 64 * MIB == 588 * MIB
    assert estimates["int8"].workspace_bytes == (2 * scores + hidden) * 2 + 64 * MIB == 326 * MIB
    assert estimates["fp16"].workspace_bytes == resampler_fp16 + 64 * MIB == 84 * MIB


@pytest.mark.parametrize("name", JETSONS + ["host-x86"])
def test_fp16_workspace_is_the_profiles(name: str) -> None:
    profile = load_profile(name)
    for version in ("2.6", "4.5"):
        assert estimate_vision_bytes(full_spec(version), profile, ["fp16"])["fp16"].workspace_bytes == \
            profile.workspace_bytes


def test_int8_workspace_follows_the_builders_typing() -> None:
    """int8 on TensorRT 11.x (strongly typed: fp32 float layers) needs fp32's scratch, twice 10.3's (fp16 softmax);
    a profile without TensorRT is counted strongly typed."""
    spec, profile = full_spec(), load_profile("orin-nano-8gb")
    weak = estimate_vision_bytes(spec, profile, ["int8", "fp32"])
    strong = estimate_vision_bytes(spec, replace(profile, tensorrt="11.1"), ["int8", "fp32"])
    unknown = estimate_vision_bytes(spec, replace(profile, tensorrt=None), ["int8"])
    scores = profile.max_batch * spec.heads * profile.max_patches ** 2
    hidden = profile.max_batch * profile.max_patches * (spec.mlp + 2 * spec.width)
    assert weak["int8"].workspace_bytes == (2 * scores + hidden) * 2 + 64 * MIB
    assert strong["int8"].workspace_bytes == unknown["int8"].workspace_bytes == (2 * scores + hidden) * 4 + 64 * MIB
    assert strong["fp32"].workspace_bytes == weak["fp32"].workspace_bytes == strong["int8"].workspace_bytes


def test_raised_workspace_is_held_to_the_vision_budget() -> None:
    """Under TensorRT 11.x the 8 GB Orin Nano's int8 workspace (2 GiB + 64 MiB) outgrows its 2 GiB vision budget:
    refused with the fix; a copy with max_batch 2 halves the scratch and fits."""
    spec, profile = full_spec(), replace(load_profile("orin-nano-8gb"), tensorrt="11.1")
    with pytest.raises(InputError) as error:
        size_bundle(spec, profile, ["int8"], "masked-2d")
    message = one_line(error)
    assert message.startswith("vision engines (int8) do not fit orin-nano-8gb") and "smaller max_batch" in message
    memory = size_bundle(spec, replace(profile, max_batch=2), ["int8"], "masked-2d")
    assert memory["fits"]
    assert memory["vision_estimates"]["int8"]["workspace_bytes"] == \
        (2 * 2 * 16 * 2048 * 2048 + 2 * 2048 * (4304 + 2 * 1152)) * 4 + 64 * MIB


def test_version_2_5_sizes_for_a_whole_image_per_batch() -> None:
    """2.5 puts all of an image's slices in one batch: the estimate follows the bundle's raised max batch."""
    profile = load_profile("orin-nano-4gb")
    spec = full_spec("2.5")
    masked = estimate_vision_bytes(spec, profile, ["int8"])["int8"]
    unmasked = estimate_vision_bytes(spec, profile, ["int8"], layout="unmasked-1d")["int8"]
    assert masked.batch == profile.max_batch
    assert unmasked.batch == profile.max_slices + 1
    assert unmasked.total_bytes > masked.total_bytes


@pytest.mark.parametrize("name", JETSONS)
def test_full_size_int8_engines_fit_every_jetson_budget(name: str) -> None:
    """The shipped profiles' vision budgets hold the full-size int8 engines (2.6, 4.0, 4.5), workspace included."""
    profile = load_profile(name)
    for version in ("2.6", "4.0", "4.5"):
        estimate = estimate_vision_bytes(full_spec(version), profile, ["int8"])["int8"]
        assert estimate.total_bytes <= profile.vision_memory_budget_bytes, (version, estimate.to_dict())


@pytest.mark.parametrize("name", JETSONS)
def test_full_size_2_5_int8_engines_fit_the_larger_budgets(name: str) -> None:
    """2.5's batch holds all of an image's slices (10): its int8 engines fit the vision budgets of 4.5 GiB and more,
    not those of 1-2 GiB (the configs/devices comments say which)."""
    profile = load_profile(name)
    estimate = estimate_vision_bytes(full_spec("2.5"), profile, ["int8"], layout="unmasked-1d")["int8"]
    fits = estimate.total_bytes <= profile.vision_memory_budget_bytes
    assert fits is (profile.vision_memory_budget_bytes >= 4.5 * GIB), estimate.to_dict()


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(InputError) as error:
        estimate_vision_bytes(full_spec(), load_profile("orin-nano-8gb"), ["int4"])
    assert "int4" in one_line(error)


# --- the box ---------------------------------------------------------------------------------------------------


def test_check_box_report() -> None:
    profile = load_profile("orin-nano-8gb")
    report = check_box(profile, GIB, 4 * GIB)
    assert report.fits
    assert report.total_bytes == GIB + 4 * GIB + profile.os_reserve_bytes
    assert report.headroom_bytes == profile.ram_bytes - report.total_bytes
    assert report.to_dict()["llm_bytes"] == 4 * GIB
    assert check_box(profile, GIB).llm_bytes is None


def test_check_box_refuses_with_the_sums() -> None:
    profile = load_profile("orin-nano-4gb")
    with pytest.raises(InputError) as error:
        check_box(profile, int(0.9 * GIB), LLM_8B_Q4_BYTES, precision="int8")
    message = one_line(error)
    assert message.startswith("does not fit orin-nano-4gb: vision engines (int8) 0.9 GiB + LLM 4.4 GiB + OS "
                              "reserve 1.0 GiB = 6.3 GiB > 4.0 GiB RAM")
    assert "smaller LLM" in message


def test_check_box_refuses_vision_over_budget() -> None:
    """Even with no LLM, the vision engines must stay within the profile's vision budget."""
    profile = load_profile("orin-nano-4gb")
    with pytest.raises(InputError) as error:
        check_box(profile, profile.vision_memory_budget_bytes + 1)
    message = one_line(error)
    assert "vision budget 1.0 GiB" in message and "orin-nano-4gb" in message


# --- the LLM ---------------------------------------------------------------------------------------------------


def test_gguf_size_plus_kv_cache(llm_gguf: Path) -> None:
    assert llm_bytes_from_gguf(llm_gguf, 0) == LLM_8B_Q4_BYTES
    assert llm_bytes_from_gguf(llm_gguf, 2048) == LLM_8B_Q4_BYTES + 2048 * KV_BYTES_PER_TOKEN
    assert llm_bytes_from_args(llm_gguf, None, None) == LLM_8B_Q4_BYTES + 4096 * KV_BYTES_PER_TOKEN
    assert llm_bytes_from_args(None, 123, None) == 123
    assert llm_bytes_from_args(None, None, None) is None


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(InputError) as error:
        llm_bytes_from_gguf(path)
    message = one_line(error)
    assert str(path) in message and "not a GGUF file" in message


@pytest.mark.parametrize("gguf, llm_bytes, context, words", [
    ("missing", None, None, "cannot read"),
    ("llm", 10, None, "not both"),
    (None, 10, 512, "--llm-context"),
    (None, 0, None, "positive"),
    ("llm", None, -1, "--llm-context"),
])
def test_llm_arguments_refused(llm_gguf: Path, tmp_path: Path, gguf, llm_bytes, context, words) -> None:
    path = {"missing": tmp_path / "nowhere.gguf", "llm": llm_gguf, None: None}[gguf]
    with pytest.raises(InputError) as error:
        llm_bytes_from_args(path, llm_bytes, context)
    assert words in one_line(error)


def test_host_targets_are_estimated_not_checked() -> None:
    """A development host has no unified memory to share: recorded, never refused."""
    memory = size_bundle(full_spec(), load_profile("host-x86"), ["fp32"], "masked-2d", llm_bytes=10 ** 12)
    assert memory["checked"] is False and memory["fits"] is False
    assert memory["precision"] == "fp32" and set(memory["vision_estimates"]) == {"fp32"}


def test_size_bundle_checks_the_default_precision_and_notes_the_rest() -> None:
    """Jetson targets are sized at their default precision (int8); larger exported precisions get a note."""
    notes: List[str] = []
    memory = size_bundle(full_spec(), load_profile("orin-nano-4gb"), ["fp32", "fp16"], "masked-2d", log=notes.append)
    assert memory["checked"] and memory["fits"] and memory["precision"] == "int8"
    assert set(memory["vision_estimates"]) == {"int8", "fp32", "fp16"}
    assert memory["vision_bytes"] == memory["vision_estimates"]["int8"]["total_bytes"]
    assert len(notes) == 2 and all("run int8 on the device" in note for note in notes)


# --- through the CLI -------------------------------------------------------------------------------------------


def _export(capsys: pytest.CaptureFixture, checkpoint: Path, out: Path, *extra: object) -> Tuple[int, List[str]]:
    capsys.readouterr()
    args: Sequence[str] = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--no-check",
                           *[str(e) for e in extra]]
    code = convert_main(list(args))
    return code, [line for line in capsys.readouterr().err.splitlines() if line.startswith("minicpmv-convert:")]


def _assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob("." + out.name + ".*"))


def test_8b_llm_refused_on_orin_nano_4gb(capsys, make_checkpoint, llm_gguf, tmp_path) -> None:
    out = tmp_path / "bundle"
    code, errors = _export(capsys, make_checkpoint("2.6"), out, "--target", "orin-nano-4gb", "--llm-gguf", llm_gguf)
    assert code == 2
    assert len(errors) == 1 and errors[0].startswith("minicpmv-convert: error: does not fit orin-nano-4gb:")
    assert "> 4.0 GiB RAM" in errors[0]
    _assert_nothing_written(out)


def test_8b_llm_accepted_on_agx_orin_32gb(capsys, make_checkpoint, llm_gguf, tmp_path) -> None:
    out = tmp_path / "bundle"
    code, errors = _export(capsys, make_checkpoint("2.6"), out, "--target", "agx-orin-32gb", "--llm-gguf", llm_gguf,
                           "--llm-context", 8192)
    assert code == 0 and not errors
    memory = Bundle.load(out).manifest["target"]["memory"]
    profile = load_profile("agx-orin-32gb")
    assert memory["llm_bytes"] == LLM_8B_Q4_BYTES + 8192 * KV_BYTES_PER_TOKEN
    assert memory["ram_bytes"] == profile.ram_bytes and memory["os_reserve_bytes"] == profile.os_reserve_bytes
    assert memory["headroom_bytes"] == profile.ram_bytes - memory["vision_bytes"] - memory["llm_bytes"] - \
        profile.os_reserve_bytes > 0
    assert memory["checked"] and memory["fits"] and memory["precision"] == "int8"


def test_not_a_gguf_refused_through_the_cli(capsys, make_checkpoint, tmp_path) -> None:
    fake = tmp_path / "model.bin"
    fake.write_bytes(b"\x80\x02junk")
    out = tmp_path / "bundle"
    code, errors = _export(capsys, make_checkpoint("2.6"), out, "--target", "orin-nano-8gb", "--llm-gguf", fake)
    assert code == 2 and len(errors) == 1 and "not a GGUF file" in errors[0] and str(fake) in errors[0]
    _assert_nothing_written(out)


def test_llm_bytes_through_the_cli(capsys, make_checkpoint, tmp_path) -> None:
    """--llm-bytes is taken as the LLM's total; too much for the box is refused with the sums."""
    out = tmp_path / "bundle"
    code, errors = _export(capsys, make_checkpoint("2.6"), out, "--target", "orin-nano-8gb",
                           "--llm-bytes", 7 * GIB)
    assert code == 2 and len(errors) == 1 and "LLM 7.0 GiB" in errors[0]
    _assert_nothing_written(out)
    code, errors = _export(capsys, make_checkpoint("2.6"), out, "--target", "orin-nano-8gb", "--llm-bytes", GIB)
    assert code == 0 and not errors
    assert Bundle.load(out).manifest["target"]["memory"]["llm_bytes"] == GIB


@pytest.mark.parametrize("target, jetpack, tensorrt, opset", [
    ("orin-nx-16gb", "6.0", "8.6", 17),
    ("orin-nano-8gb", "5.1", "8.5", 16),
])
def test_jetpack_sets_tensorrt_and_opset(capsys, make_checkpoint, tmp_path, target, jetpack, tensorrt, opset) -> None:
    out = tmp_path / "bundle"
    code, errors = _export(capsys, make_checkpoint("2.6"), out, "--target", target, "--jetpack", jetpack)
    assert code == 0 and not errors
    bundle = Bundle.load(out)
    entry = bundle.manifest["target"]
    assert (entry["jetpack"], entry["tensorrt"], entry["opset"]) == (jetpack, tensorrt, opset)
    assert bundle.graph("vpm", "fp32").opset == opset


@pytest.mark.parametrize("target, jetpack, words", [
    ("xavier-nx", "6.0", "cannot run JetPack 6.0"),
    ("agx-thor", "6.2", "cannot run JetPack 6.2"),
    ("orin-nano-8gb", "7.0", "cannot run JetPack 7.0"),
    ("orin-nano-8gb", "4.6", "not a supported release"),
    ("host-x86", "6.0", "not a Jetson"),
])
def test_refused_jetpack_through_the_cli(capsys, make_checkpoint, tmp_path, target, jetpack, words) -> None:
    """Refused before the checkpoint is read: stderr is the one error line."""
    out = tmp_path / "bundle"
    capsys.readouterr()
    code = convert_main(["export", "--checkpoint", str(make_checkpoint("2.6")), "--out", str(out),
                         "--target", target, "--jetpack", jetpack])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and words in err[0] and err[0].startswith("minicpmv-convert: error:")
    _assert_nothing_written(out)
