"""`minicpmv-edge doctor`: each probe on real and made-up inputs, and the command's exit codes."""
from __future__ import annotations

import json

import edge.diagnostics.doctor as doctor
from edge.cli.main import main
from edge.device.facts import l4t_release, module_model


def test_l4t_and_model_read_from_jetpack_files(tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\0")
    assert l4t_release(release) == "36.4.3"
    assert module_model(model) == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    assert l4t_release(tmp_path / "missing") is None and module_model(tmp_path / "missing") is None


def test_opencv_gstreamer_detection():
    with_gst = "  Video I/O:\n    GStreamer:                   YES (1.20.3)\n"
    without = "  Video I/O:\n    GStreamer:                   NO\n"
    assert doctor.check_opencv(lambda: with_gst).status == doctor.OK
    finding = doctor.check_opencv(lambda: without)
    assert finding.status == doctor.WARN and "--system-site-packages" in finding.fix


def test_missing_libraries_have_fixes_and_onnxruntime_is_required():
    findings = {f.check: f for f in doctor.check_libraries(lambda name: None)}
    assert findings["ONNX Runtime"].status == doctor.FAIL and findings["TensorRT"].status == doctor.WARN
    assert all(f.fix for f in findings.values())
    present = doctor.check_libraries(lambda name: "1.0")
    assert all(f.status == doctor.OK and not f.fix for f in present)


def test_cameras_and_cache(tmp_path, monkeypatch):
    (tmp_path / "video0").touch()
    assert doctor.check_cameras(tmp_path).status == doctor.OK
    assert doctor.check_cameras(tmp_path / "nodev").status == doctor.WARN
    missing = doctor.check_cache(tmp_path / "engines")  # not "OK (writable)": it is not there yet
    assert missing.status == doctor.WARN and "does not exist" in missing.found and "first build" in missing.fix
    (tmp_path / "engines").mkdir()
    assert doctor.check_cache(tmp_path / "engines").status == doctor.OK
    (tmp_path / "a-file").touch()
    assert doctor.check_cache(tmp_path / "a-file").status == doctor.FAIL
    monkeypatch.setattr(doctor, "MIN_FREE_BYTES", 1 << 60)
    assert "free disk" in doctor.check_cache(tmp_path / "engines").fix


def test_doctor_command_exit_codes(tmp_path, capsys, monkeypatch):
    assert main(["doctor", "--cache-dir", str(tmp_path), "--json"]) == 0  # warnings only on this host
    report = json.loads(capsys.readouterr().out)
    assert report["failed"] == 0 and {f["check"] for f in report["findings"]} >= {"TensorRT", "OpenCV", "cameras"}
    monkeypatch.setattr(doctor, "run_checks", lambda cache_dir: [doctor.Finding("x", doctor.FAIL, "broken", "fix")])
    assert main(["doctor"]) == 1
    assert "FAIL" in capsys.readouterr().out
