"""The shipped units, checked by systemd's own tools as `minicpmv-edge install` writes them.

`systemd-analyze verify` needs every ExecStart= program to exist, so the units checked are the ones `install --root`
writes into a temporary tree: their ExecStart= names the real `minicpmv-edge` entry point of the Python running
the tests, the one install puts there on a device. The files are verified by path; nothing is loaded into the
machine's systemd. The snippets are applied to that tree by systemd-sysusers and systemd-tmpfiles with --root, as
a first boot would apply them."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from edge.cli.main import main
from edge.deploy import layout

ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is missing: apt-get install systemd "
                                                           "(make test installs it)")
MAX_EXPOSURE = 3.5


@pytest.fixture(scope="module")
def installed(make_bundle, tmp_path_factory) -> Path:
    """A tree written by `minicpmv-edge install --root` (a host bundle: no L4T check, no systemctl)."""
    root = tmp_path_factory.mktemp("root")
    assert main(["install", "--root", str(root), "--bundle", str(make_bundle("2.6"))]) == 0
    return root


def _unit(root: Path, name: str) -> Path:
    return root / str(layout.UNIT_DIR / name).lstrip("/")


def _settings(text: str) -> Dict[str, List[str]]:
    """key -> every value it is given (DeviceAllow= comes many times)."""
    found: Dict[str, List[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_installed_units_start_this_venvs_program(installed):
    program = str(Path(sys.executable).parent / "minicpmv-edge")
    for name in layout.UNITS:
        exec_start = _settings(_unit(installed, name).read_text())["ExecStart"]
        assert len(exec_start) == 1 and exec_start[0].startswith(program + " ")


@needs_systemd
@pytest.mark.parametrize("name", layout.UNITS)
def test_systemd_analyze_verify_is_clean(installed, name):
    result = subprocess.run([ANALYZE, "verify", "--man=no", str(_unit(installed, name))], capture_output=True,
                            text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_systemd
def test_verify_catches_what_it_should(installed, tmp_path):
    """The check above can fail: a misspelt key and a missing program are reported."""
    broken = tmp_path / layout.AGENT_UNIT
    text = _unit(installed, layout.AGENT_UNIT).read_text()
    broken.write_text(text.replace("RestrictRealtime=", "RestrictRealtim=").replace(
        str(Path(sys.executable).parent / "minicpmv-edge"), "/nonexistent/minicpmv-edge"))
    result = subprocess.run([ANALYZE, "verify", "--man=no", str(broken)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "Unknown key 'RestrictRealtim'" in result.stderr and "/nonexistent/minicpmv-edge" in result.stderr


def exposure(unit: Path) -> float:
    """systemd-analyze security --offline=yes's overall exposure of a unit file (0 safest, 10 least safe)."""
    result = subprocess.run([ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True,
                            text=True, check=True)
    return float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout).group(1))


@needs_systemd
@pytest.mark.parametrize("name", layout.UNITS)
def test_exposure_is_at_most_3_5(installed, name):
    figure = exposure(_unit(installed, name))
    print("%s: exposure %.1f" % (name, figure))
    assert figure <= MAX_EXPOSURE


def test_hardening_as_docs_systemd_md_says():
    """What must and must not be there, per unit (the reasons: docs/systemd.md)."""
    units = {name: _settings((layout.units_dir() / name).read_text()) for name in layout.UNITS}
    for name, settings in units.items():
        assert settings["User"] == ["minicpmv-edge"] and settings["CapabilityBoundingSet"] == [""]
        assert settings["ProtectSystem"] == ["strict"] and settings["NoNewPrivileges"] == ["yes"]
        assert "MemoryDenyWriteExecute" not in settings, name  # CUDA and TensorRT JIT
        assert settings["MemoryMax"] and settings["MemoryHigh"]
        assert settings["StateDirectoryMode"] == ["0750"]  # the tmpfiles.d mode, kept at every start
    agent, llm, build = units[layout.AGENT_UNIT], units[layout.LLM_UNIT], units[layout.BUILD_UNIT]
    assert "PrivateTmp" not in agent and "PrivateDevices" not in agent  # /tmp/argus_socket; GPU and cameras
    assert agent["DevicePolicy"] == ["closed"] and "/dev/nvmap rw" in agent["DeviceAllow"]
    assert "char-video4linux rw" in agent["DeviceAllow"] and "char-video4linux rw" not in build["DeviceAllow"]
    assert "DeviceAllow" not in llm and llm["PrivateDevices"] == ["yes"]  # llama.cpp runs on the CPU
    for settings in (agent, llm):
        assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
        assert settings["Restart"] == ["on-failure"] and settings["SuccessExitStatus"] == ["143"]
        assert settings["RuntimeDirectory"] == ["minicpmv-edge"] and settings["RuntimeDirectoryPreserve"] == ["yes"]
    assert agent["ExecReload"] == ["/bin/kill -HUP $MAINPID"] and agent["WatchdogSec"] == ["30s"]
    assert "ExecReload" not in llm and "WatchdogSec" not in llm  # no SIGHUP handler, no work loop to ping from
    assert build["Type"] == ["oneshot"] and build["Before"] == [layout.AGENT_UNIT]
    assert layout.BUILD_UNIT in agent["Wants"][0] and layout.AGENT_UNIT in llm["After"][0]
    assert str(layout.CONFIG) in agent["ExecStart"][0] and str(layout.CONFIG) in llm["ExecStart"][0]
    assert str(layout.BUNDLE_DIR) in build["ExecStart"][0]


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
                    reason="systemd-sysusers or systemd-tmpfiles is missing: apt-get install systemd")
def test_first_boot_makes_the_user_and_gives_the_config_to_its_group(installed, tmp_path):
    """systemd-sysusers and systemd-tmpfiles (as at boot, but with --root) on a copy of the installed tree."""
    root = tmp_path / "root"
    shutil.copytree(str(installed), str(root), symlinks=True)
    subprocess.run(["systemd-sysusers", "--root", str(root)], check=True, capture_output=True)
    subprocess.run(["systemd-tmpfiles", "--root", str(root), "--create"], check=True, capture_output=True)
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in (root / "etc/group").read_text().splitlines()}
    uid, gid = int(users["minicpmv-edge"][2]), int(users["minicpmv-edge"][3])
    assert users["minicpmv-edge"][6] == "/usr/sbin/nologin" and uid < 1000
    assert "minicpmv-edge" in groups["video"][3].split(",") and "minicpmv-edge" in groups["jtop"][3].split(",")
    config = (root / str(layout.CONFIG).lstrip("/")).stat()
    assert (config.st_uid, config.st_gid, config.st_mode & 0o777) == (0, gid, 0o640)
    for folder in (layout.RUNTIME_DIR, layout.STATE_DIR, layout.CACHE_DIR):
        stat = (root / str(folder).lstrip("/")).stat()
        assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o777) == (uid, gid, 0o750)
