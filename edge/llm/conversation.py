"""A chat request as the LLM takes it: the GGUF's chat template around the messages and one image's rows where the
prompt layout puts them (``edge.encoder.prompt``), as parts that each carry a key naming what they hold, so that
the generator can keep the KV cache of the leading parts a new prompt shares with the last one.

The image goes at the start of the message that carries it, followed by a newline, as the official MiniCPM-V chat
puts it. Wrapper tags (``<image>``, ``<slice>`` ...) go through the tokenizer as special tokens; the token blocks go
in as raw rows (``EmbeddingLlm.feed_rows``). An image with (t, h, w) positions (4.7) goes in as one span of rows
from ``<image>`` on, its markers as their token embedding rows, at the canvas positions of ``edge.llm.canvas``.
"""
from __future__ import annotations

import hashlib
from typing import Any, Hashable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..encoder.prompt import PromptLayout
from ..errors import InputError
from .canvas import Markers, canvas_span
from .embeddings import EmbeddingLlm

IMAGE_MARK = "<|minicpmv-edge:image|>"  # stands for the image while the template is rendered
DEFAULT_SYSTEM = "You are a helpful assistant. You see the scene through a camera; answer about what it shows."

Key = Tuple[Hashable, ...]  # equal keys: equal content


class Part(NamedTuple):
    """One piece of a prompt: text token ids or image rows [n, width], and the key of what it holds; rows may
    carry absolute (t, h, w) positions and the position the text after them starts at."""

    key: Key  # ("text", ids), ("rows", the image's source, block index) or ("rows", source, "canvas", origin)
    content: Union[List[int], np.ndarray]
    positions: Optional[np.ndarray] = None
    next_pos: Optional[int] = None

    @property
    def n_tokens(self) -> int:
        return len(self.content)

    @property
    def is_rows(self) -> bool:
        return isinstance(self.content, np.ndarray)


class Image(NamedTuple):
    """An image's tokens [blocks, Q, width] or [rows, width] (overview first, then tiles row-major), its grid
    (cols, rows), and the key of where the tokens came from: ("frame", connection, frame id) for a camera frame,
    `digest_source` else; for 4.6 and 4.7 the rows of each block, for 4.7 each row's (t, h, w) from the canvas
    origin."""

    tokens: np.ndarray
    grid: Optional[Tuple[int, int]]
    source: Key
    frames: int = 1  # > 1: a 4.5 video group's tokens (placed as the official video prompt places a group)
    positions: Optional[np.ndarray] = None
    block_rows: Optional[Tuple[int, ...]] = None

    def blocks(self, query_num: int) -> List[np.ndarray]:
        """The token blocks [n, width]: by `block_rows` when the blocks differ, else query_num rows each."""
        flat = self.tokens.reshape(-1, self.tokens.shape[-1])
        if self.block_rows is not None:
            return np.split(flat, np.cumsum(self.block_rows)[:-1])
        return list(flat.reshape(-1, query_num, flat.shape[-1]))


class Prompt(NamedTuple):
    parts: List[Part]  # in order; the system prompt's tokens (when there is one) are the first part

    @property
    def n_tokens(self) -> int:
        return sum(p.n_tokens for p in self.parts)


def text_part(ids: Sequence[int]) -> Part:
    return Part(("text", tuple(ids)), list(ids))


def rows_part(source: Key, block: int, rows: np.ndarray) -> Part:
    return Part(("rows", source, block), rows)


def digest_source(tokens: np.ndarray) -> Key:
    """The source key of tokens that came from no camera frame (an attached image): a digest of their bytes."""
    array = np.ascontiguousarray(tokens)
    digest = hashlib.blake2b(repr((array.dtype.str, array.shape)).encode(), digest_size=16)
    digest.update(memoryview(array).cast("B"))
    return ("digest", digest.hexdigest())


def frame_source(frame: Any, connection: int) -> Key:
    """The source key of a camera frame's tokens: the frame they were encoded for (`reused_from` when the agent
    reused them) on stream connection `connection` (a restarted agent numbers its frames from 0 again)."""
    return ("frame", connection, frame.frame_id if frame.reused_from is None else frame.reused_from)


def with_system(messages: Sequence[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """The messages, led by DEFAULT_SYSTEM when they bring no system message of their own."""
    listed = list(messages)
    return listed if listed and listed[0][0] == "system" else [("system", DEFAULT_SYSTEM)] + listed


def build_prompt(llm: EmbeddingLlm, layout: PromptLayout, messages: Sequence[Tuple[str, str]],
                 image: Optional[Image]) -> Prompt:
    """The prompt of (role, text) `messages`; with `image`, exactly one message's text must hold IMAGE_MARK."""
    marks = sum(text.count(IMAGE_MARK) for _, text in messages)
    if marks != (0 if image is None else 1):
        raise InputError("a request takes at most one image (and the text may not contain %s)" % IMAGE_MARK)
    rendered = llm.apply_template(messages, add_assistant=True)
    system_text = ""
    if messages and messages[0][0] == "system":
        system_text = llm.apply_template(messages[:1], add_assistant=False)
        system_text = system_text if rendered.startswith(system_text) else ""
    system = llm.tokenize(system_text, add_special=True) if system_text else []
    before, _, after = rendered[len(system_text):].partition(IMAGE_MARK)
    parts = [text_part(system), text_part(llm.tokenize(before, add_special=not system))]
    if image is not None and image.positions is not None:
        parts += _canvas_parts(llm, layout, image, sum(p.n_tokens for p in parts), llm.tokenize(after))
    elif image is not None:
        blocks = image.blocks(layout.query_num)
        for segment in layout.for_frames(image.frames).segments(image.grid):
            parts.append(rows_part(image.source, segment, blocks[segment]) if isinstance(segment, int)
                         else text_part(llm.tokenize(segment)))
        parts.append(text_part(llm.tokenize(after)))
    return Prompt([p for p in parts if p.n_tokens])


def _canvas_parts(llm: EmbeddingLlm, layout: PromptLayout, image: Image, origin: int, after: List[int]) -> List[Part]:
    """The text before ``<image>`` (the image id), the span at its canvas positions, the text after it."""
    segments = layout.segments(image.grid)
    head, mark, rest = str(segments[0]).partition("<image>")
    blocks = image.blocks(layout.query_num)
    if not mark or len(image.positions) != sum(len(b) for b in blocks):
        raise InputError("an image with positions needs a layout that opens with <image> and one position a row")
    lead = llm.tokenize(head)
    relative = np.split(np.asarray(image.positions), np.cumsum([len(b) for b in blocks])[:-1])
    span = canvas_span([mark + rest] + list(segments[1:]), blocks, relative, image.grid, origin + len(lead),
                       _markers(llm), llm.tokenize, llm.token_rows, after)
    return [text_part(lead), Part(("rows", image.source, "canvas", origin + len(lead)), span.rows, span.positions,
                                  span.next_pos), text_part(after[span.absorbed:])]


def _markers(llm: EmbeddingLlm) -> Markers:
    ids = [llm.tokenize(text) for text in ("<image>", "</image>", "<slice>", "</slice>", "\n")]
    if any(len(found) != 1 for found in ids):
        raise InputError("the GGUF's tokenizer must hold <image>, </image>, <slice>, </slice> and a newline as single "
                         "tokens: use the GGUF of a MiniCPM-V 4.7 LLM")
    return Markers(*(found[0] for found in ids))
