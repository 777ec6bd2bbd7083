"""SIGTERM and Ctrl-C during `minicpmv-convert convert`: the staging directory is removed on the way out, one line
says so, exit code 128 + the signal; a run killed outright leaves its staging directory to the next run, which
removes it. The tests wait for things to happen, generously; they do not time them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List

import pytest

from converter.cli import main

REPO = Path(__file__).resolve().parents[2]
PATIENCE_S = 240


def _start(checkpoint: Path, out: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "converter.cli", "convert", "--checkpoint", str(checkpoint), "--out", str(out),
               "--target", "orin-nano-8gb", "--count", "2", "--eval-images", "1", "--verify-images", "1"]
    with open(log, "w") as stderr:
        return subprocess.Popen(command, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=stderr)


def _staging(out: Path) -> List[Path]:
    return sorted(out.parent.glob(".%s.staging-*" % out.name))


def _wait_for(process: subprocess.Popen, out: Path, log: Path, step: str = "") -> Path:
    """The staging directory, once the export has written a graph into it and the log shows `step`."""
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        staged = [s for s in _staging(out) if list(s.glob("*/*.onnx"))]
        if staged and step in log.read_text():
            return staged[0]
        assert process.poll() is None, "convert ended before %r:\n%s" % (step or "export", log.read_text())
        time.sleep(0.05)
    process.kill()
    pytest.fail("no staging directory with a graph and %r after %d s:\n%s" % (step, PATIENCE_S, log.read_text()))


@pytest.mark.parametrize("signum,step", [(signal.SIGINT, ""), (signal.SIGTERM, "calibrating on")])
def test_signal_during_convert_cleans_up_and_says_so(make_checkpoint: Callable[..., Path], tmp_path: Path,
                                                     signum: int, step: str) -> None:
    """Stopped during the export (as it opens ONNX Runtime) or during calibration."""
    out, log = tmp_path / "bundle", tmp_path / "stderr.txt"
    process = _start(make_checkpoint("2.6"), out, log)
    _wait_for(process, out, log, step)
    os.kill(process.pid, signum)  # as `kill` or Ctrl-C (the terminal sends SIGINT to the process)
    code = process.wait(timeout=PATIENCE_S)
    err = log.read_text()
    assert code == 128 + signum, err
    name = signal.Signals(signum).name
    assert err.splitlines()[-1] == "minicpmv-convert: stopped by %s; nothing half-written was left" % name
    assert sum("stopped by" in line for line in err.splitlines()) == 1
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not out.exists() and _staging(out) == [] and sorted(os.listdir(tmp_path)) == ["stderr.txt"]


def test_staging_of_a_killed_run_is_removed_by_the_next(make_checkpoint: Callable[..., Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    out, log = tmp_path / "bundle", tmp_path / "stderr.txt"
    process = _start(make_checkpoint("2.6"), out, log)
    staging = _wait_for(process, out, log)
    process.kill()  # SIGKILL: no handler runs, the staging directory stays
    assert process.wait(timeout=PATIENCE_S) == -signal.SIGKILL
    assert staging.is_dir() and str(process.pid) in staging.name
    assert main(["export", "--checkpoint", str(make_checkpoint("2.6")), "--out", str(out), "--no-check"]) == 0
    assert not staging.exists() and _staging(out) == []
    assert (out / "manifest.yaml").is_file()
