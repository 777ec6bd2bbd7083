"""The engine factory: backend and precision per module, engines that close, and on TensorRT (the stand-in of
tests/standins, which checks the project's logic, not TensorRT) modules at different precisions."""
from __future__ import annotations

import numpy as np
import pytest

from edge.bundle.manifest import Bundle
from edge.encoder.vision_encoder import VisionEncoder
from edge.engines.factory import open_engines
from edge.engines.tensorrt.build import BuildSettings
from edge.errors import InputError
from edge.preprocess.scenes import synthetic_scene
from tests.standins.fake_pycuda import device_memory
from tests.standins.fake_tensorrt import make_tensorrt


def test_per_module_precisions_on_onnxruntime(converted_bundle):
    bundle = Bundle.load(converted_bundle)
    with open_engines(bundle, precision={"vpm": "int8", "resampler": "fp32"}) as engines:
        assert engines.precisions == {"vpm": "int8", "resampler": "fp32"}
        assert engines.backends == {"vpm": "onnxruntime", "resampler": "onnxruntime"}
        assert engines["vpm"].source == bundle.graph_path("vpm", "int8")
    with pytest.raises(RuntimeError, match="closed"):
        engines["vpm"].infer({})


def test_bad_choices_are_input_errors(converted_bundle):
    bundle = Bundle.load(converted_bundle)
    with pytest.raises(InputError, match="unknown module projector"):
        open_engines(bundle, precision={"projector": "fp16"})
    with pytest.raises(InputError, match="unknown backend"):
        open_engines(bundle, backend={"vpm": "openvino"})
    with pytest.raises(InputError, match="no bf16 graph"):
        open_engines(bundle, precision="bf16")


def test_tensorrt_modules_at_different_precisions_equal_onnxruntime(converted_bundle, tmp_path):
    """An fp16 VPM before an fp32 Resampler: the hand-over crosses a dtype, so it goes through the host."""
    bundle = Bundle.load(converted_bundle)
    memory, adapter = device_memory()
    precision = {"vpm": "fp16", "resampler": "fp32"}
    engines = open_engines(bundle, "tensorrt", precision, tmp_path, BuildSettings(workspace_bytes=1 << 28),
                           runtime=(make_tensorrt("10.3", adapter), memory))
    assert set(engines.build_report) == {"vpm", "resampler"}
    assert [engines.build_report[m]["precision"] for m in ("vpm", "resampler")] == ["fp16", "fp32"]
    image = synthetic_scene(640, 480, seed=8)
    with VisionEncoder(bundle, engines) as encoder:
        got = encoder.encode(image).tokens
    with VisionEncoder(bundle, open_engines(bundle, precision=precision)) as reference:
        want = reference.encode(image).tokens
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_a_failed_open_closes_what_it_opened(converted_bundle, tmp_path, monkeypatch):
    """The Resampler's engine cannot be made: the VPM engine opened before it is freed, not leaked."""
    memory, adapter = device_memory()
    if not hasattr(memory, "buffers"):
        pytest.skip("counts the fake memory's buffers")
    trt = make_tensorrt("10.3", adapter)
    runs = []
    original = trt.Builder.build_serialized_network

    def second_fails(self, network, config):
        runs.append(1)
        return original(self, network, config) if len(runs) == 1 else None

    monkeypatch.setattr(trt.Builder, "build_serialized_network", second_fails)
    with pytest.raises(RuntimeError, match="failed to build"):
        open_engines(Bundle.load(converted_bundle), "tensorrt", "fp32", tmp_path, runtime=(trt, memory))
    assert memory.allocations > 0 and memory.buffers == {}
