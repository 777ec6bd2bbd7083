"""The LLM process's API through the `openai` client against the real server (real llama.cpp, tiny GGUF, tiny
bundle): answers about the camera's newest frame and about a data-URI image, streamed and whole; the refusals
(400, 401, 413, 429, 503). The answers are random-weight gibberish: only structure and behaviour are checked."""
from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

openai = pytest.importorskip("openai", reason="the openai client is not installed (pip install -e '.[dev]')")

from edge.llm.api import Limits  # noqa: E402

from .conftest import post_chat, publish, scene  # noqa: E402

WAIT_S = 60.0


def _client(url: str, token: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=token, max_retries=0, timeout=WAIT_S)


def _data_uri(seed: int, fmt: str = "PNG", size=(96, 128)) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(scene(seed, size)).save(buffer, format=fmt)
    return "data:image/%s;base64,%s" % (fmt.lower(), base64.b64encode(buffer.getvalue()).decode())


def _wait_for_frame(running, frame_id: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while (running.process.follower.latest or (None,))[0] != frame_id:
        assert time.monotonic() < deadline, "frame %d never arrived" % frame_id
        time.sleep(0.02)


def test_a_streamed_answer_about_the_cameras_newest_frame(start_llm) -> None:
    running = start_llm()
    client = _client(running.url)
    model = client.models.list().data[0].id
    with pytest.raises(openai.APIStatusError) as error:  # nothing published yet
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "what is there?"}])
    assert error.value.status_code == 503 and "no camera frame" in str(error.value)
    publish(running, 1, seed=1)
    publish(running, 2, seed=2)
    _wait_for_frame(running, 2)
    chunks = list(client.chat.completions.create(model=model, stream=True, max_tokens=8,
                                                 messages=[{"role": "user", "content": "what is there?"}]))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert chunks[-1].frame["frame_id"] == 2  # the newest frame, not the first
    assert chunks[-1].usage.completion_tokens <= 8 and chunks[-1].usage.prompt_tokens > 3 * 64
    assert chunks[-1].timings["prompt_ms"] > 0 and chunks[-1].timings["decode_ms"] > 0  # the page's LLM bars
    assert all(getattr(c, "timings", None) is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    whole = client.chat.completions.create(model=model, max_tokens=8,
                                           messages=[{"role": "user", "content": "what is there?"}])
    assert whole.choices[0].message.content == text  # greedy: the same answer, streamed or whole
    generator = running.process.server.service.generator
    assert whole.frame["frame_id"] == 2 and generator.kept_image_rows == generator.fed_image_rows == 3 * 64


def test_frame_ids_of_a_restarted_agent_name_new_frames(start_llm, sock_dir: Path) -> None:
    """A restarted agent numbers its frames from the start again: its frame 1 is fed, not taken for the cached
    frame 1 of the earlier connection."""
    from edge.stream.address import Address
    from edge.stream.publisher import StreamPublisher

    running = start_llm()
    publish(running, 1, seed=1)
    _wait_for_frame(running, 1)
    ask = dict(model=running.process.server.model_id, max_tokens=2, messages=[{"role": "user", "content": "?"}])
    _client(running.url).chat.completions.create(**ask)
    generator = running.process.server.service.generator
    rows = generator.fed_image_rows
    running.publisher.close()
    restarted = StreamPublisher(Address(path=sock_dir / "tokens.sock"), "2.6", 256).start()
    try:
        publish(running, 1, seed=2, publisher=restarted)
        deadline = time.monotonic() + WAIT_S
        while running.process.follower.newest()[1] != 2:
            assert time.monotonic() < deadline, "the follower never reconnected"
            time.sleep(0.02)
        assert _client(running.url).chat.completions.create(**ask).frame["frame_id"] == 1
    finally:
        restarted.close()
    assert generator.fed_image_rows == 2 * rows and generator.kept_image_rows == 0


def test_the_last_frame_stays_while_the_stream_is_away(start_llm) -> None:
    running = start_llm()
    publish(running, 7, seed=7)
    _wait_for_frame(running, 7)
    running.publisher.close()
    reply = _client(running.url).chat.completions.create(model=running.process.server.model_id, max_tokens=2,
                                                         messages=[{"role": "user", "content": "still there?"}])
    assert reply.frame["frame_id"] == 7


def test_an_answer_about_a_data_uri_image(start_llm) -> None:
    running = start_llm()
    client = _client(running.url)
    for fmt in ("PNG", "JPEG"):
        content = [{"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {"url": _data_uri(3, fmt)}}]
        chunks = list(client.chat.completions.create(model=running.process.server.model_id, stream=True,
                                                     max_tokens=4, messages=[{"role": "user", "content": content}]))
        assert chunks[-1].choices[0].finish_reason in ("stop", "length") and chunks[-1].frame is None
    body = json.dumps({"stream": True, "max_tokens": 3, "messages": [{"role": "user", "content": content}]}).encode()
    request = urllib.request.Request(running.url + "/chat/completions", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        events = response.read().decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""] and all(e.startswith("data: {") for e in events[:-2])


def test_models_and_bad_requests(start_llm) -> None:
    running = start_llm()
    models = _client(running.url).models.list().data
    assert [m.id for m in models] == [running.process.server.model_id] and models[0].object == "model"
    status, body = post_chat(running.url, b"{not json")
    assert status == 400 and "not JSON" in body["error"]["message"]
    unknown = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
    status, body = post_chat(running.url, json.dumps(unknown).encode())
    assert status == 400 and "unknown model" in body["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="unknown model"):
        _client(running.url).chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])


def test_a_request_beyond_the_context_is_400(start_llm) -> None:
    running = start_llm(n_ctx=256)
    content = [{"type": "image_url", "image_url": {"url": _data_uri(4, size=(480, 640))}}]  # 3 blocks of 64 rows
    status, body = post_chat(running.url, json.dumps({"messages": [{"role": "user", "content": content}],
                                                  "max_tokens": 100}).encode())
    assert status == 400 and "context of 256 tokens" in body["error"]["message"]


def test_oversized_body_and_image_are_413(start_llm) -> None:
    running = start_llm(limits=Limits(max_body_bytes=200_000, max_image_pixels=100 * 100))
    client = _client(running.url)
    big = [{"role": "user", "content": "x" * 300_000}]
    with pytest.raises(openai.APIStatusError) as error:
        client.chat.completions.create(model=running.process.server.model_id, messages=big)
    assert error.value.status_code == 413 and "over 200000 bytes" in str(error.value)
    content = [{"type": "image_url", "image_url": {"url": _data_uri(5, size=(120, 120))}}]
    with pytest.raises(openai.APIStatusError) as error:
        client.chat.completions.create(model=running.process.server.model_id,
                                       messages=[{"role": "user", "content": content}])
    assert error.value.status_code == 413 and "pixels" in str(error.value)


def test_more_requests_than_the_queue_holds_are_429(start_llm) -> None:
    running = start_llm(max_waiting=1)
    service = running.process.server.service
    publish(running, 1, seed=1)
    _wait_for_frame(running, 1)
    service.admit()
    service.admit()  # one answering and one waiting: the queue is full
    client = _client(running.url)
    request = dict(model=running.process.server.model_id, max_tokens=2, messages=[{"role": "user", "content": "?"}])
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**request)
    service.release()
    assert client.chat.completions.create(**request).choices[0].finish_reason in ("stop", "length")
    service.release()


def test_a_configured_token_is_required(start_llm, tmp_path: Path) -> None:
    running = start_llm(token="s3cret-token-0123456789")
    with pytest.raises(openai.AuthenticationError):
        _client(running.url, "wrong-token").models.list()
    status, body = post_chat(running.url, b"{}")
    assert status == 401 and "bearer token" in body["error"]["message"]
    assert _client(running.url, "s3cret-token-0123456789").models.list().data


def test_a_frame_that_does_not_fit_the_bundle_is_503(start_llm) -> None:
    import numpy as np

    from edge.stream.protocol import StreamFrame

    running = start_llm()
    tokens = np.zeros((1, 64, 256), dtype=np.float32)  # one block, but the header says a 2x1 grid
    running.publisher.publish(StreamFrame(3, 1.0, "2.6", (2, 1), "fp16", tokens))
    _wait_for_frame(running, 3)
    with pytest.raises(openai.APIStatusError) as error:
        _client(running.url).chat.completions.create(model=running.process.server.model_id,
                                                     messages=[{"role": "user", "content": "?"}])
    assert error.value.status_code == 503 and "needs 3 blocks" in str(error.value)
