"""Publisher and subscriber over real sockets: FrameResults round trip in fp16 and fp32 (a reused frame carries
reused_from), a token width mismatch is refused in one line, a slow subscriber loses its oldest frames (counted)
without holding the publisher up, a subscriber reconnects to a restarted publisher and gets its newest frame, and TCP
mode takes loopback only and refuses a wrong secret. Generous timeouts; nothing is timed."""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from edge.agent.contracts import FrameResult
from edge.errors import InputError
from edge.stream.address import Address, read_secret, tcp_address
from edge.stream.handshake import HandshakeRefused
from edge.stream.publisher import StreamPublisher
from edge.stream.subscriber import StreamSubscriber

WIDTH = 3584
WAIT_S = 60.0


def result(sequence: int, slices: int = 3, reused_from=None, width: int = WIDTH) -> FrameResult:
    tokens = np.random.default_rng(sequence).standard_normal((slices, 64, width)).astype(np.float32)
    return FrameResult(sequence, 100.0 + sequence / 30, (slices - 1, 1) if slices > 1 else None, tokens,
                       {"vpm": 1.0}, reused_from)


def wait_for_subscribers(publisher: StreamPublisher, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while len(publisher.stats()["subscribers"]) < count:
        assert time.monotonic() < deadline, "no subscriber after %.0f s" % WAIT_S
        time.sleep(0.01)


@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
def test_frame_results_round_trip(sock_dir, dtype):
    address = Address(path=sock_dir / "run" / "tokens.sock")
    publisher = StreamPublisher(address, "2.6", WIDTH, dtype=dtype).start()
    try:
        assert stat.S_IMODE(os.stat(str(address.path)).st_mode) == 0o660
        with StreamSubscriber(address, WIDTH) as subscriber:
            sent = [result(0), result(1, reused_from=0), result(2, slices=1)]
            sent[1] = sent[1]._replace(tokens=sent[0].tokens)
            assert subscriber.connect(WAIT_S)
            wait_for_subscribers(publisher, 1)
            for item in sent:
                publisher.write(item)
            for item in sent:
                frame = subscriber.receive(WAIT_S)
                assert frame is not None
                assert (frame.frame_id, frame.timestamp_s, frame.grid, frame.reused_from, frame.model_version) == (
                    item.sequence, item.timestamp_s, item.grid, item.reused_from, "2.6")
                assert frame.dtype == dtype and frame.tokens.shape == item.tokens.shape
                np.testing.assert_array_equal(frame.tokens, item.tokens.astype(np.float16 if dtype == "fp16"
                                                                              else np.float32))
            assert subscriber.model_version == "2.6" and subscriber.rejected == {}
    finally:
        publisher.close()
    assert not address.path.exists()


def test_a_token_width_mismatch_is_refused_in_one_line(sock_dir):
    address = Address(path=sock_dir / "tokens.sock")
    with pytest.raises(HandshakeRefused) as refused:
        publisher = StreamPublisher(address, "2.6", WIDTH).start()
        try:
            with StreamSubscriber(address, 4096) as subscriber:
                subscriber.connect(WAIT_S)
        finally:
            publisher.close()
    message = str(refused.value)
    assert "\n" not in message and "3584" in message and "4096" in message and "token width mismatch" in message
    assert publisher.stats()["refused"] == 1


def test_a_slow_subscriber_loses_its_oldest_frames_and_the_publisher_goes_on(sock_dir):
    address = Address(path=sock_dir / "tokens.sock")
    publisher = StreamPublisher(address, "2.6", WIDTH, dtype="fp32", queue_length=3).start()
    count = 40  # 40 frames of 2.75 MiB: far more than the socket's buffers and the queue hold together
    try:
        with StreamSubscriber(address, WIDTH) as subscriber:
            assert subscriber.connect(WAIT_S)  # connected and handshaken, and now not reading
            wait_for_subscribers(publisher, 1)
            for sequence in range(count):
                publisher.write(result(sequence))  # returns although nobody reads
            received = []
            while not received or received[-1] != count - 1:
                frame = subscriber.receive(WAIT_S)
                assert frame is not None
                received.append(frame.frame_id)
            stats = publisher.stats()
    finally:
        publisher.close()
    assert received == sorted(received) and received[-1] == count - 1  # in order, ending with the newest
    assert stats["dropped"] > 0 and len(received) + stats["dropped"] == count and stats["published"] == count
    assert stats["packed"] == len(received)  # the dropped frames were never cast
    assert received[-3:] == [count - 3, count - 2, count - 1]  # the queue kept the newest: the oldest were dropped


def test_the_subscriber_reconnects_and_gets_the_newest_frame(sock_dir):
    address = Address(path=sock_dir / "tokens.sock")
    first = StreamPublisher(address, "2.6", WIDTH).start()
    with StreamSubscriber(address, WIDTH, backoff_initial_s=0.05, backoff_max_s=0.5) as subscriber:
        assert subscriber.connect(WAIT_S)
        wait_for_subscribers(first, 1)
        first.write(result(0))
        assert subscriber.receive(WAIT_S).frame_id == 0
        first.close()
        assert subscriber.receive(0.3) is None  # the publisher is gone: retrying in the background of receive
        second = StreamPublisher(address, "2.6", WIDTH)
        for sequence in (10, 11, 12):
            second.write(result(sequence))
        second.start()
        try:
            frame = subscriber.receive(WAIT_S)
        finally:
            second.close()
    assert frame is not None and frame.frame_id == 12
    assert subscriber.connections == 2


def test_a_stale_socket_is_replaced_and_a_live_one_refused(sock_dir):
    path = sock_dir / "tokens.sock"
    path.write_text("left by a publisher that died")
    publisher = StreamPublisher(Address(path=path), "2.6", WIDTH).start()
    try:
        with pytest.raises(InputError, match="served by another publisher"):
            StreamPublisher(Address(path=path), "2.6", WIDTH).start()
    finally:
        publisher.close()


def test_tcp_takes_loopback_only_and_refuses_a_wrong_secret(sock_dir):
    for host in ("0.0.0.0:8090", "192.168.1.5:8090", "example.com:8090", "[::]:8090"):
        with pytest.raises(InputError, match="not a loopback address"):
            tcp_address(host)
    with pytest.raises(InputError, match="port"):
        tcp_address("127.0.0.1:http")
    assert tcp_address("[::1]:8090") == Address(host="::1", port=8090)
    with pytest.raises(InputError, match="needs stream.secret_file"):
        StreamPublisher(Address(host="127.0.0.1", port=0), "2.6", WIDTH)
    (sock_dir / "short").write_text("abc\n")
    with pytest.raises(InputError, match="fewer than 16"):
        read_secret(sock_dir / "short")
    with pytest.raises(InputError, match="cannot read"):
        read_secret(sock_dir / "missing")
    (sock_dir / "secret").write_text("a-long-enough-shared-secret\n")
    secret = read_secret(sock_dir / "secret")
    publisher = StreamPublisher(Address(host="127.0.0.1", port=0), "2.6", WIDTH, secret=secret).start()
    try:
        with pytest.raises(HandshakeRefused, match="wrong shared secret"):
            StreamSubscriber(publisher.address, WIDTH, secret=b"not-the-secret-at-all").receive(WAIT_S)
        with pytest.raises(HandshakeRefused, match="requires a shared secret"):
            StreamSubscriber(publisher.address, WIDTH).receive(WAIT_S)
        with StreamSubscriber(publisher.address, WIDTH, secret=secret) as subscriber:
            assert subscriber.connect(WAIT_S)
            wait_for_subscribers(publisher, 1)
            publisher.write(result(7))
            frame = subscriber.receive(WAIT_S)
    finally:
        publisher.close()
    assert frame is not None and frame.frame_id == 7


def test_a_publisher_with_nobody_listening_never_blocks_and_packs_only_for_a_subscriber(sock_dir: Path):
    address = Address(path=sock_dir / "tokens.sock")
    publisher = StreamPublisher(address, "2.6", WIDTH).start()
    try:
        for sequence in range(5):
            publisher.write(result(sequence))
        stats = publisher.stats()
        assert (stats["subscribers"], stats["dropped"], stats["accepted"], stats["published"]) == ([], 0, 0, 5)
        assert stats["packed"] == 0  # nobody to send to: no frame was cast
        with StreamSubscriber(address, WIDTH) as subscriber:
            frame = subscriber.receive(WAIT_S)  # the newest, packed when the subscriber came
        assert frame is not None and frame.frame_id == 4 and publisher.stats()["packed"] == 1
    finally:
        publisher.close()


def test_a_reused_frames_tokens_are_cast_once(sock_dir: Path):
    address = Address(path=sock_dir / "tokens.sock")
    publisher = StreamPublisher(address, "2.6", WIDTH).start()
    try:
        with StreamSubscriber(address, WIDTH) as subscriber:
            assert subscriber.connect(WAIT_S)
            wait_for_subscribers(publisher, 1)
            first = result(0)
            publisher.write(first)
            publisher.write(first._replace(sequence=1, reused_from=0))  # the same tokens array, as reuse hands on
            frames = [subscriber.receive(WAIT_S) for _ in range(2)]
        assert [(f.frame_id, f.reused_from) for f in frames] == [(0, None), (1, 0)]
        np.testing.assert_array_equal(frames[1].tokens, first.tokens.astype(np.float16))
        assert publisher.stats()["packed"] == 1
    finally:
        publisher.close()


def test_frames_iterates_until_the_subscriber_is_closed(sock_dir):
    address = Address(path=sock_dir / "tokens.sock")
    publisher = StreamPublisher(address, "2.6", WIDTH).start()
    try:
        subscriber = StreamSubscriber(address, WIDTH)
        assert subscriber.connect(WAIT_S)
        wait_for_subscribers(publisher, 1)
        for sequence in range(3):
            publisher.write(result(sequence, slices=1))
        seen = []
        for frame in subscriber.frames(poll_s=0.05):
            seen.append(frame.frame_id)
            if len(seen) == 3:
                subscriber.close()
        assert seen == [0, 1, 2] and subscriber.received == 3
    finally:
        publisher.close()


def test_positions_and_block_rows_travel_with_a_47_frame_and_2x_frames_stay_version_2(sock_dir):
    """A 4.7 result's rows, their (t, h, w) positions and its blocks' row counts arrive as sent (a reused frame
    keeps them); a frame without them is the version 2 message it always was; a frame whose positions are broken
    is rejected with its reason and the stream goes on."""
    from edge.stream import protocol as wire

    address = Address(path=sock_dir / "tokens.sock")
    publisher = StreamPublisher(address, "4.7", 64).start()
    rng = np.random.default_rng(0)
    blocks = (12, 6, 6)
    positions = rng.integers(0, 40, (sum(blocks), 3), dtype=np.int32)
    first = FrameResult(0, 1.0, (2, 1), rng.standard_normal((sum(blocks), 64)).astype(np.float32), {},
                        positions=positions, block_rows=blocks)
    reused = first._replace(sequence=1, timestamp_s=1.5, reused_from=0)
    plain = FrameResult(2, 2.0, None, rng.standard_normal((1, 4, 64)).astype(np.float32), {})
    try:
        with StreamSubscriber(address, 64) as subscriber:
            assert subscriber.connect(WAIT_S)
            wait_for_subscribers(publisher, 1)
            for item in (first, reused, plain):
                publisher.write(item)
            for item in (first, reused, plain):
                frame = subscriber.receive(WAIT_S)
                assert (frame.frame_id, frame.reused_from, frame.grid) == (item.sequence, item.reused_from, item.grid)
                np.testing.assert_array_equal(frame.tokens, item.tokens.astype(np.float16))
                if item.positions is None:
                    assert frame.positions is None and frame.block_rows is None
                else:
                    assert frame.positions.dtype == np.int32 and frame.block_rows == blocks
                    np.testing.assert_array_equal(frame.positions, positions)
            assert subscriber.rejected == {}
    finally:
        publisher.close()
    assert wire.encode_frame(wire.StreamFrame(2, 2.0, "2.6", None, "fp16", plain.tokens))[4:6] == b"\x00\x02"
    assert wire.encode_frame(wire.StreamFrame(0, 1.0, "4.7", (2, 1), "fp16", first.tokens, positions=positions,
                                              block_rows=blocks))[4:6] == b"\x00\x03"
    broken = positions.copy()
    broken[3, 1] = -5
    bad = wire.decode(wire.encode_frame(wire.StreamFrame(0, 1.0, "4.7", (2, 1), "fp16", first.tokens,
                                                         positions=broken, block_rows=blocks)))
    with pytest.raises(wire.FrameError, match="positions must lie in") as error:
        wire.frame_of(bad)
    assert error.value.reason == "payload" and error.value.resync
