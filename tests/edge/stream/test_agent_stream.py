"""The agent with `stream: {enabled: true}` publishes every handled frame to a subscriber as well as writing its
.npy files; a socket it cannot serve is one line and exit 2, before any engine is built."""
from __future__ import annotations

import time

import numpy as np
import pytest

from edge.agent.config import load_agent_config
from edge.agent.runner import make_pipeline, run_pipeline
from edge.cli.main import main
from edge.stream.address import Address
from edge.stream.subscriber import StreamSubscriber
from tests.edge.agent.fakes import FrameList
from tests.edge.camera.fakes import moving_frames, write_video

pytest.importorskip("cv2")
WAIT_S = 120.0


def test_run_publishes_every_frame_on_the_stream(converted_bundle, tmp_path, sock_dir):
    """Every frame the agent handles reaches the subscriber, equal to its .npy file. The frames come from a camera
    that drops none (FrameList): a paced file camera keeps only its newest frame, so on a loaded machine a frame
    the encoder was too slow for is dropped before the agent sees it, which is the camera's behaviour, not the
    stream's."""
    config = tmp_path / "agent.yaml"
    config.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi}\nreuse: {enabled: false}\n"
                      "stream: {enabled: true, socket: %s, dtype: fp32}\n" % (converted_bundle, sock_dir / "t.sock"))
    pipeline = make_pipeline(load_agent_config(config), max_frames=3,
                             source=FrameList(moving_frames(3, size=(320, 240))))
    publisher = pipeline.sink.sinks[1]
    width = publisher.token_width
    with StreamSubscriber(Address(path=sock_dir / "t.sock"), width) as subscriber:
        assert subscriber.connect(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while not publisher.stats()["subscribers"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        report = run_pipeline(pipeline)
        frames = [subscriber.receive(WAIT_S) for _ in range(report["frames"])]
    assert report["frames"] == 3 and report["errors"] == 0
    assert "token stream" in report["sink"] and "npy files" in report["sink"]
    written = sorted((tmp_path / "tokens").glob("frame-*.npy"))
    assert [f.frame_id for f in frames] == [int(p.stem.split("-")[1]) for p in written]
    for frame, path in zip(frames, written):
        np.testing.assert_array_equal(frame.tokens, np.load(path))
        assert frame.tokens.shape[-1] == width and frame.model_version == subscriber.model_version
    assert not (sock_dir / "t.sock").exists()  # the run closed the stream


def test_a_socket_the_agent_cannot_serve_is_one_line(converted_bundle, tmp_path, capsys):
    write_video(tmp_path / "clip.avi", moving_frames(2), fps=10)
    (tmp_path / "file").write_text("not a folder")
    config = tmp_path / "agent.yaml"
    config.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi}\nbackend: tensorrt\n"
                      "stream: {enabled: true, socket: file/t.sock}\n" % converted_bundle)
    capsys.readouterr()
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stream.socket: cannot create" in err and "TensorRT" not in err, err
