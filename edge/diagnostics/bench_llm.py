"""``minicpmv-edge bench llm``: a GGUF LLM in llama.cpp as the LLM process drives it, in one run.

Model load (file to a ready context); prefill of image rows (``--rows`` random rows of the GGUF's input width, seeded,
fed as raw embeddings: a 10-slice MiniCPM-V 2.6 frame is 640 rows); time to first token of a request (the LLM
process's default system prompt, the rows, a question; no chat template, so that any GGUF serves) as the LLM
process's part cache (``edge.llm.generate``) meets it: cold, then the same question about a new frame (the system
prompt's KV cache kept), then another question about that frame (its image rows kept too); greedy decode speed
(``--tokens`` tokens, not stopping at an end of turn); peak resident memory (ru_maxrss). Timings are medians over
``--repeats``.
"""
from __future__ import annotations

import platform
import resource
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from ..llm.conversation import DEFAULT_SYSTEM, Prompt, rows_part, text_part
from ..llm.embeddings import EmbeddingLlm
from ..llm.generate import Generator
from ..llm.gguf_file import gguf_file_bytes

QUESTIONS = ("What do you see?", "What else is there?")
REQUESTS = ("cold", "cached", "image_cached")  # nothing kept; the system prompt kept; the image rows kept too
MIN_CTX = 4096  # the LLM process's default context
TEXT_ROOM = 256  # context positions kept for the request's text around the rows
SEED = 0


def peak_rss_bytes() -> int:
    """The peak resident set of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _timed(step: Callable[..., Any], *args: Any) -> Tuple[float, Any]:
    """Seconds `step(*args)` took, and what it returned."""
    start = time.perf_counter()
    result = step(*args)
    return time.perf_counter() - start, result


def _median(values: List[float]) -> float:
    return float(np.median(values))


def _prefill(llm: EmbeddingLlm, rows: np.ndarray) -> None:
    llm.feed_rows(rows)
    llm.logits()


def _requests(llm: EmbeddingLlm, image_rows: np.ndarray) -> Tuple[Prompt, ...]:
    """The REQUESTS: a question about frame 1, the same question about frame 2, another question about frame 2."""
    system = text_part(llm.tokenize(DEFAULT_SYSTEM, add_special=True))

    def request(frame_id: int, question: str) -> Prompt:
        return Prompt([system, rows_part(("frame", 1, frame_id), 0, image_rows),
                       text_part(llm.tokenize("\n" + question))])

    return request(1, QUESTIONS[0]), request(2, QUESTIONS[0]), request(2, QUESTIONS[1])


def _first_token(generator: Generator, prompt: Prompt, tokens: int) -> int:
    """Feed `prompt` (keeping the cached parts it starts with) and pick the first token greedily."""
    generator.start(prompt, tokens)
    return int(np.argmax(generator.llm.logits()))


def _decode(llm: EmbeddingLlm, first: int, tokens: int) -> None:
    """Feed `tokens` greedy tokens one at a time, starting from `first`."""
    token = first
    for _ in range(tokens):
        llm.feed_tokens([token])
        token = int(np.argmax(llm.logits()))


def run_bench(gguf: Path, rows: int = 640, tokens: int = 32, repeats: int = 3, repack: bool = True) -> Dict[str, Any]:
    """The report: load seconds, prefill rows/s, first token cold, with the system prompt cached and with the image
    rows cached too (and their ratios to cold), decode tokens/s, peak RSS before and after loading."""
    gguf = Path(gguf)
    gguf_file_bytes(gguf, "--gguf")
    rss_before = peak_rss_bytes()
    start = time.perf_counter()
    with EmbeddingLlm(str(gguf), n_ctx=max(MIN_CTX, rows + tokens + TEXT_ROOM), repack=repack) as llm:
        load_s = time.perf_counter() - start
        image_rows = np.random.default_rng(SEED).standard_normal((rows, llm.n_embd)).astype(np.float32)
        prefill = []
        for _ in range(repeats):
            llm.reset()
            prefill.append(_timed(_prefill, llm, image_rows)[0])
        prompts = _requests(llm, image_rows)
        seconds: Dict[str, List[float]] = {name: [] for name in REQUESTS}
        kept: Dict[str, List[int]] = {name: [] for name in REQUESTS}  # positions kept, per repeat
        decode = []
        for _ in range(repeats):
            generator = Generator(llm)  # nothing cached: its first start clears the memory
            for name, prompt in zip(REQUESTS, prompts):
                before = generator.kept_tokens
                took, first = _timed(_first_token, generator, prompt, tokens)
                seconds[name].append(took)
                kept[name].append(generator.kept_tokens - before)
            decode.append(_timed(_decode, llm, first, tokens)[0])
        model = {"architecture": llm.metadata("general.architecture"), "n_embd": llm.n_embd,
                 "n_vocab": llm.n_vocab, "n_ctx": llm.n_ctx, "file_bytes": gguf.stat().st_size}
    cold, cached, image_cached = (_median(seconds[name]) for name in REQUESTS)
    return {
        "benchmark": "llm", "gguf": str(gguf), "model": model, "rows": rows, "tokens": tokens, "repeats": repeats,
        "repack": repack,
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "python": platform.python_version()},
        "load_s": load_s,
        "prefill": {"rows": rows, "median_s": _median(prefill), "rows_per_s": rows / _median(prefill)},
        "first_token": {"prompt_tokens": prompts[0].n_tokens, "prefix_tokens": prompts[0].parts[0].n_tokens,
                        "image_cached_prompt_tokens": prompts[2].n_tokens, "kept_tokens": kept,
                        "cold_ms": 1e3 * cold, "cached_ms": 1e3 * cached, "cached_over_cold": cached / cold,
                        "image_cached_ms": 1e3 * image_cached, "image_cached_over_cold": image_cached / cold},
        "decode": {"tokens": tokens, "median_s": _median(decode), "tokens_per_s": tokens / _median(decode)},
        "memory": {"peak_rss_before_load_bytes": rss_before, "peak_rss_bytes": peak_rss_bytes()}}


def format_report(report: Dict[str, Any]) -> str:
    model, first = report["model"], report["first_token"]
    return "\n".join([
        "%s (%s, n_embd %d, %.1f MB), median of %d" % (report["gguf"], model["architecture"], model["n_embd"],
                                                       model["file_bytes"] / 1e6, report["repeats"]),
        "  load %.2f s; prefill %d rows %.0f rows/s; decode %d tokens %.1f tokens/s"
        % (report["load_s"], report["rows"], report["prefill"]["rows_per_s"], report["tokens"],
           report["decode"]["tokens_per_s"]),
        "  first token of a %d-token request: cold %.1f ms, %d-token system prompt kept %.1f ms (cached / cold %.2f)"
        % (first["prompt_tokens"], first["cold_ms"], first["prefix_tokens"], first["cached_ms"],
           first["cached_over_cold"]),
        "  another question about the same image rows: %d of %d tokens kept, %.1f ms (image cached / cold %.2f)"
        % (first["kept_tokens"]["image_cached"][-1], first["image_cached_prompt_tokens"], first["image_cached_ms"],
           first["image_cached_over_cold"]),
        "  peak RSS %.1f MB (%.1f MB before loading)" % (report["memory"]["peak_rss_bytes"] / 1e6,
                                                        report["memory"]["peak_rss_before_load_bytes"] / 1e6)])
