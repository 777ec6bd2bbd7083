"""`minicpmv-edge flash-overlay` into a fake Jetson root filesystem: what it writes (files, modes, owners,
symlinks, the config pointed at the copies), that a second run rewrites nothing, and each refusal: one line,
exit code 2, nothing written."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from edge.cli.main import main
from edge.deploy import layout

from .conftest import listing


def _at(root: Path, path) -> Path:
    return root / str(path).lstrip("/")


def _overlay(rootfs: Path, bundle: Path, *more: str, device: str = "orin-nano-8gb") -> int:
    return main(["flash-overlay", "--rootfs", str(rootfs), "--device", device, "--bundle", str(bundle), *more])


@pytest.fixture
def orin_bundle(make_bundle, capsys) -> Path:
    made = make_bundle("2.6", target="orin-nano-8gb")
    capsys.readouterr()  # the export's log, the first time
    return made


def test_writes_units_config_bundle_and_the_enabled_agent(rootfs, orin_bundle, capsys):
    assert _overlay(rootfs, orin_bundle) == 0
    out, err = capsys.readouterr()
    assert "link /etc/systemd/system/multi-user.target.wants/minicpmv-edge-agent.service" in out
    assert "is not in the rootfs yet" in err  # the venv goes in separately (docs/systemd.md)
    owner = (os.geteuid(), os.getegid())
    for name in layout.UNITS:
        unit = _at(rootfs, layout.UNIT_DIR / name)
        assert unit.read_text() == (layout.units_dir() / name).read_text()  # the default program: as shipped
        assert (unit.stat().st_mode & 0o7777, (unit.stat().st_uid, unit.stat().st_gid)) == (0o644, owner)
    for target, data in layout.snippets():
        assert _at(rootfs, target).read_bytes() == data and _at(rootfs, target).stat().st_mode & 0o777 == 0o644
    wants = _at(rootfs, layout.WANTS_DIR)
    assert sorted(os.listdir(str(wants))) == [layout.AGENT_UNIT]  # the build is pulled in by the agent
    assert os.readlink(str(wants / layout.AGENT_UNIT)) == "/etc/systemd/system/minicpmv-edge-agent.service"
    config = _at(rootfs, layout.CONFIG)
    assert config.stat().st_mode & 0o777 == 0o640 and _at(rootfs, layout.ETC_DIR).stat().st_mode & 0o777 == 0o750
    data = yaml.safe_load(config.read_text())
    assert data["bundle"] == "/var/lib/minicpmv-edge/bundle" and data["camera"]["kind"] == "csi"  # the default
    bundle = _at(rootfs, layout.BUNDLE_DIR)
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == sorted(
        p.relative_to(orin_bundle) for p in orin_bundle.rglob("*"))
    assert (bundle / "manifest.yaml").read_bytes() == (orin_bundle / "manifest.yaml").read_bytes()
    assert not any(p.name.startswith(".") for p in rootfs.rglob("*"))  # no temporary or staging leftovers


def test_llm_and_a_config_of_ones_own(rootfs, orin_bundle, make_gguf, tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text("bundle: somewhere/else\ncamera: {kind: usb, device: 0}\nbackend: tensorrt\n"
                      "sink: {directory: /var/lib/minicpmv-edge/tokens}\nstream: {enabled: true}\n"
                      "llm: {gguf: /nowhere/model.gguf, ctx: 2048}\n")
    gguf = make_gguf("2.6")
    assert _overlay(rootfs, orin_bundle, "--config", str(config), "--llm", str(gguf)) == 0
    data = yaml.safe_load(_at(rootfs, layout.CONFIG).read_text())
    assert data["llm"] == {"gguf": "/var/lib/minicpmv-edge/llm.gguf", "ctx": 2048}
    assert data["camera"] == {"kind": "usb", "device": 0} and data["bundle"] == "/var/lib/minicpmv-edge/bundle"
    assert _at(rootfs, layout.GGUF).read_bytes() == gguf.read_bytes()
    assert sorted(os.listdir(str(_at(rootfs, layout.WANTS_DIR)))) == [layout.AGENT_UNIT, layout.LLM_UNIT]
    config.write_text(config.read_text().replace("llm: {gguf: /nowhere/model.gguf, ctx: 2048}\n", ""))
    assert _overlay(rootfs, orin_bundle, "--config", str(config)) == 0  # the LLM process no longer enabled
    assert sorted(os.listdir(str(_at(rootfs, layout.WANTS_DIR)))) == [layout.AGENT_UNIT]


def test_a_second_run_rewrites_nothing(rootfs, orin_bundle, make_gguf, capsys):
    flags = ("--llm", str(make_gguf("2.6")))
    assert _overlay(rootfs, orin_bundle, *flags) == 0
    before = listing(rootfs)
    capsys.readouterr()
    assert _overlay(rootfs, orin_bundle, *flags) == 0
    assert capsys.readouterr().out == "nothing to change: every file is as wanted\n"
    assert listing(rootfs) == before  # same bytes, modes, owners, link targets, inodes and mtimes


def test_a_changed_bundle_is_replaced_whole(rootfs, orin_bundle, make_bundle):
    assert _overlay(rootfs, orin_bundle) == 0
    other = make_bundle("2.6", precision="fp16", target="orin-nano-8gb")
    assert _overlay(rootfs, other) == 0
    bundle = _at(rootfs, layout.BUNDLE_DIR)
    assert sorted(p.name for p in bundle.iterdir()) == sorted(p.name for p in other.iterdir())
    assert [p.name for p in bundle.parent.iterdir() if p.name.startswith(".")] == []


def _refused(capsys, rootfs: Path, code: int, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("minicpmv-edge: error: "), err
    assert all(needle in err for needle in needles), err


def test_refuses_a_missing_rootfs(tmp_path, orin_bundle, capsys):
    _refused(capsys, tmp_path, _overlay(tmp_path / "nowhere", orin_bundle), "does not exist", "--rootfs")


def test_refuses_a_rootfs_without_l4t(rootfs, orin_bundle, capsys):
    (rootfs / "etc" / "nv_tegra_release").unlink()
    before = listing(rootfs)
    _refused(capsys, rootfs, _overlay(rootfs, orin_bundle), "apply_binaries.sh")
    assert listing(rootfs) == before


def test_refuses_another_l4t_release(rootfs, orin_bundle, capsys):
    (rootfs / "etc" / "nv_tegra_release").write_text("# R35 (release), REVISION: 4.1, GCID: 33958178\n")
    before = listing(rootfs)
    _refused(capsys, rootfs, _overlay(rootfs, orin_bundle), "is L4T 35.4.1 but the bundle is for L4T 36.4")
    assert listing(rootfs) == before


def test_refuses_a_bundle_for_another_device(rootfs, host_bundle, capsys):
    before = listing(rootfs)
    _refused(capsys, rootfs, _overlay(rootfs, host_bundle), "was made for host-x86, not orin-nano-8gb",
             "--target orin-nano-8gb")
    assert listing(rootfs) == before


def test_refuses_an_unknown_profile(rootfs, orin_bundle, capsys):
    _refused(capsys, rootfs, _overlay(rootfs, orin_bundle, device="orin-nano-9gb"), "unknown target 'orin-nano-9gb'")


def test_refuses_a_host_profile(rootfs, host_bundle, capsys):
    _refused(capsys, rootfs, _overlay(rootfs, host_bundle, device="host-x86"), "not a Jetson")


@pytest.mark.parametrize("config, needle", [
    ("sink: {directory: tokens}", "sink.directory is /etc/minicpmv-edge/tokens, which the service may not write"),
    ("engine_cache: /opt/engines", "engine_cache is /opt/engines"),
    ("stream: {enabled: true, socket: /tmp/t.sock}", "stream.socket is /tmp"),
    ("api: {listen: '127.0.0.1:8089', token_file: /root/api.token}", "ProtectHome=yes"),
    ("llm: {gguf: /var/lib/minicpmv-edge/x.gguf}", "set stream: {enabled: true}"),
    ("camera: csi", "camera: expected a mapping"),
])
def test_refuses_a_config_the_services_could_not_use(rootfs, orin_bundle, tmp_path, capsys, config, needle):
    path = tmp_path / "agent.yaml"
    base = {"bundle": "b", "camera": {"kind": "csi"}, "sink": {"directory": "/var/lib/minicpmv-edge/tokens"}}
    base.update(yaml.safe_load(config))
    path.write_text(yaml.safe_dump(base))
    before = listing(rootfs)
    _refused(capsys, rootfs, _overlay(rootfs, orin_bundle, "--config", str(path)), needle)
    assert listing(rootfs) == before


def test_refuses_a_relative_program(rootfs, orin_bundle, capsys):
    _refused(capsys, rootfs, _overlay(rootfs, orin_bundle, "--program", "venv/bin/minicpmv-edge"),
             "give the path on the device from /")


def test_refuses_an_llm_that_is_no_gguf(rootfs, orin_bundle, capsys):
    _refused(capsys, rootfs, _overlay(rootfs, orin_bundle, "--llm", str(orin_bundle / "manifest.yaml")),
             "is not a GGUF file")
