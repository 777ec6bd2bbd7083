"""How `minicpmv-edge` ends on what a new user hits: oversized input is refused before any allocation, a pipe
closed by its reader (`| head`) ends quietly, SIGTERM and Ctrl-C unwind with one line, usage errors are one line.
The commands run as real processes where the behaviour is the process's (signals, pipes, exit codes)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.cli.main import main

REPO = Path(__file__).resolve().parents[3]


def _edge(*args: str, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge.cli", *args], cwd=str(REPO), stderr=subprocess.PIPE,
                            text=True, **options)


def test_a_huge_scene_is_refused_before_it_is_made(make_bundle, capsys):
    bundle = str(make_bundle("2.6"))
    capsys.readouterr()  # drop the fixture's export log
    assert main(["encode", "--bundle", bundle, "--scene", "100000x100000"]) == 2
    err = capsys.readouterr().err.strip()
    assert "10000000000 pixels" in err and "smaller --scene" in err and len(err.splitlines()) == 1


def test_an_image_beyond_pillows_limit_is_refused_from_its_header(make_bundle, tmp_path, capsys):
    from PIL import Image

    path = tmp_path / "huge.png"
    Image.new("1", (20000, 10000)).save(path)  # 200 M pixels, 25 MB in memory as 1-bit
    bundle = str(make_bundle("2.6"))
    capsys.readouterr()
    assert main(["encode", "--bundle", bundle, "--image", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "too large" in err and "downscale" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("command", [["doctor", "--json"], ["inspect", "--json"]])
def test_a_reader_that_closes_the_pipe_ends_it_quietly(command, make_bundle):
    args = command + (["--bundle", str(make_bundle("2.6"))] if command[0] == "inspect" else [])
    process = _edge(*args, stdout=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the command writes, as with `| head -0`
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGPIPE and "Traceback" not in err and err == ""


def test_sigterm_stops_a_command_with_one_line():
    """(Ctrl-C takes the same path through edge.cli.shell: tests/converter/test_convert_signals.py sends both.)"""
    signum = signal.SIGTERM
    process = _edge("bench", "preprocess", "--sizes", "4032x3024", "--repeats", "1000", stdout=subprocess.DEVNULL)
    time.sleep(3)  # running by now: imports done, resizing 12 MP frames
    os.kill(process.pid, signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum
    assert err.strip().splitlines() == ["minicpmv-edge: stopped by %s; nothing half-written was left"
                                        % signal.Signals(signum).name]


def test_usage_errors_are_one_line_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["profile", "--config", "agent.yaml", "--frames", "0"])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and len(err.splitlines()) == 1
    assert "--frames" in err and "at least 1" in err and "minicpmv-edge profile --help" in err
