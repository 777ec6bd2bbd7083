"""Exported graphs (ONNX Runtime) equal the project's torch modules and independent references, per version."""
from __future__ import annotations

from typing import Sequence, Tuple

import pytest
import torch

from converter.checkpoint import load_vision_checkpoint
from converter.export import build_modules
from edge.bundle.manifest import Bundle
from edge.engines.onnxrt import open_session
from edge.preprocess.graph_inputs import pack_slices
from references.models import ReferenceChain, vpm_reference_forward
from tests.conftest import VERSIONS
from tests.converter.closeness import assert_close, random_slices

# Slice sides of 25, 49 and 58 patches (where floor/i*step ids are off), 78 and 286 (beyond the 70 grid).
SINGLE_SLICES = [(25, 41), (49, 21), (58, 18), (12, 78), (4, 286)]


class Chain:
    """One version's exported bundle, its torch modules and its references."""

    def __init__(self, bundle_path, checkpoint_path) -> None:
        self.bundle = Bundle.load(bundle_path)
        self.layout = self.bundle.model.slice.layout
        ck = load_vision_checkpoint(checkpoint_path)
        self.modules = build_modules(ck, self.bundle.target.max_patches)
        self.references = ReferenceChain(ck.tensors, ck.spec)
        self.vpm, self.resampler = (open_session(self.bundle.graph_path(m, "fp32")) for m in ("vpm", "resampler"))

    def check(self, sizes: Sequence[Tuple[int, int]], seed: int = 0) -> None:
        slices = random_slices(sizes, seed)
        packed = pack_slices(slices, self.layout)
        features = self.vpm.run(None, packed.vpm)[0]
        tokens = self.resampler.run(None, {"vision_embeds": features, **packed.resampler})[0]
        with torch.no_grad():
            own_features = self.modules["vpm"](*(torch.from_numpy(v) for v in packed.vpm.values()))
            own_tokens = self.modules["resampler"](own_features, torch.from_numpy(packed.resampler["tgt_sizes"]))
        assert_close(features, own_features.numpy(), "VPM onnx vs torch module")
        assert_close(tokens, own_tokens.numpy(), "Resampler onnx vs torch module")
        vpm_rows, want_tokens = self.references.expected(slices, self.layout, features, packed.sizes)
        for index, ((r, c), want) in enumerate(zip(packed.sizes, vpm_rows)):
            assert_close(features[index, : r * c], want, "VPM slice %dx%d vs Idefics2" % (r, c))
        assert_close(tokens, want_tokens, "Resampler vs MultiheadAttention")


@pytest.fixture(scope="module")
def chains(make_bundle, make_checkpoint):
    cache = {}

    def get(version: str) -> Chain:
        if version not in cache:
            cache[version] = Chain(make_bundle(version), make_checkpoint(version))
        return cache[version]

    return get


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("sizes", SINGLE_SLICES, ids=lambda s: "%dx%d" % s)
def test_single_slice_matches_references(chains, version, sizes):
    chains(version).check([sizes])


@pytest.mark.parametrize("version", ["2.6", "o-2.6", "4.0", "4.5"])
def test_padded_batch_of_differentrandom_slices(chains, version):
    """Slices of different sizes share one zero-padded batch; masked keys make each equal its lone result."""
    chains(version).check([(10, 20), (25, 41), (7, 9), (49, 21)], seed=1)


def test_v25_image_with_slices_of_different_lengths(chains):
    """2.5: one image's overview (24x43 = 1032 patches) and tiles (34x30 = 1020) padded to the longest,
    1-D ids over 1032 for every slice, padding attending as keys (the official mask bug)."""
    chain = chains("2.5")
    assert chain.layout == "unmasked-1d"
    chain.check([(24, 43), (34, 30), (34, 30)], seed=2)


def test_v25_padding_changes_tokens(chains):
    """The 2.5 reference really depends on padding: the same tile alone and padded next to a longer slice
    give different features (so the batching rule is load-bearing, and the test above can fail)."""
    chain = chains("2.5")
    tile, longer = random_slices([(6, 5), (6, 8)], seed=3)
    alone = vpm_reference_forward(chain.references.vpm, [tile], "unmasked-1d")[0]
    padded = vpm_reference_forward(chain.references.vpm, [tile, longer], "unmasked-1d")[0]
    assert float((alone - padded).abs().max()) > 1e-3
