"""edge.position_ids (numpy, no torch) equals the official torch arithmetic; the known traps are real."""
from __future__ import annotations

import numpy as np
import pytest

from edge.preprocess.position_ids import bucket_coords, slice_position_ids, strip_position_ids
from references.models import official_bucket_coords, official_ids_2d

# docs/minicpmv.md: sizes n <= 140 where the official float32 ids are one bucket below floor(70 * i / n).
FLOOR_TRAPS = [25, 49, 50, 55, 58, 77, 82, 86, 94, 98, 100, 110, 115, 135]


def test_bucket_coords_equal_torch_for_every_side_up_to_4096():
    mismatched = [n for n in range(1, 4097) if not np.array_equal(bucket_coords(n), official_bucket_coords(n).numpy())]
    assert mismatched == []


def test_floor_formula_differs_exactly_at_the_spec_traps():
    differs = [n for n in range(1, 141) if not np.array_equal(bucket_coords(n), 70 * np.arange(n) // n)]
    assert differs == FLOOR_TRAPS


def test_two_d_ids_row_major_and_one_d_strip():
    for rows, cols in [(25, 41), (49, 21), (4, 286), (1, 1)]:
        ids = slice_position_ids(rows, cols)
        assert ids.dtype == np.int32
        np.testing.assert_array_equal(ids, official_ids_2d(rows, cols).numpy())
    np.testing.assert_array_equal(strip_position_ids(1032), official_bucket_coords(1032).numpy())


def test_side_must_be_positive():
    with pytest.raises(ValueError):
        bucket_coords(0)
