"""MiniCPM-V 4.6 / 4.7: the exported fp32 graphs (ONNX Runtime) equal transformers' own vision tower and merger
(``MiniCPMV4_6VisionModel`` + ``MiniCPMV4_6Merger``, and the 4.7 classes) in both downsample modes, on odd grids,
extreme aspect ratios and padded batches of different slices; the host feeds equal transformers' ids."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Sequence

import numpy as np
import pytest
import torch
from transformers.vision_utils import get_vision_nearest_position_ids

from converter.checkpoint import load_vision_checkpoint
from converter.cli import main
from converter.modeling import MergerHead, MergerVisionTower
from edge.bundle.manifest import Bundle
from edge.engines.onnxrt import open_session
from edge.preprocess.graph_inputs import pack_slices
from edge.preprocess.merger_inputs import merge_order, nearest_position_ids, pack_merger_slices
from references.merger import MergerReference
from tests.converter.closeness import assert_close, random_slices

# grids in patches: odd numbers of merge blocks, 1:17 and 17:1, and a padded batch of three different slices
SIZES = {
    "16x": {"3x5 blocks": [(12, 20)], "1:17": [(4, 68)], "17:1": [(68, 4)], "7x9 blocks": [(28, 36)],
            "padded batch": [(12, 20), (4, 68), (36, 12)]},
    "4x": {"3x5 blocks": [(6, 10)], "1:37": [(2, 74)], "37:1": [(74, 2)], "7x9 blocks": [(14, 18)],
           "padded batch": [(6, 10), (2, 74), (18, 14)]},
}
CASES = [(mode, name) for mode in SIZES for name in SIZES[mode]]


def _run(vpm, resampler, slices: Sequence[np.ndarray], layout: str) -> List[np.ndarray]:
    """Tokens of each slice through the two ONNX Runtime sessions, padding rows dropped."""
    packed = pack_slices(slices, layout)
    tokens = resampler.run(None, {"vision_embeds": vpm.run(None, packed.vpm)[0]})[0]
    per_token = 16 if layout == "merger-16x" else 4
    return [tokens[i, : r * c // per_token] for i, (r, c) in enumerate(packed.sizes)]


@pytest.fixture(scope="module")
def exported(make_checkpoint, tmp_path_factory):
    """(bundle, sessions, reference) per (version, mode): fp32 graphs exported through the CLI."""
    cache = {}

    def get(version: str, mode: str):
        if (version, mode) not in cache:
            checkpoint = make_checkpoint(version)
            out = tmp_path_factory.mktemp("merger") / ("%s-%s" % (version, mode))
            assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out),
                         "--downsample-mode", mode]) == 0
            bundle = Bundle.load(out)
            sessions = [open_session(bundle.graph_path(m, "fp32")) for m in ("vpm", "resampler")]
            ck = load_vision_checkpoint(checkpoint)
            cache[version, mode] = bundle, sessions, MergerReference(ck.config, ck.tensors)
        return cache[version, mode]

    return get


@pytest.mark.parametrize("version", ["4.6", "4.7"])
@pytest.mark.parametrize("mode,case", CASES, ids=["%s-%s" % c for c in CASES])
def test_onnx_equals_transformers(exported, version, mode, case):
    bundle, (vpm, resampler), reference = exported(version, mode)
    slices = random_slices(SIZES[mode][case], seed=len(case))
    got = _run(vpm, resampler, slices, bundle.model.slice.layout)
    for index, want in enumerate(reference.tokens(slices, mode)):
        assert_close(got[index], want, "%s %s slice %s" % (version, mode, SIZES[mode][case][index]))


def test_manifest_records_the_mode(exported):
    for mode in ("16x", "4x"):
        bundle = exported("4.6", mode)[0]
        assert bundle.model.slice.layout == "merger-" + mode
        assert bundle.model.merger["downsample_mode"] == mode and bundle.model.merger["modes"] == [mode]
        assert bundle.model.merger["patches_per_token"] == (16 if mode == "16x" else 4)
        shapes = [bundle.shapes(m).patches for m in ("vpm", "resampler")]
        block = 16 if mode == "16x" else 4
        assert shapes[0].min == block and shapes[0].max % block == 0
        assert shapes[1].max == (shapes[0].max // 4 if mode == "16x" else shapes[0].max)
    smaller = exported("4.6", "4x")[0].graph("vpm", "fp32").bytes
    assert smaller < exported("4.6", "16x")[0].graph("vpm", "fp32").bytes  # no window-merger weights in 4x


@pytest.mark.parametrize("mode", ["16x", "4x"])
def test_modules_equal_transformers_own_random_init(make_checkpoint, mode):
    """Weights from transformers' own seeded initialisation (not the synthetic checkpoint's), merger_times 2."""
    ck = load_vision_checkpoint(make_checkpoint("4.6"))
    config = dict(ck.config, merger_times=2)
    reference = MergerReference(config, seed=3)
    spec = ck.spec.__class__(**dict(ck.spec.__dict__, merger_times=2, downsample_mode=mode))
    tower = MergerVisionTower.from_tensors(spec, reference.state(), mode)
    head = MergerHead.from_tensors(spec, reference.state())
    block = 8 if mode == "16x" else 4  # three 2x2 merges, or two
    sizes = [(3 * block, 5 * block), (block, 2 * block)]
    slices = random_slices(sizes, seed=4)
    packed = pack_merger_slices(slices, mode, merger_times=2)
    with torch.no_grad():
        tokens = head(tower(*(torch.from_numpy(v) for v in packed.vpm.values()))).numpy()
    for index, want in enumerate(reference.tokens(slices, mode)):
        assert_close(tokens[index, : packed.token_counts[index]], want, "slice %s" % (sizes[index],))


@pytest.mark.parametrize("grid", [70, 14])
def test_position_ids_equal_transformers(grid):
    for rows in range(1, 130):
        cols = 1 + (rows * 37) % 97
        want = get_vision_nearest_position_ids(torch.tensor([[rows, cols]]), grid).numpy()
        assert np.array_equal(nearest_position_ids(rows, cols, grid), want), (rows, cols)


def test_merge_order_nests_two_by_two_blocks():
    order = merge_order(4, 8, 2)  # two 4x4 blocks side by side
    assert order[:4].tolist() == [0, 1, 8, 9]  # first window, raster inside
    assert order[4:8].tolist() == [2, 3, 10, 11]  # second window of the first block
    assert order[16:20].tolist() == [4, 5, 12, 13]  # the second block starts at column 4
    assert sorted(order.tolist()) == list(range(32))
    with pytest.raises(ValueError, match="not divisible by 4"):
        merge_order(6, 8, 2)


def test_downsample_mode_needs_a_merger_version(make_checkpoint, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main(["export", "--checkpoint", str(make_checkpoint("2.6")), "--out", str(out),
                 "--downsample-mode", "4x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--downsample-mode" in err
    assert not out.exists()


def test_checkpoint_config_has_transformers_keys(make_checkpoint):
    config = json.loads((Path(make_checkpoint("4.7")) / "config.json").read_text())
    assert config["model_type"] == "minicpmv4_7"
    for key in ("vision_config", "text_config", "insert_layer_id", "downsample_mode", "merge_kernel_size",
                "merger_times"):
        assert key in config


@pytest.mark.parametrize("mode", ["16x", "4x"])
def test_full_size_parameter_counts_equal_transformers(mode):
    """The sizing's parameter counts (from the expected tensor shapes) equal transformers' full-size 4.6 modules,
    built on the meta device (no memory); "4x" graphs leave the window merger out."""
    from dataclasses import replace

    from converter.checkpoint_layout import vision_spec
    from converter.sizing import vision_parameters
    from converter.synthetic import synthetic_config

    config = synthetic_config("4.6", "full")
    with torch.device("meta"):
        reference = MergerReference(config)
    tower = sum(p.numel() for p in reference.tower.parameters())
    window = sum(p.numel() for p in reference.tower.vit_merger.parameters())
    counts = vision_parameters(replace(vision_spec(config, "4.6"), downsample_mode=mode))
    assert counts["vpm"] == (tower if mode == "16x" else tower - window)
    assert counts["resampler"] == sum(p.numel() for p in reference.merger.parameters())
