"""Generation with llama.cpp's low-level API: feed a prompt (keeping the KV cache of the leading parts it shares
with the last prompt), then sample token by token, greedy or with a temperature, and yield text as it decodes."""
from __future__ import annotations

import codecs
import collections
import functools
import time
from typing import Callable, Deque, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from .conversation import Key, Part, Prompt
from .embeddings import EmbeddingLlm, LlmError

RECENT_ANSWERS = 8  # the answers the recent generation rate is taken over


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
        start = time.perf_counter()
        try:
            yield from self._pieces()
        finally:  # also when the reader leaves early
            self.generator.answered(self.completion_tokens, time.perf_counter() - start)

    def _pieces(self) -> Iterator[str]:
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
    """One EmbeddingLlm answering one prompt at a time (the caller serialises). A prompt's leading parts whose keys
    match those of the parts already in the KV cache are kept, not fed again; the counters say what was kept and how
    many image rows were fed, summed over prompts, and how many tokens the answers generated and how fast."""

    def __init__(self, llm: EmbeddingLlm) -> None:
        self.llm = llm
        self.cached_parts: List[Tuple[Key, int]] = []  # (key, tokens) of the parts at positions 0, 1, ... in order
        self.kept_parts = self.kept_tokens = self.kept_image_rows = self.fed_image_rows = 0
        self.answers = self.generated_tokens = 0
        self.recent: Deque[Tuple[int, float]] = collections.deque(maxlen=RECENT_ANSWERS)  # (tokens, seconds)

    def answered(self, tokens: int, seconds: float) -> None:
        """Count an answer that generated `tokens` in `seconds`."""
        self.answers += 1
        self.generated_tokens += tokens
        self.recent.append((tokens, seconds))

    @property
    def tokens_per_s(self) -> Optional[float]:
        """Tokens generated per second over the last RECENT_ANSWERS answers, or None before the first."""
        seconds = sum(s for _, s in self.recent)
        return sum(t for t, _ in self.recent) / seconds if seconds > 0 else None

    def start(self, prompt: Prompt, max_tokens: int, temperature: float = 0.0, seed: Optional[int] = None) -> Answer:
        """Feed `prompt` and return its Answer; PromptTooLong when prompt + max_tokens exceed the context."""
        if prompt.n_tokens + max_tokens > self.llm.n_ctx:
            raise PromptTooLong("the prompt takes %d tokens and max_tokens is %d: %d > the context of %d tokens "
                                "(shorten the conversation, lower max_tokens, use fewer image slices or a larger "
                                "--ctx)" % (prompt.n_tokens, max_tokens, prompt.n_tokens + max_tokens,
                                            self.llm.n_ctx))
        kept = prompt.parts[:self._shared(prompt.parts)]
        n_kept = sum(part.n_tokens for part in kept)
        if kept:
            self.feed(functools.partial(self.llm.truncate, n_kept))
        else:
            self.llm.reset()
        del self.cached_parts[len(kept):]
        self.kept_parts += len(kept)
        self.kept_tokens += n_kept
        self.kept_image_rows += sum(part.n_tokens for part in kept if part.is_rows)
        for part in prompt.parts[len(kept):]:
            self.feed(functools.partial(self._feed_part, part))
            self.cached_parts.append((part.key, part.n_tokens))
        return Answer(self, prompt.n_tokens, max_tokens, temperature, seed)

    def _shared(self, parts: Sequence[Part]) -> int:
        """How many leading `parts` are in the KV cache as they are; never the last, whose logits the answer needs;
        none when the LLM cannot drop its last positions (Qwen3.5's recurrent layers)."""
        if not self.llm.keeps_prefix:
            return 0
        count = 0
        for cached, part in zip(self.cached_parts, parts[:-1]):
            if cached != (part.key, part.n_tokens):
                break
            count += 1
        in_memory = sum(n_tokens for _, n_tokens in self.cached_parts[:count]) <= self.llm.n_past
        return count if in_memory else 0

    def _feed_part(self, part: Part) -> None:
        if part.is_rows:
            self.llm.feed_rows(part.content, part.positions, part.next_pos)
            self.fed_image_rows += part.n_tokens
        else:
            self.llm.feed_tokens(part.content)

    def feed(self, step: Callable[[], None]) -> None:
        """Run one feeding step; a failure forgets the cached parts so that the next prompt starts clean."""
        try:
            step()
        except (LlmError, InputError):
            self.cached_parts = []
            self.llm.reset()
            raise
