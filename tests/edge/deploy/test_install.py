"""`minicpmv-edge install`: into a tree with --root (the same files as on a device, nothing run), --dry-run (what it
would change and run, nothing written), and its refusals."""
from __future__ import annotations

import sys
from pathlib import Path

from edge.cli.main import main
from edge.deploy import layout

from .conftest import R36_4, listing


def test_install_into_a_root_twice(tmp_path, host_bundle, capsys):
    assert main(["install", "--root", str(tmp_path), "--bundle", str(host_bundle)]) == 0
    out = capsys.readouterr().out
    assert "file /etc/minicpmv-edge/agent.yaml (0640)" in out and "ran nothing (--root)" in out
    program = Path(sys.executable).parent / "minicpmv-edge"
    unit = (tmp_path / "etc/systemd/system" / layout.AGENT_UNIT).read_text()
    assert "ExecStart=%s run --config /etc/minicpmv-edge/agent.yaml\n" % program in unit
    before = listing(tmp_path)
    assert main(["install", "--root", str(tmp_path), "--bundle", str(host_bundle)]) == 0
    assert capsys.readouterr().out.startswith("nothing to change: every file is as wanted\n")
    assert listing(tmp_path) == before


def test_dry_run_writes_nothing(tmp_path, host_bundle, capsys):
    assert main(["install", "--root", str(tmp_path), "--bundle", str(host_bundle), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "would write file /etc/systemd/system/minicpmv-edge-llm.service (0644)" in lines
    assert "would write link /etc/systemd/system/multi-user.target.wants/minicpmv-edge-agent.service -> " \
           "/etc/systemd/system/minicpmv-edge-agent.service" in lines
    assert list(tmp_path.iterdir()) == []


def test_dry_run_on_this_machine_names_the_systemd_commands(host_bundle, capsys):
    assert main(["install", "--bundle", str(host_bundle), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-5:] == ["would run: systemd-sysusers /etc/sysusers.d/minicpmv-edge.conf",
                          "would run: systemd-tmpfiles --create /etc/tmpfiles.d/minicpmv-edge.conf",
                          "would run: systemctl daemon-reload",
                          "would run: systemctl enable minicpmv-edge-agent.service",
                          "would run: systemctl restart minicpmv-edge-agent.service"]
    assert not Path(str(layout.ETC_DIR)).exists()


def _refused(capsys, code: int, needle: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_refuses_a_program_under_home(tmp_path, host_bundle, capsys):
    _refused(capsys, main(["install", "--root", str(tmp_path), "--bundle", str(host_bundle), "--program",
                           "/home/me/venv/bin/minicpmv-edge"]), "ProtectHome=yes")
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_missing_program(tmp_path, host_bundle, capsys):
    _refused(capsys, main(["install", "--root", str(tmp_path), "--bundle", str(host_bundle), "--program",
                           str(tmp_path / "minicpmv-edge")]), "is not an executable minicpmv-edge")


def test_refuses_a_bundle_for_another_l4t_on_a_jetson(tmp_path, make_bundle, capsys):
    bundle = make_bundle("2.6", target="orin-nano-8gb")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text(R36_4.replace("R36", "R35"))
    capsys.readouterr()
    _refused(capsys, main(["install", "--root", str(tmp_path), "--bundle", str(bundle)]),
             "is L4T 35.4.0 but the bundle is for L4T 36.4")
    assert [p.name for p in tmp_path.rglob("*")] == ["etc", "nv_tegra_release"]
