"""A GGUF LLM in llama.cpp fed text tokens and raw image rows, through llama-cpp-python's low-level API.

What an LLM process needs to put image tokens where the prompt layout says (``edge.encoder.prompt``): feed text
tokens and image rows in prompt order, with positions that run on without a gap, read the logits of the last
position, start over for the next request. Every ``llama_decode`` return code is checked: after a failed decode
llama.cpp would hand back the previous logits as if nothing had happened (docs/llamacpp.md).
"""
from __future__ import annotations

import ctypes
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError

_LOG_LEVELS_KEPT = (3, 4)  # ggml_log_level WARN (a full KV memory is only a warning) and ERROR
_errors: List[str] = []  # llama.cpp's last warnings and errors (everything else it logs is dropped)


class LlmError(RuntimeError):
    """llama.cpp refused a model or a decode; `code` is llama_decode's return code where there is one."""

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        self.code = code


def _llama_cpp() -> Any:
    """llama_cpp, imported on first use (the edge package imports without it), with its logging captured."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise InputError("the LLM needs llama-cpp-python (%s): pip install 'minicpmv-edge[llm]'" % exc) from None
    if not hasattr(_llama_cpp, "callback"):
        def keep_errors(level: int, text: bytes, user_data: Any) -> None:
            if level in _LOG_LEVELS_KEPT:
                _errors[:] = (_errors + [" ".join(text.decode("utf-8", "replace").split())])[-3:]

        _llama_cpp.callback = llama_cpp.llama_log_callback(keep_errors)  # kept alive: llama.cpp holds a pointer
        llama_cpp.llama_log_set(_llama_cpp.callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
    return llama_cpp


def _last_errors() -> str:
    said = "; ".join(_errors) or "llama.cpp said nothing"
    _errors.clear()
    return said


class EmbeddingLlm:
    """One GGUF model and one context: ``feed_tokens`` / ``feed_rows`` in prompt order, then ``logits``; ``reset``
    between requests. A context manager; ``close`` frees the model and the context."""

    def __init__(self, gguf_path: str, n_ctx: int = 4096, n_batch: int = 512, n_threads: Optional[int] = None,
                 repack: bool = True) -> None:
        self._ll = _llama_cpp()
        self.path = str(gguf_path)
        self._token_rows: Optional[Any] = None  # TokenRows, opened when first needed
        model_params = self._ll.llama_model_default_params()
        # repack=False keeps the weights out of the CPU backend's repacked layouts (llama.cpp's --no-repack): on an
        # x86 CPU that lists AMX but cannot run it, the AMX layout dies of an illegal instruction (docs/llamacpp.md).
        model_params.use_extra_bufts = repack
        _errors.clear()
        self._model = self._ll.llama_model_load_from_file(str(gguf_path).encode(), model_params)
        if not self._model:
            raise InputError("llama.cpp cannot load %s: %s" % (gguf_path, _last_errors()))
        self._ctx = None
        context_params = self._ll.llama_context_default_params()
        context_params.n_ctx, context_params.n_batch, context_params.n_ubatch = n_ctx, n_batch, n_batch
        if n_threads is not None:
            context_params.n_threads = context_params.n_threads_batch = n_threads
        self._ctx = self._ll.llama_init_from_model(self._model, context_params)
        if not self._ctx:
            self.close()
            raise LlmError("llama.cpp cannot make a context for %s: %s" % (gguf_path, _last_errors()))
        self._vocab = self._ll.llama_model_get_vocab(self._model)
        self.n_vocab = self._ll.llama_vocab_n_tokens(self._vocab)
        self.n_embd = self._ll.llama_model_n_embd_inp(self._model)  # the width of a raw input row
        self.n_ctx = self._ll.llama_n_ctx(self._ctx)
        self.n_batch = self._ll.llama_n_batch(self._ctx)
        self.input_scale = self._input_scale()
        rope = self._ll.llama_model_rope_type(self._model)
        # M-RoPE models take (t, h, w, extra) positions per raw row (llama.cpp's n_pos_per_embd), one per token id
        self.n_pos_per_embd = 4 if rope in (self._ll.LLAMA_ROPE_TYPE_MROPE, self._ll.LLAMA_ROPE_TYPE_IMROPE) else 1
        # a recurrent state (Qwen3.5's Gated DeltaNet layers) cannot drop its last positions, and M-RoPE positions
        # may jump: such a model is fed each prompt whole (docs/llamacpp.md)
        self.keeps_prefix = self.n_pos_per_embd == 1 and not (
            self._ll.llama_model_is_recurrent(self._model) or self._ll.llama_model_is_hybrid(self._model))
        self.n_past = 0  # the positions (KV cells) fed
        self.next_pos = 0  # the next text token's position: n_past, unless explicit positions jumped ahead
        self._last_t = -1  # the largest first (temporal) position component fed
        self._has_logits = False

    def __enter__(self) -> EmbeddingLlm:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._ctx:
            self._ll.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            self._ll.llama_model_free(self._model)
            self._model = None

    def metadata(self, key: str) -> Optional[str]:
        """A GGUF metadata value as text, or None when the model lacks it."""
        buffer = ctypes.create_string_buffer(4096)
        size = self._ll.llama_model_meta_val_str(self._model, key.encode(), buffer, len(buffer))
        return None if size < 0 else buffer.value.decode("utf-8", "replace")

    def _input_scale(self) -> float:
        """What llama.cpp multiplies every input row by: MiniCPM's scale_emb (12 when the GGUF does not say, as in
        llama.cpp), 1 for the other architectures."""
        arch = self.metadata("general.architecture")
        if arch != "minicpm":
            return 1.0
        scale = self.metadata("minicpm.embedding_scale")
        return 12.0 if scale is None else float(scale)

    def token_rows(self, ids: Sequence[int]) -> np.ndarray:
        """The token embedding rows of `ids` [len(ids), n_embd], read from the GGUF (edge.llm.token_rows), scaled
        so that `feed_rows` gives them the model's input as their ids would have it."""
        if self._token_rows is None:
            from .token_rows import TokenRows

            self._token_rows = TokenRows(self.path)
        return self._token_rows.rows(ids) * np.float32(self.input_scale)

    def tokenize(self, text: str, add_special: bool = False) -> List[int]:
        """Token ids of `text`, special tokens (``<image>``, ``<|im_start|>`` ...) parsed as such."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (self._ll.llama_token * capacity)()
        count = self._ll.llama_tokenize(self._vocab, data, len(data), tokens, capacity, add_special, True)
        if count < 0:
            raise LlmError("llama.cpp could not tokenize %d bytes of text" % len(data))
        return list(tokens[:count])

    def feed_tokens(self, ids: Sequence[int]) -> None:
        """Decode text tokens at the next positions (in chunks of n_batch); with M-RoPE llama.cpp gives a token id
        the same position in t, h and w."""
        self._check_usable()
        if ids and self.next_pos <= self._last_t:
            raise InputError("text at position %d cannot follow image rows at temporal position %d: M-RoPE needs "
                             "a text token's position past every position fed" % (self.next_pos, self._last_t))
        for start in range(0, len(ids), self.n_batch):
            chunk = ids[start:start + self.n_batch]
            batch = self._ll.llama_batch_init(len(chunk), 0, 1)
            try:
                for i, token in enumerate(chunk):
                    batch.token[i] = int(token)
                    batch.pos[i] = self.next_pos + i
                self._decode(batch, len(chunk), last=start + len(chunk) == len(ids))
            finally:
                self._ll.llama_batch_free(batch)
            self.next_pos += len(chunk)
            self._last_t = self.next_pos - 1

    def feed_rows(self, rows: np.ndarray, positions: Optional[np.ndarray] = None,
                  next_pos: Optional[int] = None) -> None:
        """Decode image rows [n, n_embd] (the bundle's tokens, as the official model inserts them), divided by
        `input_scale` since llama.cpp scales every input row (docs/llamacpp.md). By default at the next positions
        (with M-RoPE: the same in t, h and w, as a token id gets). `positions` [n, 3] gives each row its absolute
        (t, h, w) position instead (M-RoPE models only); the text that follows then goes on at `next_pos`,
        by default one past the largest component."""
        self._check_usable()
        rows = np.asarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_embd:
            raise InputError("image rows of shape %s do not fit this LLM: it takes rows of width %d (n_embd); "
                             "use a bundle whose embed_dim is %d" % (list(rows.shape), self.n_embd, self.n_embd))
        rows = np.ascontiguousarray(rows / np.float32(self.input_scale) if self.input_scale != 1.0 else rows)
        if not len(rows):
            return
        if positions is None:
            thw = np.repeat(np.arange(self.next_pos, self.next_pos + len(rows), dtype=np.int64)[:, None], 3, axis=1)
            after = self.next_pos + len(rows)
        else:
            thw = self._checked_positions(positions, len(rows))
            after = int(thw.max()) + 1 if next_pos is None else int(next_pos)
        for start in range(0, len(rows), self.n_batch):
            chunk = rows[start:start + self.n_batch]
            batch = self._ll.llama_batch_init(len(chunk) * self.n_pos_per_embd, self.n_embd, 1)
            try:
                ctypes.memmove(batch.embd, chunk.ctypes.data, chunk.nbytes)
                self._set_positions(batch, thw[start:start + len(chunk)])
                self._decode(batch, len(chunk), last=start + len(chunk) == len(rows))
            finally:
                self._ll.llama_batch_free(batch)
            self._last_t = max(self._last_t, int(thw[start:start + len(chunk), 0].max()))
        self.next_pos = max(after, self._last_t + 1)

    def _check_usable(self) -> None:
        if self.n_past < 0:
            raise LlmError("an earlier decode failed and left the memory in an unknown state: reset() first")

    def _checked_positions(self, positions: np.ndarray, n_rows: int) -> np.ndarray:
        """Explicit (t, h, w) positions as int64 [n_rows, 3], or an InputError naming what is wrong with them."""
        if self.n_pos_per_embd == 1:
            raise InputError("this LLM (%s) takes one position per token, not (t, h, w): feed its rows without "
                             "positions" % self.metadata("general.architecture"))
        thw = np.asarray(positions)
        if thw.shape != (n_rows, 3) or thw.dtype.kind not in "iu":
            raise InputError("positions must be integers [%d, 3] (t, h, w), got %s %s"
                             % (n_rows, thw.dtype, list(thw.shape)))
        thw = thw.astype(np.int64)
        if n_rows and (thw.min() < 0 or thw.max() >= 1 << 30):
            raise InputError("positions must lie in 0..2^30, got %d..%d" % (thw.min(), thw.max()))
        if n_rows and (thw[0, 0] < self._last_t or np.any(np.diff(thw[:, 0]) < 0)):
            raise InputError("temporal positions must not go back: llama.cpp refuses rows whose t is below one "
                             "already fed (%d), and t must not decrease along the rows" % self._last_t)
        return thw

    def _set_positions(self, batch: Any, thw: np.ndarray) -> None:
        """llama.cpp's layout for raw rows: with M-RoPE all rows' t, then all h, all w, all of the unused fourth
        component (0); else one position a row."""
        n = len(thw)
        if self.n_pos_per_embd == 1:
            sections = thw[:, 0]
        else:
            sections = np.concatenate([thw[:, 0], thw[:, 1], thw[:, 2], np.zeros(n, dtype=np.int64)])
        flat = np.ascontiguousarray(sections, dtype=np.int32)
        ctypes.memmove(batch.pos, flat.ctypes.data, flat.nbytes)

    def _decode(self, batch: Any, n_tokens: int, last: bool) -> None:
        """One sequence, logits only for the last row (the positions are set); a failed decode raises with its code
        and leaves no logits to read until `reset`."""
        for i in range(n_tokens):
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1 if last and i == n_tokens - 1 else 0
        batch.n_tokens = n_tokens
        self._has_logits = False
        _errors.clear()
        code = self._ll.llama_decode(self._ctx, batch)
        if code != 0:
            self.n_past = -1  # the memory is in an unknown state: only reset() helps
            raise LlmError("llama_decode failed with code %d at positions %d..%d (n_ctx %d): %s"
                           % (code, batch.pos[0], batch.pos[0] + n_tokens - 1, self.n_ctx, _last_errors()), code)
        self.n_past += n_tokens
        self._has_logits = last

    def logits(self) -> np.ndarray:
        """A copy of the logits [n_vocab] of the last position fed."""
        if not self._has_logits:
            raise LlmError("no logits to read: nothing was fed since the last reset, or the last decode failed")
        pointer = self._ll.llama_get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()

    def truncate(self, n_keep: int) -> None:
        """Forget every position from `n_keep` on and keep the KV cache of the first `n_keep` (a fixed prefix such
        as the system prompt) for the next request."""
        if not self.keeps_prefix:
            raise LlmError("this LLM cannot drop its last positions (a recurrent state or M-RoPE): reset() instead")
        if not 0 <= n_keep <= self.n_past:
            raise LlmError("cannot keep %d positions of %d fed: reset() instead" % (n_keep, self.n_past))
        if not self._ll.llama_memory_seq_rm(self._ll.llama_get_memory(self._ctx), 0, n_keep, -1):
            self.reset()
            raise LlmError("llama.cpp could not drop positions %d.. of its memory; it was cleared" % n_keep)
        self.n_past = self.next_pos = n_keep
        self._last_t = n_keep - 1
        self._has_logits = False

    def piece(self, token: int) -> bytes:
        """The bytes of one generated token (special tokens render as nothing)."""
        buffer = ctypes.create_string_buffer(256)
        size = self._ll.llama_token_to_piece(self._vocab, int(token), buffer, len(buffer), 0, False)
        if size < 0:
            raise LlmError("llama.cpp could not render token %d" % token)
        return buffer.raw[:size]

    def is_end(self, token: int) -> bool:
        """Whether `token` ends generation (end of turn or of text)."""
        return bool(self._ll.llama_vocab_is_eog(self._vocab, int(token)))

    def apply_template(self, messages: Sequence[Tuple[str, str]], add_assistant: bool) -> str:
        """The GGUF's chat template rendered by llama.cpp around (role, content) messages; `add_assistant` opens
        the assistant's turn."""
        template = self._ll.llama_model_chat_template(self._model, None)
        if not template:
            raise InputError("the GGUF has no chat template (tokenizer.chat_template): use a GGUF converted with one")
        keep = [(role.encode(), content.encode()) for role, content in messages]  # alive while llama.cpp reads
        chat = (self._ll.llama_chat_message * len(keep))(*[self._ll.llama_chat_message(r, c) for r, c in keep])
        capacity = 2 * sum(len(r) + len(c) for r, c in keep) + 256
        for _ in range(2):
            buffer = ctypes.create_string_buffer(capacity)
            size = self._ll.llama_chat_apply_template(template, chat, len(keep), add_assistant, buffer, capacity)
            if size < 0:
                raise InputError("llama.cpp does not know this GGUF's chat template")
            if size <= capacity:
                return buffer.raw[:size].decode("utf-8", "replace")
            capacity = size
        raise LlmError("llama.cpp's chat template kept growing")

    def reset(self) -> None:
        """Forget everything fed (clear the KV memory) for the next request."""
        self._ll.llama_memory_clear(self._ll.llama_get_memory(self._ctx), True)
        self.n_past = self.next_pos = 0
        self._last_t = -1
        self._has_logits = False
