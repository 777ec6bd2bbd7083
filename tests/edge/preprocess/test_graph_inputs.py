"""Graph input packing: the official strip layout, padding, ids and counts per layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge.preprocess.graph_inputs import pack_slices, to_strip
from edge.preprocess.position_ids import slice_position_ids, strip_position_ids


def official_reshape_by_patch(image: torch.Tensor) -> torch.Tensor:
    """The official processor's layout: unfold 14x14 patches, then [3, 14, 14 * L]."""
    patches = torch.nn.functional.unfold(image, (14, 14), stride=(14, 14))
    patches = patches.reshape(image.size(0), 14, 14, -1)
    return patches.permute(0, 1, 3, 2).reshape(image.size(0), 14, -1)


@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 5), (32, 32), (4, 286)])
def test_strip_equals_official_layout(rows, cols):
    image = np.random.default_rng(rows * cols).standard_normal((3, 14 * rows, 14 * cols)).astype(np.float32)
    np.testing.assert_array_equal(to_strip(image), official_reshape_by_patch(torch.from_numpy(image)).numpy())


def test_masked_layout_pads_and_masks():
    slices = [np.ones((3, 14 * 2, 14 * 3), np.float32), np.ones((3, 14 * 4, 14 * 4), np.float32)]
    packed = pack_slices(slices, "masked-2d")
    assert packed.vpm["pixel_values"].shape == (2, 3, 14, 14 * 16)
    assert packed.vpm["patch_counts"].tolist() == [6, 16]
    np.testing.assert_array_equal(packed.vpm["position_ids"][0, :6], slice_position_ids(2, 3))
    assert not packed.vpm["position_ids"][0, 6:].any() and not packed.vpm["pixel_values"][0, :, :, 14 * 6:].any()
    assert packed.resampler["tgt_sizes"].tolist() == [[2, 3], [4, 4]]
    assert all(v.dtype == np.int32 for k, v in packed.vpm.items() if k != "pixel_values")


def test_unmasked_layout_is_one_d_over_the_longest():
    slices = [np.ones((3, 14 * 2, 14 * 3), np.float32), np.ones((3, 14 * 4, 14 * 4), np.float32)]
    packed = pack_slices(slices, "unmasked-1d")
    assert packed.vpm["patch_counts"].tolist() == [16, 16]
    for row in packed.vpm["position_ids"]:
        np.testing.assert_array_equal(row, strip_position_ids(16))


def test_bad_slices_refused():
    with pytest.raises(ValueError):
        pack_slices([np.ones((3, 15, 14), np.float32)], "masked-2d")
    with pytest.raises(ValueError):
        pack_slices([np.ones((3, 14, 14), np.float32)], "sideways")
