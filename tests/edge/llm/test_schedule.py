"""The standing question on the real llama.cpp (tiny GGUF, tiny bundle) following a real publisher: an answer per
new frame in the answers file and at GET /v1/scene/latest, a reused frame skipped and counted, the greedy answer the
API gives to the same question, errors counted while the schedule goes on, a prompt stop. Bounds are generous: the
tests wait for things to happen, never for them to happen quickly."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest

from edge.errors import InputError
from edge.llm.api import Limits
from edge.llm.schedule import AnswersFile, ScheduleConfig
from edge.stream.protocol import StreamFrame
from edge.stream.publisher import StreamPublisher

from .conftest import publish

WAIT_S = 60.0
QUESTION = "what is there?"
RECORD_KEYS = {"frame_id", "timestamp_s", "reused_from", "question", "answer", "finish_reason", "asked_at", "seconds"}


def _wait(condition: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "%s never happened" % what
        time.sleep(0.02)


def _lines(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _get(url: str, token: str = "") -> Tuple[int, Dict[str, Any]]:
    headers = {"Authorization": "Bearer " + token} if token else {}
    request = urllib.request.Request(url + "/scene/latest", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_new_frames_are_answered_and_a_reused_one_is_skipped(start_llm, tmp_path: Path) -> None:
    answers = tmp_path / "answers.jsonl"
    running = start_llm(schedule=ScheduleConfig(QUESTION, 0.05, answers), limits=Limits(max_tokens=8))
    schedule = running.process.schedule
    _wait(lambda: schedule.counts["no_frame"] >= 1, "a period without a frame")
    status, body = _get(running.url)
    assert status == 404 and "no answer to the standing question yet" in body["error"]["message"]
    publish(running, 1, seed=1)
    _wait(lambda: _lines(answers), "an answer about frame 1")
    first = _lines(answers)[0]
    assert set(first) == RECORD_KEYS and first["frame_id"] == 1 and first["timestamp_s"] == 101.0
    assert first["question"] == QUESTION and first["finish_reason"] in ("stop", "length")
    assert first["reused_from"] is None and first["seconds"] >= 0 and isinstance(first["answer"], str)
    assert _get(running.url) == (200, first)

    publish(running, 2, seed=1, reused_from=1)  # the agent saw no change: frame 1's tokens again
    _wait(lambda: running.process.follower.latest.frame_id == 2, "frame 2's arrival")
    skipped = schedule.counts["unchanged"]
    _wait(lambda: schedule.counts["unchanged"] >= skipped + 2, "two periods skipping frame 2")
    assert len(_lines(answers)) == 1 and schedule.counts["answered"] == 1

    publish(running, 3, seed=3)
    _wait(lambda: len(_lines(answers)) == 2, "an answer about frame 3")
    assert _lines(answers)[1]["frame_id"] == 3 and _get(running.url)[1]["frame_id"] == 3
    assert schedule.counts["answered"] == 2 and schedule.counts["errors"] == 0

    running.publisher.close()  # the agent restarts and numbers its frames anew: its frame 3 is another scene
    restarted = StreamPublisher(running.publisher.address, "2.6", 256).start()
    try:
        publish(running, 3, seed=4, publisher=restarted)
        _wait(lambda: len(_lines(answers)) == 3, "an answer about the restarted agent's frame 3")
    finally:
        restarted.close()
    assert _lines(answers)[2]["frame_id"] == 3 and schedule.counts["answered"] == 3


def test_the_scheduled_answer_is_the_greedy_api_answer(start_llm, tmp_path: Path) -> None:
    openai = pytest.importorskip("openai", reason="the openai client is not installed (pip install -e '.[dev]')")
    answers = tmp_path / "answers.jsonl"
    running = start_llm(schedule=ScheduleConfig(QUESTION, 0.05, answers), limits=Limits(max_tokens=8))
    publish(running, 4, seed=4)
    _wait(lambda: _lines(answers), "an answer about frame 4")
    scheduled = _lines(answers)[0]
    client = openai.OpenAI(base_url=running.url, api_key="none", max_retries=0, timeout=WAIT_S)
    reply = client.chat.completions.create(model=running.process.server.model_id, max_tokens=8, temperature=0,
                                           messages=[{"role": "user", "content": QUESTION}])
    assert reply.frame["frame_id"] == scheduled["frame_id"] == 4 and reply.usage.completion_tokens >= 1
    assert reply.choices[0].message.content == scheduled["answer"]
    assert reply.choices[0].finish_reason == scheduled["finish_reason"]


def test_a_failed_answer_is_counted_and_the_schedule_goes_on(start_llm, tmp_path: Path) -> None:
    answers = tmp_path / "answers.jsonl"
    running = start_llm(schedule=ScheduleConfig(QUESTION, 0.05, answers), limits=Limits(max_tokens=4))
    tokens = np.zeros((1, 64, 256), dtype=np.float32)  # one block, but the header says a 2x1 grid: 503 in the API
    running.publisher.publish(StreamFrame(5, 1.0, "2.6", (2, 1), "fp16", tokens))
    _wait(lambda: running.process.schedule.counts["errors"] >= 2, "two failed answers")
    assert not _lines(answers)
    publish(running, 6, seed=6)
    _wait(lambda: _lines(answers), "an answer about frame 6")
    assert _lines(answers)[0]["frame_id"] == 6


def test_the_scene_endpoint_without_a_schedule_is_404(start_llm) -> None:
    status, body = _get(start_llm().url)
    assert status == 404 and "no standing question is configured" in body["error"]["message"]


def test_the_scene_endpoint_takes_the_token(start_llm) -> None:
    token = "s3cret-token-0123456789"
    running = start_llm(token=token, schedule=ScheduleConfig(QUESTION, 3600.0))
    assert _get(running.url)[0] == 401
    assert _get(running.url, token)[0] == 404


def test_close_stops_the_schedule_at_once(make_bundle, make_gguf, sock_dir: Path) -> None:
    from edge.llm.process import LlmProcess
    from edge.stream.address import Address

    process = LlmProcess(make_bundle("2.6"), make_gguf("2.6"), Address(path=sock_dir / "none.sock"),
                         listen="127.0.0.1:0", schedule=ScheduleConfig(QUESTION, 3600.0))
    thread = process.schedule._thread
    assert thread.is_alive()
    process.close()  # the thread waits out its hour in Event.wait: close ends that wait
    assert not thread.is_alive()


def test_the_answers_file_is_whole_lines_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    answers = AnswersFile(path, max_bytes=300)
    for frame_id in range(10):
        answers.append({"frame_id": frame_id, "answer": "a cat\non the table, é" * 2})
    rotated = tmp_path / "answers.jsonl.1"
    assert path.stat().st_size <= 300 and rotated.stat().st_size <= 300
    ids = [line["frame_id"] for line in _lines(rotated) + _lines(path)]
    assert ids == list(range(10 - len(ids), 10))  # the newest, in order, each line whole
    with pytest.raises(InputError, match="--answers-file: cannot append to .*missing"):
        AnswersFile(tmp_path / "missing" / "answers.jsonl")
