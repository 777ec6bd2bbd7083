"""A chat request as the LLM takes it: the GGUF's chat template around the messages, one image's rows where the
prompt layout puts them (``edge.encoder.prompt``), and the system prompt apart as a prefix whose KV cache is kept.

The image goes at the start of the message that carries it, followed by a newline, as the official MiniCPM-V chat
puts it. Wrapper tags (``<image>``, ``<slice>`` ...) go through the tokenizer as special tokens; the token blocks go
in as raw rows (``EmbeddingLlm.feed_rows``).
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..encoder.prompt import PromptLayout
from ..errors import InputError
from .embeddings import EmbeddingLlm

IMAGE_MARK = "<|minicpmv-edge:image|>"  # stands for the image while the template is rendered
DEFAULT_SYSTEM = "You are a helpful assistant. You see the scene through a camera; answer about what it shows."

Part = Union[List[int], np.ndarray]  # text token ids, or image rows [n, width]


class Image(NamedTuple):
    """An image's tokens [blocks, Q, width] (overview first, then tiles row-major) and its grid (cols, rows)."""

    tokens: np.ndarray
    grid: Optional[Tuple[int, int]]


class Prompt(NamedTuple):
    prefix: List[int]  # the system prompt's tokens (may be empty): their KV cache is kept between requests
    parts: List[Part]  # the rest, in order

    @property
    def n_tokens(self) -> int:
        return len(self.prefix) + sum(len(p) for p in self.parts)


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
    prefix_text = ""
    if messages and messages[0][0] == "system":
        prefix_text = llm.apply_template(messages[:1], add_assistant=False)
        prefix_text = prefix_text if rendered.startswith(prefix_text) else ""
    prefix = llm.tokenize(prefix_text, add_special=True) if prefix_text else []
    before, _, after = rendered[len(prefix_text):].partition(IMAGE_MARK)
    parts: List[Part] = [llm.tokenize(before, add_special=not prefix)]
    if image is not None:
        blocks = image.tokens.reshape(-1, layout.query_num, image.tokens.shape[-1])
        for segment in layout.segments(image.grid):
            parts.append(blocks[segment] if isinstance(segment, int) else llm.tokenize(segment))
        parts.append(llm.tokenize(after))
    return Prompt(prefix, [p for p in parts if len(p)])
