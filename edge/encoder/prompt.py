"""Where an image's tokens go in the LLM prompt: the placeholder layout per model version (docs/minicpmv.md).

Each token block (Q embeddings: the overview or one tile) takes the place of Q ``<unk>`` placeholders:

- ``v2.6`` (2.6, o-2.6, 4.x): ``<image_id>i</image_id>`` (when ``use_image_id``) ``<image>`` Q ``</image>``,
  then the grid's rows joined by ``\\n``, each row the concatenation of ``<slice>`` Q ``</slice>`` per tile.
- ``v2.5``: ``<image>`` Q ``</image>``, then ``<slice>`` + rows joined by ``\\n`` of ``<image>`` Q ``</image>``
  per tile + ``</slice>``.

``segments`` gives the layout as text pieces and block numbers (the rows of ``EncodedImage.tokens``), which is
what an LLM runtime that injects embeddings needs; ``text`` renders it with the placeholder token.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

from ..bundle.facts import ModelFacts

Segment = Union[str, int]  # literal prompt text, or the index of a token block in EncodedImage.tokens
STYLES = ("v2.5", "v2.6", "v4.6", "v4.7")
MERGER_STYLES = ("v4.6", "v4.7")  # blocks differ in token count: the caller gives the counts
UNK = "<unk>"


class PromptLayout(NamedTuple):
    """The facts the layout depends on, as recorded in a bundle manifest's ``model`` section."""

    style: str
    query_num: int  # tokens per block; 0 for the merger styles, whose blocks carry their own counts
    use_image_id: bool

    @classmethod
    def from_facts(cls, model: ModelFacts) -> PromptLayout:
        """The layout of a bundle's model (`Bundle.model`)."""
        if model.prompt_style not in STYLES:
            raise ValueError("unknown prompt style %r (expected one of %s)" % (model.prompt_style, ", ".join(STYLES)))
        return cls(model.prompt_style, model.query_num, model.use_image_id)

    def segments(self, grid: Optional[Tuple[int, int]], image_index: int = 0) -> List[Segment]:
        """The layout of one image with `grid` (cols, rows) or None; `image_index` numbers images in a prompt."""
        tiles = [] if grid is None else [[1 + r * grid[0] + c for c in range(grid[0])] for r in range(grid[1])]
        overview: List[Segment] = ["<image>", 0, "</image>"]
        if self.style != "v2.5":
            image_id: List[Segment] = ["<image_id>%d</image_id>" % image_index] if self.use_image_id else []
            return _merge(image_id + overview + _grid(tiles, "<slice>", "</slice>"))
        sliced: List[Segment] = ["<slice>"] + _grid(tiles, "<image>", "</image>") + ["</slice>"] if tiles else []
        return _merge(overview + sliced)

    def block_tokens(self, grid: Optional[Tuple[int, int]], counts: Optional[Sequence[int]] = None) -> List[int]:
        """Tokens of every block of an image with `grid`, overview first: `counts` for the merger styles (required,
        one per block), Q each otherwise (`counts`, if given, must agree)."""
        blocks = 1 + (grid[0] * grid[1] if grid else 0)
        if counts is None:
            if self.style in MERGER_STYLES:
                raise ValueError("style %s needs the token count of every block (SlicePlan.token_counts)" % self.style)
            return [self.query_num] * blocks
        if len(counts) != blocks or (self.style not in MERGER_STYLES and set(counts) != {self.query_num}):
            raise ValueError("%d block counts %s do not fit a grid of %s blocks of style %s"
                             % (len(counts), list(counts), blocks, self.style))
        return [int(c) for c in counts]

    def text(self, grid: Optional[Tuple[int, int]], image_index: int = 0, unk: str = UNK,
             counts: Optional[Sequence[int]] = None) -> str:
        """The placeholder string the official processor puts in the prompt for one image (`counts`: see
        `block_tokens`)."""
        tokens = self.block_tokens(grid, counts)
        return "".join(unk * tokens[s] if isinstance(s, int) else s for s in self.segments(grid, image_index))


def _grid(tiles: List[List[int]], opener: str, closer: str) -> List[Segment]:
    """Rows of wrapped tile blocks, joined by newlines."""
    out: List[Segment] = []
    for number, row in enumerate(tiles):
        out += (["\n"] if number else []) + [piece for block in row for piece in (opener, block, closer)]
    return out


def _merge(segments: List[Segment]) -> List[Segment]:
    """Join adjacent text pieces so that text and token blocks alternate."""
    merged: List[Segment] = []
    for segment in segments:
        if isinstance(segment, str) and merged and isinstance(merged[-1], str):
            merged[-1] += segment
        else:
            merged.append(segment)
    return merged
