"""MiniCPM-V 4.6 / 4.7 whole images: `VisionEncoder.encode(resize="exact")` on an fp32 bundle (ONNX Runtime) equals
transformers' own path, its PIL image processor (``MiniCPMV4_6ImageProcessorPil``: slicing, Pillow bicubic resizes,
normalisation, NaViT packing) then ``MiniCPMV4_6Model`` / ``MiniCPMV4_7Model.get_image_features`` (what the model
scatters into the image placeholders), built from the checkpoint's config with its weights loaded, in both
downsample modes: the same slices in the same order, the same token count per slice, tokens equal to 1e-4 of the
output scale."""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import MiniCPMV4_6Config, MiniCPMV4_7Config
from transformers.models.minicpmv4_6 import MiniCPMV4_6ImageProcessorPil, MiniCPMV4_6Model
from transformers.models.minicpmv4_7 import MiniCPMV4_7Model

from converter.calibration_data import vpm_batches
from converter.checkpoint import load_vision_checkpoint
from converter.cli import main
from edge import VisionEncoder
from edge.preprocess.preprocessor import Preprocessor, slice_config
from edge.preprocess.scenes import synthetic_scene

RELATIVE_TOLERANCE = 1e-4  # max abs error as a fraction of the reference tokens' max |value|, fp32
# (width, height): not sliced; sliced 3x1 and 1x2 (tiles across, then down); extreme aspect ratios unsliced, sliced
SIZES = [(300, 200), (1000, 300), (480, 640), (1600, 90), (2400, 120)]
SLICED = [False, True, True, False, True]
MODELS = {"minicpmv4_6": (MiniCPMV4_6Config, MiniCPMV4_6Model), "minicpmv4_7": (MiniCPMV4_7Config, MiniCPMV4_7Model)}
# the language model is not on the image path: one small layer keeps building the whole model cheap
TINY_TEXT = {"vocab_size": 64, "intermediate_size": 64, "num_hidden_layers": 1, "layer_types": ["full_attention"],
             "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}


class TransformersImagePath:
    """transformers' image processor and model of one checkpoint, run as the model's forward runs them."""

    def __init__(self, checkpoint) -> None:
        ck = load_vision_checkpoint(checkpoint)
        config_class, model_class = MODELS[ck.config["model_type"]]
        fields = {k: v for k, v in ck.config.items() if k not in ("model_type", "architectures", "_synthetic")}
        fields["text_config"] = dict(fields["text_config"], **TINY_TEXT)
        config = config_class(**fields)
        config.vision_config._attn_implementation = "eager"
        torch.manual_seed(0)
        self.model = model_class(config).float().eval()
        weights = {k[len("model."):]: v for k, v in ck.tensors.items()}
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        assert not unexpected and all(k.startswith("language_model.") for k in missing), (missing, unexpected)
        self.patch_size = config.vision_config.patch_size

    @torch.no_grad()
    def tokens(self, rgb: np.ndarray, mode: str, slicing: Dict[str, int]) -> Tuple[List[np.ndarray], List[List[int]]]:
        """Per-slice tokens (overview first, then tiles row-major) and each slice's patch grid."""
        processor = MiniCPMV4_6ImageProcessorPil()
        inputs = processor(Image.fromarray(rgb), downsample_mode=mode, return_tensors="pt", **slicing)
        features = self.model.get_image_features(inputs["pixel_values"][:1], inputs["target_sizes"],
                                                 downsample_mode=mode)
        return [t.numpy() for t in features.pooler_output], inputs["target_sizes"].tolist()


@pytest.fixture(scope="module")
def paths(make_checkpoint, tmp_path_factory):
    """(encoder, transformers' path) per (version, mode): an fp32 bundle exported through the CLI, opened once."""
    cache: Dict[Tuple[str, str], Tuple[VisionEncoder, TransformersImagePath]] = {}
    references: Dict[str, TransformersImagePath] = {}

    def get(version: str, mode: str):
        if (version, mode) not in cache:
            checkpoint = make_checkpoint(version)
            out = tmp_path_factory.mktemp("e2e") / ("%s-%s" % (version, mode))
            assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--precision", "fp32",
                         "--downsample-mode", mode]) == 0
            if version not in references:
                references[version] = TransformersImagePath(checkpoint)
            cache[version, mode] = VisionEncoder.from_bundle(out, resize="exact"), references[version]
        return cache[version, mode]

    yield get
    for encoder, _ in cache.values():
        encoder.close()


@pytest.mark.parametrize("version", ["4.6", "4.7"])
@pytest.mark.parametrize("mode", ["16x", "4x"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "%dx%d" % s)
def test_encode_equals_transformers_processor_and_model(paths, version, mode, size):
    encoder, reference = paths(version, mode)
    rgb = synthetic_scene(size[0], size[1], seed=size[0] + size[1])
    got = encoder.encode(rgb)
    config = encoder.preprocessor.config
    want, target_sizes = reference.tokens(rgb, mode, {"scale_resolution": config.scale_resolution,
                                                      "max_slice_nums": config.max_slice_nums,
                                                      "patch_size": config.patch_size})
    assert [list(grid) for grid in got.patch_grids] == target_sizes
    assert got.token_counts == [len(t) for t in want]
    want_tokens = np.concatenate(want)
    assert got.tokens.shape == want_tokens.shape
    error, scale = float(np.abs(got.tokens - want_tokens).max()), float(np.abs(want_tokens).max())
    print("%s %s %dx%d: %d slices, max abs error / scale %.2e" % (version, mode, size[0], size[1], len(want),
                                                                   error / scale))  # docs/benchmarks.md, with -s
    assert error <= RELATIVE_TOLERANCE * scale, "%s %s %dx%d: max abs error %.3g, scale %.3g" % (
        version, mode, size[0], size[1], error, scale)


def test_the_sizes_cover_sliced_and_unsliced_images(paths):
    """Guard for the test above: the sizes include an unsliced image and sliced ones, and the reference sees the
    image (another image gives clearly different tokens)."""
    encoder, reference = paths("4.6", "16x")
    grids = [encoder.preprocessor.plan(synthetic_scene(w, h, seed=1)).grid for w, h in SIZES]
    assert [grid is not None for grid in grids] == SLICED
    slicing = {"scale_resolution": encoder.preprocessor.config.scale_resolution}
    a, b = (np.concatenate(reference.tokens(synthetic_scene(300, 200, seed), "16x", slicing)[0]) for seed in (0, 1))
    assert float(np.abs(a - b).max()) > 100 * RELATIVE_TOLERANCE * float(np.abs(a).max())


@pytest.mark.parametrize("mode", ["16x", "4x"])
def test_calibration_and_verify_feed_the_processors_slices(paths, mode):
    """calibrate and verify (converter.calibration_data.vpm_batches with the bundle's slicing) feed the slices
    transformers' processor makes for the same image: the same patch grids, in the same order, none cropped."""
    encoder, reference = paths("4.6", mode)
    rgb = synthetic_scene(1000, 300, seed=5)
    batches = vpm_batches([rgb], Preprocessor(slice_config(encoder.bundle), "exact"), encoder.layout,
                          encoder.max_batch, encoder.bundle.model.query_num)
    config = encoder.preprocessor.config
    _, target_sizes = reference.tokens(rgb, mode, {"scale_resolution": config.scale_resolution,
                                                   "max_slice_nums": config.max_slice_nums})
    assert [list(size) for batch in batches for size in batch["sizes"]] == target_sizes
