"""`minicpmv-edge build` and `VisionEncoder(backend="tensorrt")` with the stand-in tensorrt (10.3) injected:
cache hits and misses, the post-build check against ONNX Runtime, trtexec-like flags, and the clear error where
TensorRT is missing. The stand-in is not TensorRT (see tests/standins): this checks the project's own logic."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edge.engines.tensorrt.build as build_module
from edge.agent.config import load_agent_config
from edge.agent.runner import make_pipeline
from edge.bundle.manifest import Bundle
from edge.cli.main import main
from edge.encoder.vision_encoder import VisionEncoder
from edge.engines.tensorrt.build import BuildSettings, build_bundle, check_engine
from edge.engines.tensorrt.build_memory import available_bytes, build_needs_bytes
from edge.errors import InputError
from edge.monitor.snapshot import Snapshot
from edge.preprocess.scenes import synthetic_scene
from tests.edge.agent.fakes import EndlessCamera, ListSink
from tests.standins.fake_pycuda import device_memory
from tests.standins.fake_tensorrt import make_tensorrt


@pytest.fixture
def standin(monkeypatch):
    """import_tensorrt() returns the 10.3 stand-in and the test device memory; counts engine builds."""
    memory, adapter = device_memory()
    trt = make_tensorrt("10.3", adapter)
    builds = []
    original = trt.Builder.build_serialized_network

    def counting(self, network, config):
        builds.append(config)
        return original(self, network, config)

    trt.Builder.build_serialized_network = counting
    monkeypatch.setattr(build_module, "import_tensorrt", lambda: (trt, memory))
    return trt, memory, builds


def test_engines_are_cached_by_key_and_rebuilt_on_force(standin, converted_bundle, tmp_path):
    trt, memory, builds = standin
    bundle = Bundle.load(converted_bundle)
    settings = BuildSettings(cache_dir=tmp_path / "cache")
    report = build_bundle(bundle, trt, memory, settings, log=lambda m: None)
    assert len(builds) == 2 and not any(r["cached"] for r in report.values())
    assert all(r["precision"] == "int8" and r["check_relative_error"] < 1e-5 for r in report.values())
    report = build_bundle(bundle, trt, memory, settings, log=lambda m: None)
    assert len(builds) == 2 and all(r["cached"] for r in report.values())
    build_bundle(bundle, trt, memory, BuildSettings(cache_dir=tmp_path / "cache", force=True), log=lambda m: None)
    assert len(builds) == 4
    build_bundle(bundle, trt, memory, BuildSettings("fp16", tmp_path / "cache"), log=lambda m: None)
    assert len(builds) == 6  # another precision is another key
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()).count(".engine") == 4


def test_int8_engines_get_int8_and_fp16_flags_on_10x(standin, converted_bundle, tmp_path):
    trt, memory, builds = standin
    build_bundle(Bundle.load(converted_bundle), trt, memory, BuildSettings(cache_dir=tmp_path), log=lambda m: None)
    assert {repr(f) for f in builds[0]._flags} == {"BuilderFlag.FP16", "BuilderFlag.INT8"}


def test_each_precision_builds_with_its_own_workspace_limit(standin, converted_bundle, tmp_path):
    """The tiny VPM (4 heads, width 64, MLP 256) at orin-nano-8gb's 4 x 2048: fp32 gets its attention scratch + hidden
    activations + 64 MiB, above the 512 MiB that the default precision (int8 on TensorRT 10.3) and fp16 get."""
    trt, memory, builds = standin
    bundle = Bundle.load(converted_bundle)
    fp32_limit = (2 * 4 * 4 * 2048 * 2048 + 4 * 2048 * (256 + 2 * 64)) * 4 + (64 << 20)
    for precision, limit in (("fp32", fp32_limit), ("int8", 512 << 20), ("fp16", 512 << 20)):
        assert bundle.target.workspace_bytes(precision) == limit
        build_bundle(bundle, trt, memory, BuildSettings(precision, tmp_path), log=lambda m: None)
        assert builds[-1]._pools == {trt.MemoryPoolType.WORKSPACE: limit}


def test_check_refuses_an_engine_that_disagrees():
    class Off:
        def infer(self, feeds):
            return {"y": np.ones(4, np.float32) * 1.5}

    class Reference:
        def infer(self, feeds):
            return {"y": np.ones(4, np.float32)}

    assert check_engine(Reference(), {}, Reference().infer({}), "fp32") == 0.0
    with pytest.raises(RuntimeError, match="differs from ONNX Runtime"):
        check_engine(Off(), {}, Reference().infer({}), "int8")


def test_cli_build_refuses_a_workspace_larger_than_this_boxs_free_ram(standin, converted_bundle, tmp_path, capsys):
    import psutil

    total_mib = psutil.virtual_memory().total >> 20  # read here, apart from the command's own reading
    capsys.readouterr()
    assert main(["build", "--bundle", str(converted_bundle), "--cache-dir", str(tmp_path / "c"), "--precision",
                 "fp32", "--memPoolSize", "workspace:%d" % (total_mib + 1024)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not building" in err and "free" in err, err
    assert not list((tmp_path / "c").glob("**/*.engine"))


def test_cli_build_json_and_save_engine(standin, converted_bundle, tmp_path, capsys):
    capsys.readouterr()
    assert main(["build", "--bundle", str(converted_bundle), "--cache-dir", str(tmp_path / "c"), "--precision",
                 "fp32", "--memPoolSize", "workspace:256", "--saveEngine", str(tmp_path / "model"),
                 "--timingCacheFile", str(tmp_path / "timing.cache"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"vpm", "resampler"} and (tmp_path / "model.vpm").is_file()
    assert (tmp_path / "timing.cache").read_bytes()
    assert main(["build", "--bundle", str(converted_bundle), "--memPoolSize", "256"]) == 2
    assert "workspace:N" in capsys.readouterr().err


def test_cli_without_tensorrt_is_one_line_exit_2(converted_bundle, capsys):
    capsys.readouterr()
    assert main(["build", "--bundle", str(converted_bundle), "--cache-dir", "/tmp/unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert "TensorRT's Python module is not importable" in err and len(err.splitlines()) == 1


def test_tensorrt_backend_tokens_equal_onnxruntime(standin, converted_bundle, tmp_path):
    image = synthetic_scene(1280, 720, seed=12)
    got = VisionEncoder.from_bundle(converted_bundle, backend="tensorrt", cache_dir=tmp_path).encode(image).tokens
    want = VisionEncoder.from_bundle(converted_bundle).encode(image).tokens  # int8 on onnxruntime
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def _box(free_mib: int, degraded=None) -> Snapshot:
    """8 GiB of RAM with `free_mib` MiB not used."""
    total_kb = 8 << 20
    return Snapshot(0.0, "test", degraded, ram_total_kb=total_kb, ram_used_kb=total_kb - (free_mib << 10),
                    ram_free_kb=1024)


def test_a_build_that_cannot_fit_in_the_free_ram_is_refused_before_building(standin, converted_bundle, tmp_path):
    """int8 on 10.3 builds the tiny VPM with the 512 MiB workspace the bundle recorded, plus twice its graph."""
    trt, memory, builds = standin
    bundle = Bundle.load(converted_bundle)
    needed = build_needs_bytes(512 << 20, bundle.graph("vpm", "int8").bytes)
    assert needed == (512 << 20) + 2 * bundle.graph("vpm", "int8").bytes
    assert available_bytes(_box(400)) == 400 << 20  # total less used: what the kernel can still hand out
    with pytest.raises(InputError) as refused:
        build_bundle(bundle, trt, memory, BuildSettings(cache_dir=tmp_path, snapshot=_box(400)), log=lambda m: None)
    assert builds == [] and not list(tmp_path.glob("*.engine"))
    message = str(refused.value)
    assert len(message.splitlines()) == 1
    assert "not building the vpm int8 engine: it needs about %d MiB of RAM and 400 MiB are free" % (needed >> 20) \
        in message and "stop what holds memory (the LLM process)" in message


def test_a_build_that_fits_or_an_unknown_box_builds_and_a_cached_engine_needs_no_room(standin, converted_bundle,
                                                                                      tmp_path):
    trt, memory, builds = standin
    bundle = Bundle.load(converted_bundle)
    build_bundle(bundle, trt, memory, BuildSettings(cache_dir=tmp_path, snapshot=_box(4096)), log=lambda m: None)
    assert len(builds) == 2
    report = build_bundle(bundle, trt, memory, BuildSettings(cache_dir=tmp_path, snapshot=_box(1)),
                          log=lambda m: None)
    assert len(builds) == 2 and all(entry["cached"] for entry in report.values())
    for unknown in (_box(1, degraded="jtop: no access"), Snapshot(0.0, "test")):
        assert available_bytes(unknown) is None
        build_bundle(bundle, trt, memory, BuildSettings(cache_dir=tmp_path, force=True, snapshot=unknown),
                     log=lambda m: None)
    assert len(builds) == 6


class OneReading:
    """A monitor by edge.monitor's Monitor protocol with one snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot, self.closed = snapshot, False

    def latest(self) -> Snapshot:
        return self.snapshot

    def close(self) -> None:
        self.closed = True


def test_the_governed_agent_refuses_an_engine_build_its_monitor_shows_cannot_fit(standin, converted_bundle, tmp_path):
    trt, memory, builds = standin
    config = tmp_path / "agent.yaml"
    config.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi}\nbackend: tensorrt\nengine_cache: cache\n"
                      "governor: {enabled: true}\n" % converted_bundle)
    monitor = OneReading(_box(300))
    with pytest.raises(InputError, match="not building the vpm int8 engine: .* and 300 MiB are free"):
        make_pipeline(load_agent_config(config), source=EndlessCamera(np.zeros((8, 8, 3), np.uint8)),
                      sink=ListSink(), monitor=monitor)
    assert builds == [] and not monitor.closed  # handed in: its giver closes it
    monitor = OneReading(_box(4096))
    pipeline = make_pipeline(load_agent_config(config), source=EndlessCamera(np.zeros((8, 8, 3), np.uint8)),
                             sink=ListSink(), monitor=monitor)
    assert len(builds) == 2
    pipeline.close()
    assert not monitor.closed
