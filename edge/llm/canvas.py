"""MiniCPM-V 4.7's canvas positions for one image's span of the prompt, as llama.cpp's M-RoPE takes them.

4.7 gives every token from ``<image>`` to the markers closing the image a (t, h, w) position on one canvas that
starts where the image starts (its origin o): the visual tokens the positions the agent sent (relative to o), the
markers positions pinned to the canvas (transformers' ``MiniCPMV4_7Model.get_rope_index`` is the reference):

- ``<image>``: (o, o-1, o-1), just outside the canvas; ``</image>``: (o, o+H, o+W), its far corner;
- ``<slice>`` before a slice: its first position; ``</slice>`` after it: its last;
- a newline between rows of slices: (o, o + the row's last h, o + W), past the right edge;
- any other marker inside the span (a newline right after the image): (o, o, o).

H and W are the canvas size in tokens: rows x the first slice's height and cols x its width, or the overview's
own grid without slices. The text after the image goes on at o + max(H, W) + 1. Every position in the span has
t = o, so llama.cpp takes them in one go; its markers are fed as their token embedding rows (a token id would get
one position in t, h and w).
"""
from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..encoder.positions_3d import Markers
from ..errors import InputError

Segment = Union[str, int]


class Span(NamedTuple):
    """An image's span as rows (markers as their token embedding rows, then visual rows, in prompt order), their
    absolute (t, h, w) positions, the position the text after it starts at, and how many leading tokens of that
    text it took."""

    rows: np.ndarray  # float32 [n, width]
    positions: np.ndarray  # int64 [n, 3]
    next_pos: int
    absorbed: int


def canvas_span(segments: Sequence[Segment], blocks: Sequence[np.ndarray], relative: Sequence[np.ndarray],
                grid: Optional[Tuple[int, int]], origin: int, markers: Markers,
                tokenize: Callable[[str], List[int]], token_rows: Callable[[List[int]], np.ndarray],
                after: Sequence[int] = ()) -> Span:
    """The span from ``<image>``: `segments` the layout from ``<image>`` on (text, block index), `blocks` each
    block's rows, `relative` each block's (t, h, w) positions from the canvas origin, `grid` (cols, rows) or
    None, `origin` the position of ``<image>``, `after` the ids of the text that follows (its leading markers
    belong to the span, as in the reference). `token_rows` gives the embedding rows of token ids."""
    ids: List[int] = []
    extents: List[Tuple[int, int]] = []  # each block's [start, end) in ids
    for segment in segments:
        if isinstance(segment, int):
            extents.append((len(ids), len(ids) + len(blocks[segment])))
            ids += [-1] * len(blocks[segment])
        else:
            ids += tokenize(segment)
    absorbed = 0
    while absorbed < len(after) and after[absorbed] in markers:
        absorbed += 1
    ids += list(after[:absorbed])
    if not ids or ids[0] != markers.image_start or not blocks or len(extents) != len(blocks):
        raise InputError("the image's layout must start with <image> and hold every block once")
    o = origin
    positions = np.full((len(ids), 3), o, dtype=np.int64)
    positions[0, 1:] = max(o - 1, 0)
    for block, (start, end) in enumerate(extents):
        positions[start:end] = np.asarray(relative[block], dtype=np.int64) + o
    slices = extents[1:]
    if slices:
        cols = grid[0] if grid is not None else len(slices)
        first = np.asarray(relative[1])
        height, width = int(first[:, 1].max()) + 1, int(first[:, 2].max()) + 1
        rows_of_slices = len(slices) // cols
        canvas = (rows_of_slices * height, cols * width)
    else:
        thumb = np.asarray(relative[0])
        canvas = (int(thumb[:, 1].max()) + 1, int(thumb[:, 2].max()) + 1)
    thumb_end = extents[0][1]
    if thumb_end < len(ids):
        positions[thumb_end, 1:] = (o + canvas[0], o + canvas[1])
    for number, (start, end) in enumerate(slices):
        if start - 1 > 0:
            positions[start - 1, 1:] = positions[start, 1:]
        if end < len(ids):
            positions[end, 1:] = positions[end - 1, 1:]
        if number + 1 < len(slices) and slices[number + 1][0] - end > 2:  # a newline ends this row of slices
            row_end = (number // cols + 1) * height - 1
            positions[end + 1:slices[number + 1][0] - 1, 1:] = (o + row_end, o + canvas[1])
    marker_at = [i for i, token in enumerate(ids) if token >= 0]
    visual = np.concatenate([np.asarray(block, dtype=np.float32) for block in blocks])
    rows = np.empty((len(ids), visual.shape[1]), dtype=np.float32)
    rows[[i for i, token in enumerate(ids) if token < 0]] = visual
    rows[marker_at] = token_rows([ids[i] for i in marker_at])
    return Span(rows, positions, o + max(canvas) + 1, absorbed)
