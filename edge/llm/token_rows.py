"""Rows of a GGUF's token embedding table, read from the file itself (llama.cpp's API does not hand them out).

With M-RoPE a token id gets the same position in t, h and w; a marker token that needs a 3-D position of its own
(4.7's ``<image>``, ``</slice>`` ... on the canvas) must go in as its embedding row instead, which gives the same
result as the id (docs/llamacpp.md).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError

TABLE = "token_embd.weight"


class TokenRows:
    """The token embedding table of one GGUF, memory-mapped: `rows(ids)` dequantizes only the rows asked for."""

    def __init__(self, gguf_path: Path) -> None:
        try:
            import gguf
        except ImportError as exc:
            raise InputError("reading token rows needs the gguf package (%s): pip install 'minicpmv-edge[llm]'"
                             % exc) from None
        self._gguf = gguf
        tensors = [t for t in gguf.GGUFReader(str(gguf_path)).tensors if t.name == TABLE]
        if not tensors:
            raise InputError("%s has no %s tensor: use a GGUF of a text LLM" % (gguf_path, TABLE))
        self._table: Any = tensors[0]
        self.n_vocab = int(self._table.data.shape[0])

    def rows(self, ids: Sequence[int]) -> np.ndarray:
        """float32 [len(ids), n_embd]: the rows of token ids `ids`."""
        picked = np.asarray(ids, dtype=np.int64)
        if picked.size and (picked.min() < 0 or picked.max() >= self.n_vocab):
            raise InputError("token ids must lie in 0..%d" % (self.n_vocab - 1))
        data = self._table.data[picked]
        return np.asarray(self._gguf.quants.dequantize(data, self._table.tensor_type), dtype=np.float32)
