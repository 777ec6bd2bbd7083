"""An LLM process on the real llama.cpp: a tiny 2.6 bundle, its tiny GGUF, a token stream publisher at a short
socket path, the API on a free loopback port; beside it the agent's frame loop (a real Pipeline on the bundle, with
an idle camera: tests publish the frames) serving the LLM's encode requests."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
import pytest

pytest.importorskip("gguf", reason="gguf is not installed (pip install -e '.[llm]'): cannot write the tiny GGUF LLMs")
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llm]')")

from edge.stream.address import Address  # noqa: E402
from edge.stream.protocol import StreamFrame  # noqa: E402
from edge.stream.publisher import StreamPublisher  # noqa: E402
from edge.stream.requests import EncodeRequests  # noqa: E402
from tests.edge.camera.fakes import IdleCamera  # noqa: E402

from .receiver import Receiver  # noqa: E402


def scene(seed: int, size=(480, 640)) -> np.ndarray:
    """A random RGB picture."""
    return np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)


class Running(NamedTuple):
    process: object  # LlmProcess
    publisher: StreamPublisher
    url: str
    agent: object  # the agent's Pipeline: its encoder encodes the frames tests publish and the images asked for


@pytest.fixture
def start_llm(make_bundle: Callable[..., Path], make_gguf: Callable[..., Path],
              sock_dir: Path) -> Iterator[Callable[..., Running]]:
    """Start the agent's loop and the LLM process (options go to LlmProcess) following its stream, for a tiny bundle
    and GGUF of `version`."""
    from edge.agent.pipeline import Pipeline
    from edge.encoder.vision_encoder import VisionEncoder
    from edge.llm.process import LlmProcess

    stops: List[Callable[[], None]] = []  # in the order things started

    def start(version: str = "2.6", **options) -> Running:
        address = Address(path=sock_dir / "tokens.sock")
        requests = EncodeRequests()
        publisher = StreamPublisher(address, version, 256, requests=requests).start()
        agent = Pipeline(VisionEncoder.from_bundle(make_bundle(version)), IdleCamera(), publisher, requests=requests)
        loop = threading.Thread(target=agent.run, name="agent", daemon=True)
        loop.start()
        stops.append(lambda: (agent.stop(), loop.join(60), agent.close()))
        process = LlmProcess(make_bundle(version), make_gguf(version), address, listen="127.0.0.1:0", **options)
        stops.append(lambda: (process.server.shutdown(), process.close()))
        process.server.start()
        return Running(process, publisher, process.url + "/v1", agent)

    yield start
    for stop in reversed(stops):
        stop()


def publish(running: Running, frame_id: int, seed: int, reused_from: Optional[int] = None,
            publisher: Optional[StreamPublisher] = None) -> None:
    """Encode a scene with the agent's encoder and publish its tokens as camera frame `frame_id` (as the agent's
    reuse of frame `reused_from`, when given; through `publisher`, else the running one's)."""
    encoded = running.agent.encoder.encode(scene(seed))
    (publisher or running.publisher).publish(StreamFrame(frame_id, 100.0 + frame_id, "2.6", encoded.grid, "fp16",
                                                         encoded.tokens, reused_from))


@pytest.fixture
def receiver() -> Iterator[Callable[[List[int]], Receiver]]:
    """Start webhook receivers (each answering with the statuses given, then 200); shut down after the test."""
    started: List[Receiver] = []

    def start(statuses: List[int]) -> Receiver:
        server = Receiver(statuses)
        threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def post_chat(url: str, body: bytes, headers: Optional[Dict[str, str]] = None, timeout_s: float = 60.0
              ) -> Tuple[int, Any]:
    """(status, JSON body) of a POST to the API's /chat/completions under `url`, errors included."""
    request = urllib.request.Request(url + "/chat/completions", data=body, method="POST",
                                     headers=dict({"Content-Type": "application/json"}, **(headers or {})))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
