"""`minicpmv-edge llm`: bad input is one line and exit 2 (missing files, a GGUF of another width, a non-loopback
listen without a token); a running process serves the API and stops on SIGTERM with one line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llm]')")

from edge.cli.main import main  # noqa: E402

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


def test_it_serves_until_sigterm(make_bundle, make_gguf, tmp_path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", "llm", "--bundle", str(make_bundle("2.6")),
                                "--gguf", str(make_gguf("2.6")), "--stream", str(tmp_path / "none.sock"),
                                "--listen", "127.0.0.1:0"], cwd=str(REPO), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("serving 2.6-seed0 at http://127.0.0.1:"), line
        url = line.split()[3]
        with urllib.request.urlopen(url + "/models", timeout=60) as response:
            assert json.loads(response.read())["data"][0]["id"] == "2.6-seed0"
    finally:
        os.kill(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines() == ["minicpmv-edge: stopped by SIGTERM; nothing half-written was left"]
