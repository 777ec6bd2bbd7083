"""Images a subscriber asks the agent to encode, over real sockets into the agent's real frame loop (a Pipeline on a
tiny bundle, its camera idle): the answer is what the agent's own encoder makes of the image (cast to the stream's
dtype); a full queue answers busy, a stopping agent answers stopped, a broken request is rejected with its reason
while the connection goes on, a requests-only connection gets no camera frames, and the client finds a restarted
agent by itself."""
from __future__ import annotations

import random
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import pytest

from edge.agent.contracts import FrameResult
from edge.agent.pipeline import Pipeline
from edge.encoder.vision_encoder import VisionEncoder
from edge.stream import protocol as wire
from edge.stream.address import Address
from edge.stream.encode_client import EncodeClient, EncodeFailed
from edge.stream.handshake import subscribe, verdict
from edge.stream.publisher import StreamPublisher
from edge.stream.requests import EncodeRequests
from edge.stream.subscriber import StreamSubscriber
from tests.edge.camera.fakes import IdleCamera

WAIT_S = 120.0


class Agent(NamedTuple):
    pipeline: Pipeline
    publisher: StreamPublisher
    requests: EncodeRequests
    address: Address
    width: int


def picture(seed: int, size=(90, 160)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)


@pytest.fixture
def encoder(make_bundle: Callable[..., Path]) -> Iterator[VisionEncoder]:
    with VisionEncoder.from_bundle(make_bundle("2.6")) as opened:
        yield opened


@pytest.fixture
def start_agent(encoder: VisionEncoder, sock_dir: Path) -> Iterator[Callable[..., Agent]]:
    """A publisher whose requests an agent loop serves with `encoder` (`loop=False`: nobody serves them yet)."""
    stops = []

    def start(loop: bool = True, limit: int = 2) -> Agent:
        address = Address(path=sock_dir / "tokens.sock")
        requests = EncodeRequests(limit)
        publisher = StreamPublisher(address, encoder.bundle.model.version, encoder.bundle.model.embed_dim,
                                    requests=requests).start()
        pipeline = Pipeline(encoder, IdleCamera(), publisher, requests=requests)
        if loop:
            thread = threading.Thread(target=pipeline.run, daemon=True)
            thread.start()
            stops.append(lambda: (pipeline.stop(), thread.join(WAIT_S)))
        stops.append(lambda: (requests.close(), publisher.close()))
        return Agent(pipeline, publisher, requests, address, encoder.bundle.model.embed_dim)

    yield start
    for stop in reversed(stops):
        stop()


def test_the_answer_is_the_agents_own_encoding(start_agent, encoder: VisionEncoder) -> None:
    agent = start_agent()
    client = EncodeClient(agent.address, agent.width)
    try:
        for seed, size in ((1, (90, 160)), (2, (700, 300))):
            image = picture(seed, size)
            frame = client.encode(image, WAIT_S)
            expected = encoder.encode(image)
            assert frame.grid == expected.grid and frame.request_id == client.last_id
            np.testing.assert_array_equal(frame.tokens, expected.tokens.astype(np.float16).astype(np.float32))
    finally:
        client.close()
    report = agent.pipeline.report()
    assert report["requests"]["served"] == 2 and report["requests"]["encode_ms"] > 0
    assert report["frames"] == 0  # served between camera frames, not counted as frames


def test_a_full_queue_answers_busy_and_a_stopping_agent_answers_stopped(start_agent) -> None:
    agent = start_agent(loop=False, limit=1)
    waiting = EncodeClient(agent.address, agent.width)
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(_outcome(waiting, picture(3))), daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not len(agent.requests):
        assert time.monotonic() < deadline, "the first request never reached the queue"
        time.sleep(0.01)
    with EncodeClient(agent.address, agent.width) as second:
        with pytest.raises(EncodeFailed) as busy:
            second.encode(picture(4), WAIT_S)
    assert busy.value.code == "busy" and "retry later" in busy.value.reason
    agent.pipeline.close()  # the agent stops: what waits is failed
    thread.join(WAIT_S)
    waiting.close()
    assert outcome == ["stopped"]
    assert agent.requests.stats() == {"served": 0, "failed": 1, "refused": 1, "waiting": 0}


def _outcome(client: EncodeClient, image: np.ndarray) -> str:
    try:
        client.encode(image, WAIT_S)
    except EncodeFailed as exc:
        return exc.code
    return "encoded"


def test_a_requests_only_connection_gets_no_camera_frames(start_agent) -> None:
    agent = start_agent()
    tokens = np.ones((1, 64, agent.width), np.float32)
    with StreamSubscriber(agent.address, agent.width) as frames, EncodeClient(agent.address, agent.width) as client:
        assert frames.connect(WAIT_S)
        client.encode(picture(5), WAIT_S)  # connected, and answered
        for sequence in range(3):
            agent.publisher.write(FrameResult(sequence, float(sequence), None, tokens, {}))
        assert [frames.receive(WAIT_S).frame_id for _ in range(3)] == [0, 1, 2]

        def sent() -> dict:  # a sender counts a message once sendall returned, maybe after it was read
            return {s["frames"]: s["sent"] for s in agent.publisher.stats()["subscribers"]}

        deadline = time.monotonic() + WAIT_S
        while sent().get(True) != 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sent() == {True: 3, False: 1}  # the requests-only connection got the encoded image alone


def test_broken_requests_are_rejected_and_the_connection_goes_on(start_agent) -> None:
    agent = start_agent()
    rng = random.Random(3)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(agent.address.path))
    sock.settimeout(WAIT_S)
    reader = wire.MessageReader(wire.DEFAULT_MAX_FRAME_BYTES)
    sock.sendall(subscribe(reader.read(sock), agent.width, None, frames=False))
    verdict(reader.read(sock))
    image = picture(6, (40, 50))
    good = wire.encode_request(7, image)
    header = {"request_id": 1, "shape": [40, 50, 3], "dtype": "uint8"}
    broken = [wire.pack(wire.ENCODE, dict(header, shape=[40, 50, 4]), b"\0" * 8000),  # not RGB
              wire.pack(wire.ENCODE, dict(header, dtype="float32"), b"\0" * 6000),
              wire.pack(wire.ENCODE, dict(header, request_id=-1), b"\0" * 6000),
              wire.pack(wire.ENCODE, header, b"\0" * 5999),  # the payload does not match the shape
              wire.pack(wire.ENCODE, {"request_id": 1}, b""),
              wire.pack(wire.FRAME, {}, b""), wire.pack(wire.HELLO, {})]  # not a subscriber's to send
    for _ in range(200):
        sock.sendall(rng.choice(broken))
    sock.sendall(good[0] + bytes(good[1]))
    answer = wire.frame_of(reader.read(sock))
    assert answer.request_id == 7 and agent.publisher.stats()["rejected"] == 200
    sock.sendall(b"JUNK" + bytes(16))  # a prefix that cannot be trusted ends the connection
    assert sock.recv(1) == b""
    sock.close()
    with EncodeClient(agent.address, agent.width) as client:  # the publisher serves on
        assert client.encode(image, WAIT_S).request_id == 1


def test_the_client_finds_a_restarted_agent(start_agent) -> None:
    agent = start_agent()
    with EncodeClient(agent.address, agent.width) as client:
        client.encode(picture(7), WAIT_S)
        agent.publisher.close()  # the agent goes, and another takes its place
        restarted = start_agent()
        frame = client.encode(picture(8), WAIT_S)  # the kept connection is dead: opened anew, once
        assert frame.tokens.shape[-1] == agent.width and restarted.requests.stats()["served"] == 1
        restarted.publisher.close()
        with pytest.raises(EncodeFailed) as gone:
            client.encode(picture(9), WAIT_S)
    assert gone.value.code == "stopped" and "not reachable" in gone.value.reason
