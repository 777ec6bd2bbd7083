"""MiniCPM-V 4.7's visual token positions as the agent sends them with the tokens (docs/stream.md): each token's
(t, h, w) on its image's canvas, counted from the canvas origin (the position of ``<image>``), so that the LLM adds
where the image starts in its prompt. Computed by ``positions_3d`` for the image's own layout."""
from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from .positions_3d import Block, Grid, Markers, piece_positions
from .prompt import PromptLayout

MARKERS = ("<image>", "</image>", "<slice>", "</slice>", "\n")
_IDS = Markers(*range(len(MARKERS)))  # stand-in ids: only the layout's own markers are text here
_MARKER = re.compile("|".join(re.escape(m) for m in MARKERS))


def visual_positions(layout: PromptLayout, grid: Optional[Tuple[int, int]], patch_grids: Sequence[Grid],
                     downsample_mode: str) -> np.ndarray:
    """int32 [tokens, 3]: the (t, h, w) of every visual token of one image (overview first, then its slices
    row-major), from the canvas origin. `patch_grids` are the blocks' (rows, cols) of patches."""
    segments = layout.segments(grid)
    _, mark, rest = str(segments[0]).partition("<image>")
    pieces: List[Union[List[int], Block]] = []
    for segment in [mark + rest] + list(segments[1:]):
        if isinstance(segment, int):
            pieces.append(Block(tuple(patch_grids[segment])))
        else:
            pieces.append([MARKERS.index(found) for found in _MARKER.findall(segment)])
    placed = piece_positions(pieces, downsample_mode, _IDS)
    visual = [positions for piece, positions in zip(pieces, placed) if isinstance(piece, Block)]
    return np.concatenate(visual, axis=1).T.astype(np.int32)
