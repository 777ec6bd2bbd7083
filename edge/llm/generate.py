"""Generation with llama.cpp's low-level API: feed a prompt (keeping the system prompt's KV cache when it is the one
already there), then sample token by token, greedy or with a temperature, and yield text as it decodes."""
from __future__ import annotations

import codecs
import functools
from typing import Callable, Iterator, List, Optional

import numpy as np

from ..errors import InputError
from .conversation import Prompt
from .embeddings import EmbeddingLlm, LlmError


class PromptTooLong(InputError):
    """The prompt and the tokens asked for do not fit the context."""


class Answer:
    """The text pieces of one answer (iterate once); `finish_reason` ("stop" or "length") and the token counts
    are set when the iteration ends."""

    def __init__(self, generator: Generator, prompt_tokens: int, max_tokens: int, temperature: float,
                 seed: Optional[int]) -> None:
        self.generator, self.prompt_tokens, self.max_tokens = generator, prompt_tokens, max_tokens
        self.temperature, self.rng = temperature, np.random.default_rng(seed)
        self.completion_tokens = 0
        self.finish_reason: Optional[str] = None

    def __iter__(self) -> Iterator[str]:
        llm = self.generator.llm
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            token = self._pick(llm.logits())
            if llm.is_end(token):
                self.finish_reason = "stop"
                break
            self.completion_tokens += 1
            text = decoder.decode(llm.piece(token))
            if text:
                yield text
            if self.completion_tokens >= self.max_tokens:
                self.finish_reason = "length"
                break
            self.generator.feed(functools.partial(llm.feed_tokens, [token]))
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    def _pick(self, logits: np.ndarray) -> int:
        if self.temperature <= 0:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / self.temperature
        probabilities = np.exp(scaled - scaled.max())
        return int(self.rng.choice(len(probabilities), p=probabilities / probabilities.sum()))


class Generator:
    """One EmbeddingLlm answering one prompt at a time (the caller serialises); `prefix_hits` counts prompts whose
    system prompt was already in the KV cache."""

    def __init__(self, llm: EmbeddingLlm) -> None:
        self.llm = llm
        self.cached_prefix: List[int] = []  # the prefix whose KV cache sits at positions 0..len-1
        self.prefix_hits = 0

    def start(self, prompt: Prompt, max_tokens: int, temperature: float = 0.0, seed: Optional[int] = None) -> Answer:
        """Feed `prompt` and return its Answer; PromptTooLong when prompt + max_tokens exceed the context."""
        if prompt.n_tokens + max_tokens > self.llm.n_ctx:
            raise PromptTooLong("the prompt takes %d tokens and max_tokens is %d: %d > the context of %d tokens "
                                "(shorten the conversation, lower max_tokens, use fewer image slices or a larger "
                                "--ctx)" % (prompt.n_tokens, max_tokens, prompt.n_tokens + max_tokens,
                                            self.llm.n_ctx))
        if prompt.prefix and prompt.prefix == self.cached_prefix and self.llm.n_past >= len(prompt.prefix):
            self.feed(lambda: self.llm.truncate(len(prompt.prefix)))
            self.prefix_hits += 1
        else:
            self.cached_prefix = []
            self.llm.reset()
            self.feed(lambda: self.llm.feed_tokens(prompt.prefix))
            self.cached_prefix = list(prompt.prefix)
        self.feed(lambda: self._feed_parts(prompt))
        return Answer(self, prompt.n_tokens, max_tokens, temperature, seed)

    def _feed_parts(self, prompt: Prompt) -> None:
        for part in prompt.parts:
            if isinstance(part, np.ndarray):
                self.llm.feed_rows(part)
            else:
                self.llm.feed_tokens(part)

    def feed(self, step: Callable[[], None]) -> None:
        """Run one feeding step; a failure forgets the cached prefix so that the next prompt starts clean."""
        try:
            step()
        except (LlmError, InputError):
            self.cached_prefix = []
            self.llm.reset()
            raise
