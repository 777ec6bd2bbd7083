"""`minicpmv-edge llm`: bad input is one line and exit 2 (missing files, a GGUF of another width, a non-loopback
listen without a token, a standing question without its period); a running process serves the API, answers its
standing question, and stops on SIGTERM with exit 0."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llm]')")

from edge.cli.main import main  # noqa: E402
from edge.errors import InputError  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def _refused(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(["llm", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def _token(folder: Path) -> Path:
    path = folder / "token"
    path.write_text("0123456789abcdef0123\n")
    return path


def test_bad_input_is_one_line(make_bundle, make_gguf, tmp_path, capsys, monkeypatch) -> None:
    bundle, gguf = str(make_bundle("2.6")), str(make_gguf("2.6"))
    assert "--gguf" in _refused(capsys, "--bundle", bundle, "--gguf", str(tmp_path / "none.gguf"))
    assert "--bundle" in _refused(capsys, "--bundle", str(tmp_path / "none"), "--gguf", gguf)
    assert "--gguf is required, or --config" in _refused(capsys, "--bundle", bundle)
    config = tmp_path / "agent.yaml"
    config.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi}\n" % bundle)
    assert "an llm: section with gguf:" in _refused(capsys, "--config", str(config))
    config.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi}\nllm: {gguf: none.gguf}\n" % bundle)
    assert "--gguf" in _refused(capsys, "--config", str(config))
    assert "--token-file" in _refused(capsys, "--bundle", bundle, "--gguf", gguf, "--listen", "0.0.0.0:0")
    assert "cannot listen" in _refused(capsys, "--bundle", bundle, "--gguf", gguf, "--listen", "192.0.2.1:8089",
                                       "--token-file", str(_token(tmp_path)))
    from converter import family
    from converter.gguf_writer import write_gguf

    monkeypatch.setattr(family, "TINY_LLM_HIDDEN", 128)
    narrow = write_gguf(tmp_path / "narrow.gguf", "2.6").path
    err = _refused(capsys, "--bundle", bundle, "--gguf", str(narrow), "--listen", "127.0.0.1:0")
    assert "token width mismatch" in err and "256" in err and "128" in err


def test_it_serves_until_sigterm(make_bundle, make_gguf, tmp_path, sock_dir) -> None:
    """Under a NOTIFY_SOCKET the test owns: READY once the API listens, metrics on loopback, and SIGTERM ends it
    with STOPPING and exit 0."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_dir / "notify"))
    notify.settimeout(60)
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", "llm", "--bundle", str(make_bundle("2.6")),
                                "--gguf", str(make_gguf("2.6")), "--stream", str(tmp_path / "none.sock"),
                                "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"], cwd=str(REPO),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, NOTIFY_SOCKET=str(sock_dir / "notify")))
    try:
        line = process.stdout.readline()
        assert line.startswith("serving 2.6-seed0 at http://127.0.0.1:"), line
        url = line.split()[3]
        metrics = process.stdout.readline()
        assert metrics.startswith("metrics at http://127.0.0.1:"), metrics
        assert notify.recv(4096).decode().splitlines()[0] == "READY=1"
        with urllib.request.urlopen(url + "/models", timeout=60) as response:
            assert json.loads(response.read())["data"][0]["id"] == "2.6-seed0"
        with urllib.request.urlopen(metrics.split()[2], timeout=60) as response:
            assert "minicpmv_edge_llm_requests_total{status=\"200\"} 1.0" in response.read().decode()
    finally:
        os.kill(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        message = notify.recv(4096).decode()
        notify.close()
    assert process.returncode == 0, err
    assert message.splitlines()[0] == "STOPPING=1"
    assert "Traceback" not in err


def _usage_error(capsys, *args: str) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["llm", *args])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_a_standing_question_needs_its_flags(make_bundle, make_gguf, tmp_path, capsys) -> None:
    base = ["--bundle", str(make_bundle("2.6")), "--gguf", str(make_gguf("2.6")), "--listen", "127.0.0.1:0",
            "--stream", str(tmp_path / "none.sock")]
    assert "needs --every SECONDS as well" in _refused(capsys, *base, "--ask", "what is there?")
    assert 'needs --ask "QUESTION" as well' in _refused(capsys, *base, "--every", "5")
    assert 'needs --ask "QUESTION" and --every SECONDS' in _refused(capsys, *base, "--answers-file", "a.jsonl")
    assert "the question is empty" in _refused(capsys, *base, "--ask", " ", "--every", "5")
    assert "at most 86400 seconds" in _refused(capsys, *base, "--ask", "?", "--every", "100000")
    for every in ("0", "-1", "nan", "inf", "soon"):
        assert "argument --every: expected a number greater than 0" in _usage_error(capsys, *base, "--ask", "?",
                                                                                     "--every", every)
    err = _refused(capsys, *base, "--ask", "?", "--every", "5", "--answers-file", str(tmp_path / "no" / "a.jsonl"))
    assert "--answers-file: cannot append to" in err


def test_the_schedule_flags_win_over_the_config(tmp_path, capsys, monkeypatch) -> None:
    import edge.llm.process
    from edge.llm.schedule import ScheduleConfig

    passed = []

    def fake_process(*args, schedule=None, **options):
        passed.append(schedule)
        raise InputError("stopped before loading anything")

    monkeypatch.setattr(edge.llm.process, "LlmProcess", fake_process)
    config = tmp_path / "agent.yaml"
    config.write_text("bundle: b\ncamera: {kind: file, path: clip.avi}\nllm:\n  gguf: m.gguf\n  schedule: "
                      "{question: 'from the config?', every_s: 60, answers_file: answers.jsonl}\n")
    for flags in ([], ["--ask", "from the flag?"], ["--every", "0.5", "--answers-file", "here.jsonl"]):
        assert main(["llm", "--config", str(config), *flags]) == 2
    assert main(["llm", "--bundle", "b", "--gguf", "m.gguf", "--ask", "flags only?", "--every", "2"]) == 2
    assert main(["llm", "--bundle", "b", "--gguf", "m.gguf"]) == 2
    assert passed == [ScheduleConfig("from the config?", 60.0, tmp_path / "answers.jsonl"),
                      ScheduleConfig("from the flag?", 60.0, tmp_path / "answers.jsonl"),
                      ScheduleConfig("from the config?", 0.5, Path("here.jsonl")),
                      ScheduleConfig("flags only?", 2.0, None),
                      None]


def test_a_standing_question_answers_a_published_frame(make_bundle, make_gguf, tmp_path) -> None:
    import numpy as np

    from edge.stream.address import Address
    from edge.stream.protocol import StreamFrame
    from edge.stream.publisher import StreamPublisher

    sockets = Path(tempfile.mkdtemp(prefix="mcv-", dir="/tmp"))  # a Unix socket path must be short
    answers = tmp_path / "answers.jsonl"
    config = tmp_path / "agent.yaml"
    config.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi}\nstream: {socket: %s}\nllm:\n  gguf: %s\n"
                      "  max_tokens: 4\n  schedule: {question: 'from the config?', every_s: 3600, answers_file: "
                      "unused.jsonl}\n" % (make_bundle("2.6"), sockets / "tokens.sock", make_gguf("2.6")))
    publisher = StreamPublisher(Address(path=sockets / "tokens.sock"), "2.6", 256).start()
    publisher.publish(StreamFrame(5, 1.5, "2.6", None, "fp16", np.zeros((1, 64, 256), dtype=np.float32)))
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", "llm", "--config", str(config), "--listen",
                                "127.0.0.1:0", "--every", "0.1", "--answers-file", str(answers)], cwd=str(REPO),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().split()[3]
        deadline = time.monotonic() + 60
        while not answers.exists() or not answers.read_text().endswith("\n"):
            assert time.monotonic() < deadline and process.poll() is None, "no answer came"
            time.sleep(0.05)
        line = json.loads(answers.read_text().splitlines()[0])
        assert line["frame_id"] == 5 and line["question"] == "from the config?"
        with urllib.request.urlopen(url + "/scene/latest", timeout=60) as response:
            assert json.loads(response.read()) == line
    finally:
        os.kill(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        publisher.close()
        shutil.rmtree(str(sockets), ignore_errors=True)
    assert process.returncode == 0  # SIGTERM ends it cleanly
    assert any(" INFO minicpmv-edge.llm.schedule: answer about frame 5: " in row for row in err.splitlines()), err
    assert not (tmp_path / "unused.jsonl").exists()
