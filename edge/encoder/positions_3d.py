"""MiniCPM-V 4.7's 3-D (temporal, height, width) M-RoPE positions of a whole prompt, computed on the host.

4.7 places every visual token on a "canvas" (docs/minicpmv.md, "4.6 and 4.7: positions"); text tokens keep 1-D
positions (all three channels equal) that continue after each canvas. This module reproduces transformers 5.24's
``MiniCPMV4_7Model.get_rope_index`` for one unpadded sequence without torch:

- ``token_ids``: the prompt's token ids; visual tokens may carry any id (they are found through ``kinds``).
- ``kinds``: per token 0 (text), 1 (image token) or 2 (video token), the processor's ``mm_token_type_ids``.
- ``image_grids`` / ``video_grids``: the patch grid (rows, cols) of every crop of that modality, in prompt order
  (overview first, then its slices row-major): the processor's ``target_sizes``.
- ``markers``: the ids of ``<image>``, ``</image>``, ``<slice>``, ``</slice>`` and ``"\\n"`` in the tokenizer.

``rope_positions`` returns int32 ``[3, n_tokens]`` (rows T, H, W); ``next_position`` the position of the first
generated token (``max + 1``), from which generation counts up on all three channels. ``piece_positions`` takes
the prompt as pieces instead (text token ids, and ``Block(grid)`` for each block of image rows), as an LLM runtime
that feeds image rows holds it. 4.6 does not use this:
its LLM gets plain 1-D positions.
"""
from __future__ import annotations

import itertools
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

Grid = Tuple[int, int]  # (rows, cols) of patches of one crop: the processor's target size
MERGE_FACTOR = {"4x": 2, "16x": 4}  # patches per LLM token along each side, per downsample mode
TEXT, IMAGE, VIDEO = 0, 1, 2


class Markers(NamedTuple):
    """Token ids of the layout's markers (config.json keys image_start_id ... newline_id of a 4.7 checkpoint)."""

    image_start: int
    image_end: int
    slice_start: int
    slice_end: int
    newline: int


class Block(NamedTuple):
    """A run of image rows in a prompt: one overview or tile of (rows, cols) patches (its SlicePlan.patch_grids
    entry); it holds rows * cols / merge^2 tokens."""

    grid: Grid


class Frame(NamedTuple):
    """One picture (or video frame): its overview run, the end of its closing markers, its slice runs."""

    kind: int
    start: int  # first overview token
    end: int  # one past the last overview token
    close: int  # one past the markers that close the frame
    slices: List[Tuple[int, int]]


class Group(NamedTuple):
    """Frames separated only by markers: they share one run of positions."""

    start: int  # the `<image>` marker opening the group
    end: int  # one past the markers closing its last frame
    frames: List[Frame]


def merge_factor(downsample_mode: str) -> int:
    if downsample_mode not in MERGE_FACTOR:
        raise ValueError("downsample_mode must be one of %s, got %r" % (", ".join(MERGE_FACTOR), downsample_mode))
    return MERGE_FACTOR[downsample_mode]


def canvas_coords(canvas: int, count: int) -> np.ndarray:
    """``round(linspace(0, canvas - 1, count))`` as torch computes it in float32 (ties to even): where `count`
    tokens of an overview land on a canvas `canvas` tokens long. With ``canvas == count`` it is ``arange``."""
    if count == 1:
        return np.zeros(1, dtype=np.int64)
    start, end = np.float32(0), np.float32(canvas - 1)
    step = np.float32(end - start) / np.float32(count - 1)
    index = np.arange(count, dtype=np.float32)
    halfway = count // 2  # torch counts the first half up from start and the second half down from end
    values = np.where(np.arange(count) < halfway, start + step * index,
                      end - step * (np.float32(count - 1) - index)).astype(np.float32)
    return np.round(values).astype(np.int64)


def crop_positions(origin: int, grid: Grid, factor: int, canvas: Optional[Grid] = None,
                   offset: Grid = (0, 0)) -> np.ndarray:
    """[3, tokens] positions of one crop's tokens, row-major: T = origin, H/W = origin + offset + canvas coords."""
    rows, cols = grid[0] // factor, grid[1] // factor
    canvas_rows, canvas_cols = canvas if canvas else (rows, cols)
    h = canvas_coords(canvas_rows, rows) + offset[0] + origin
    w = canvas_coords(canvas_cols, cols) + offset[1] + origin
    return np.stack([np.full(rows * cols, origin, dtype=np.int64), np.repeat(h, cols), np.tile(w, rows)])


def visual_groups(token_ids: Sequence[int], kinds: Sequence[int], markers: Markers) -> List[Group]:
    """The prompt's visual groups: each maximal non-text run is one crop; a crop right after ``<slice>`` belongs to
    the open frame, any other opens a frame; a frame joins the previous group when only markers lie between."""
    ids = list(token_ids)
    marker_set = set(markers)
    opened: List[Tuple[int, List[Tuple[int, int, int, List[Tuple[int, int]]]]]] = []
    slices: Optional[List[Tuple[int, int]]] = None
    previous_end = 0
    position = 0
    for kind, run in itertools.groupby(kinds):
        length = len(list(run))
        start, end = position, position + length
        position = end
        if kind == TEXT:
            continue
        if start == 0:
            raise ValueError("visual tokens at the start of the prompt: a crop must follow its <image> or <slice>")
        if slices is not None and ids[start - 1] == markers.slice_start:
            slices.append((start, end))
        else:
            slices = []
            frame = (kind, start, end, slices)
            if opened and all(t in marker_set for t in ids[previous_end:start - 1]):
                opened[-1][1].append(frame)
            else:
                opened.append((start - 1, [frame]))
        previous_end = end
    groups = []
    for group_start, frames in opened:
        closed = [Frame(kind, start, end, _close(ids, crops[-1][1] if crops else end, marker_set), crops)
                  for kind, start, end, crops in frames]
        groups.append(Group(group_start, closed[-1].close, closed))
    return groups


def _close(ids: List[int], index: int, marker_set: set) -> int:
    """One past the run of markers starting at `index`."""
    while index < len(ids) and ids[index] in marker_set:
        index += 1
    return index


def _slice_columns(slices: List[Tuple[int, int]]) -> Tuple[int, int]:
    """(rows, cols) of a frame's slices: a row ends where the gap between two slices is wider than
    ``</slice><slice>`` (the newline); an inconsistent count falls back to one row."""
    cols = len(slices)
    for k in range(len(slices) - 1):
        if slices[k + 1][0] - slices[k][1] > 2:
            cols = k + 1
            break
    rows = len(slices) // cols if cols else 1
    return (rows, cols) if rows * cols == len(slices) else (1, len(slices))


def rope_positions(token_ids: Sequence[int], kinds: Sequence[int], image_grids: Sequence[Grid],
                   downsample_mode: str, markers: Markers, video_grids: Sequence[Grid] = ()) -> np.ndarray:
    """int32 [3, n_tokens] (T, H, W) positions of a prompt, as transformers' MiniCPM-V 4.7 computes them."""
    if len(token_ids) != len(kinds):
        raise ValueError("token_ids and kinds differ in length: %d vs %d" % (len(token_ids), len(kinds)))
    factor = merge_factor(downsample_mode)
    ids = list(token_ids)
    n = len(ids)
    positions = np.tile(np.arange(n, dtype=np.int64), (3, 1))
    grids: Dict[int, Iterator[Grid]] = {IMAGE: iter(image_grids), VIDEO: iter(video_grids)}

    def next_grid(kind: int) -> Grid:
        grid = next(grids[kind], None)
        if grid is None:
            raise ValueError("more %s crops in the prompt than grids given" % ("image" if kind == IMAGE else "video"))
        return int(grid[0]), int(grid[1])

    def place(start: int, end: int, values: np.ndarray) -> None:
        if values.shape[1] != end - start:
            raise ValueError("a crop of %d tokens at %d does not match its grid's %d tokens"
                             % (end - start, start, values.shape[1]))
        positions[:, start:end] = values

    current, index = 0, 0
    for group in visual_groups(ids, kinds, markers):
        positions[:, index:group.start] = np.arange(group.start - index) + current
        current += group.start - index
        cursor = group.start
        for frame in group.frames:
            overview = next_grid(frame.kind)
            opener = frame.start - 1
            if opener > cursor:  # text between two frames of a group, then one step of room
                positions[:, cursor:opener] = np.arange(opener - cursor) + current
                current += opener - cursor + 1
            close = min(frame.close, group.end)
            origin = current
            canvas = (overview[0] // factor, overview[1] // factor)
            rows = cols = 0
            tile: Grid = (0, 0)
            first_slice: Grid = (0, 0)
            if frame.slices:
                rows, cols = _slice_columns(frame.slices)
                first_slice = next_grid(frame.kind)
                tile = (first_slice[0] // factor, first_slice[1] // factor)
                canvas = (rows * tile[0], cols * tile[1])
            positions[:, opener:close] = origin
            positions[1:, opener] = max(origin - 1, 0)  # `<image>`: just outside the canvas' top-left corner
            if frame.end < close:  # `</image>`: the far corner
                positions[1:, frame.end] = [origin + canvas[0], origin + canvas[1]]
            place(frame.start, frame.end, crop_positions(origin, overview, factor, canvas))
            for k, (start, end) in enumerate(frame.slices):
                offset = ((k // cols) * tile[0], (k % cols) * tile[1])
                grid = first_slice if k == 0 else next_grid(frame.kind)
                size = (grid[0] // factor, grid[1] // factor)
                if start - 1 >= opener:  # `<slice>`: the slice's top-left corner
                    positions[1:, start - 1] = [origin + offset[0], origin + offset[1]]
                if end < close:  # `</slice>`: its bottom-right corner
                    positions[1:, end] = [origin + offset[0] + size[0] - 1, origin + offset[1] + size[1] - 1]
                place(start, end, crop_positions(origin, grid, factor, offset=offset))
            for k in range(len(frame.slices) - 1):  # a row's newline: just past the row's right edge
                gap_start, gap_end = frame.slices[k][1], frame.slices[k + 1][0]
                if gap_end - gap_start > 2:
                    positions[1, gap_start + 1:gap_end - 1] = origin + (k // cols + 1) * tile[0] - 1
                    positions[2, gap_start + 1:gap_end - 1] = origin + cols * tile[1]
            current = origin + max(canvas) + 1
            cursor = close
        if cursor < group.end:
            positions[:, cursor:group.end] = np.arange(group.end - cursor) + current
            current += group.end - cursor
        index = group.end
    positions[:, index:] = np.arange(n - index) + current
    return positions.astype(np.int32)


def piece_positions(pieces: Sequence[Union[Sequence[int], Block]], downsample_mode: str,
                    markers: Markers) -> List[np.ndarray]:
    """`rope_positions` of a prompt given as pieces in order (text token ids, or a `Block` of image rows), split
    back per piece: one int32 [3, piece length] array each."""
    factor = merge_factor(downsample_mode)
    ids: List[int] = []
    kinds: List[int] = []
    grids: List[Grid] = []
    lengths = []
    for piece in pieces:
        if isinstance(piece, Block):
            count = (piece.grid[0] // factor) * (piece.grid[1] // factor)
            ids += [-1] * count
            kinds += [IMAGE] * count
            grids.append(piece.grid)
            lengths.append(count)
        else:
            ids += list(piece)
            kinds += [TEXT] * len(piece)
            lengths.append(len(piece))
    positions = rope_positions(ids, kinds, grids, downsample_mode, markers)
    return np.split(positions, np.cumsum(lengths)[:-1], axis=1) if lengths else []


def next_position(positions: np.ndarray) -> int:
    """The position of the first token after the prompt; later tokens count up from it on all three channels
    (transformers' ``rope_deltas`` is this minus the prompt length)."""
    return int(positions.max()) + 1 if positions.size else 0
