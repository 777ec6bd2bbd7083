"""An LLM process on the real llama.cpp: a tiny 2.6 bundle, its tiny GGUF, a token stream publisher at a short
socket path, the API on a free loopback port."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Optional

import numpy as np
import pytest

pytest.importorskip("gguf", reason="gguf is not installed (pip install -e '.[llm]'): cannot write the tiny GGUF LLMs")
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llm]')")

from edge.stream.address import Address  # noqa: E402
from edge.stream.protocol import StreamFrame  # noqa: E402
from edge.stream.publisher import StreamPublisher  # noqa: E402


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short folder for Unix sockets (at most 107 bytes a path; pytest's tmp_path can be longer)."""
    path = Path(tempfile.mkdtemp(prefix="mcv-", dir="/tmp"))
    yield path
    shutil.rmtree(str(path), ignore_errors=True)


def scene(seed: int, size=(480, 640)) -> np.ndarray:
    """A random RGB picture."""
    return np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)


class Running(NamedTuple):
    process: object  # LlmProcess
    publisher: StreamPublisher
    url: str


@pytest.fixture
def start_llm(make_bundle: Callable[..., Path], make_gguf: Callable[..., Path],
              sock_dir: Path) -> Iterator[Callable[..., Running]]:
    """Start the LLM process (options go to LlmProcess) following a live publisher's stream."""
    from edge.llm.process import LlmProcess

    started = []

    def start(**options) -> Running:
        address = Address(path=sock_dir / "tokens.sock")
        publisher = StreamPublisher(address, "2.6", 256).start()
        started.append(publisher)
        process = LlmProcess(make_bundle("2.6"), make_gguf("2.6"), address, listen="127.0.0.1:0", **options)
        started.append(process)
        process.server.start()
        return Running(process, publisher, process.url + "/v1")

    yield start
    for thing in reversed(started):
        if hasattr(thing, "server"):
            thing.server.shutdown()
        thing.close()


def publish(running: Running, frame_id: int, seed: int, reused_from: Optional[int] = None) -> None:
    """Encode a scene with the process's own tiny bundle and publish its tokens as camera frame `frame_id` (as the
    agent's reuse of frame `reused_from`, when given)."""
    encoded = running.process.encoder.encode(scene(seed))
    running.publisher.publish(StreamFrame(frame_id, 100.0 + frame_id, "2.6", encoded.grid, "fp16", encoded.tokens,
                                          reused_from))
