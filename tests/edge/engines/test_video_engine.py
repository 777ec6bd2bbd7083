"""The grouped (video) Resampler through the engine factory: its TensorRT engine (the stand-in of tests/standins,
which checks the project's logic, not TensorRT) with the grouped profile from the manifest, cached, int32 ids on
TensorRT 8.5, equal to ONNX Runtime; the agent's `backend: tensorrt` runs it; frames with more slice positions than
the profile's groups go through in several calls."""
from __future__ import annotations

import numpy as np
import pytest

import edge.engines.tensorrt.build as build_module
from edge.agent.config import parse_agent_config
from edge.agent.runner import make_pipeline
from edge.agent.video_pipeline import GroupingPipeline
from edge.bundle.manifest import VIDEO_MODULE, Bundle
from edge.encoder.video_group import FrameGrouper
from edge.encoder.vision_encoder import VisionEncoder
from edge.engines.factory import open_video_engine
from edge.engines.tensorrt.runner import TensorRTEngine
from tests.edge.agent.fakes import FrameList, ListSink
from tests.edge.camera.fakes import moving_frames
from tests.standins.fake_pycuda import device_memory
from tests.standins.fake_tensorrt import make_tensorrt, profile_shapes


def _feeds(bundle: Bundle, groups: int, frames: int, seed: int = 0):
    """Random VPM features of groups x frames slices (two sizes, so padding is masked) and ids from 0."""
    rng = np.random.default_rng(seed)
    width = bundle.model.vision_width
    sizes = [(4, 6) if f % 2 else (5, 5) for _ in range(groups) for f in range(frames)]
    return {"vision_embeds": rng.standard_normal((len(sizes), 25, width)).astype(np.float32),
            "tgt_sizes": np.array(sizes, dtype=np.int32),
            "temporal_ids": np.tile(np.array([3 * f for f in range(frames)], dtype=np.int32), (groups, 1))}


@pytest.mark.parametrize("release", ["8.5", "10.3"])
def test_the_grouped_engine_has_its_own_profile_is_cached_and_equals_onnxruntime(trt_video_bundle, tmp_path,
                                                                                   release):
    bundle = Bundle.load(trt_video_bundle)
    memory, adapter = device_memory()
    trt = make_tensorrt(release, adapter)
    builds = []
    original = trt.Builder.build_serialized_network
    trt.Builder.build_serialized_network = lambda self, net, config: builds.append(1) or original(self, net, config)
    shapes = bundle.shapes(VIDEO_MODULE)
    assert (shapes.groups.max, shapes.frames.max, shapes.batch.max) == (1, 6, 6)  # one group a call
    assert shapes.patches == bundle.shapes("resampler").patches
    feeds = _feeds(bundle, 1, 5)
    with open_video_engine(bundle, "onnxruntime", "fp16") as reference:
        want = reference.infer(feeds)["image_tokens"]
    with open_video_engine(bundle, "tensorrt", "fp16", tmp_path, runtime=(trt, memory)) as engine:
        assert isinstance(engine, TensorRTEngine) and len(builds) == 1
        assert engine.input_dtypes["tgt_sizes"] == np.int32 and engine.input_dtypes["temporal_ids"] == np.int32
        profile = profile_shapes(engine.engine)
        patches = shapes.patches
        assert profile["temporal_ids"] == [[1, 1], [1, 6], [1, 6]]
        assert profile["vision_embeds"] == [[1, patches.min, bundle.model.vision_width],
                                            [6, patches.opt, bundle.model.vision_width],
                                            [6, patches.max, bundle.model.vision_width]]
        got = engine.infer(feeds)["image_tokens"]
        with pytest.raises(ValueError, match="outside the engine's profile|exceeds"):
            engine.infer(_feeds(bundle, 2, 3))  # 2 groups: past the profile's 1
    assert got.shape == (1, bundle.model.query_num, bundle.model.embed_dim)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))
    with open_video_engine(bundle, "tensorrt", "fp16", tmp_path, runtime=(trt, memory)):
        assert len(builds) == 1, "the second open finds the engine in the cache"
    engines = [p.name for p in tmp_path.iterdir() if p.suffix == ".engine"]
    assert len(engines) == 1 and engines[0].startswith("resampler_group-fp16-")


def test_a_frame_with_more_slices_than_the_profiles_groups_takes_several_calls(trt_video_bundle):
    bundle = Bundle.load(trt_video_bundle)
    with VisionEncoder.from_bundle(trt_video_bundle, precision="fp16") as encoder:
        encoder.max_slice_nums = 6
        features = encoder.vpm_features(moving_frames(1, size=(1280, 720))[0], color="bgr")
    assert len(features.rows) > 3  # an overview and more tiles than the profile's groups

    def tokens(max_groups):
        calls = []
        with open_video_engine(bundle, "onnxruntime", "fp32") as engine:  # fp32: the split is exact
            infer = engine.infer
            engine.infer = lambda feeds: calls.append(feeds["temporal_ids"].shape[0]) or infer(feeds)
            grouper = FrameGrouper(engine, 2, max_groups)
            grouper.add(0, 5.0, features)
            return grouper.add(1, 5.4, features).tokens, calls

    whole, whole_calls = tokens(None)
    split, split_calls = tokens(3)
    assert whole_calls == [len(features.rows)] and max(split_calls) == 3 and sum(split_calls) == len(features.rows)
    np.testing.assert_allclose(split, whole, rtol=0, atol=1e-5 * float(np.abs(whole).max()))


def test_the_agent_runs_the_grouped_graph_on_tensorrt_when_its_backend_is_tensorrt(trt_video_bundle, tmp_path,
                                                                                   monkeypatch):
    memory, adapter = device_memory()
    trt = make_tensorrt("10.3", adapter)
    monkeypatch.setattr(build_module, "import_tensorrt", lambda: (trt, memory))
    images = moving_frames(4, size=(640, 360))
    results = {}
    for backend in ("onnxruntime", "tensorrt"):
        config = parse_agent_config({"bundle": str(trt_video_bundle), "camera": {"kind": "file", "path": "x.avi"},
                                     "backend": backend, "precision": "fp16", "reuse": {"enabled": False},
                                     "engine_cache": str(tmp_path / "cache"), "video": {"group_frames": 2}},
                                    tmp_path)
        sink = ListSink()
        pipeline = make_pipeline(config, source=FrameList(images), sink=sink)
        assert isinstance(pipeline, GroupingPipeline)
        assert isinstance(pipeline.grouper.engine, TensorRTEngine) == (backend == "tensorrt")
        assert pipeline.grouper.max_groups == 1  # 3 slice positions a frame: 3 calls a group
        report = pipeline.run()
        pipeline.close()
        assert report["errors"] == 0 and [r.frames for r in sink.results] == [2, 2]
        results[backend] = [r.tokens for r in sink.results]
    cached = sorted(p.name.rsplit("-", 2)[0] for p in (tmp_path / "cache").iterdir() if p.suffix == ".engine")
    assert cached == ["resampler", "resampler_group", "vpm"]  # each module's engine, the grouped one too
    for got, want in zip(results["tensorrt"], results["onnxruntime"]):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * float(np.abs(want).max()))


def test_build_builds_the_grouped_engine_with_the_others(trt_video_bundle, tmp_path):
    memory, adapter = device_memory()
    trt = make_tensorrt("10.3", adapter)
    report = build_module.build_bundle(Bundle.load(trt_video_bundle), trt, memory,
                                       build_module.BuildSettings(cache_dir=tmp_path), log=lambda message: None)
    assert sorted(report) == ["resampler", "resampler_group", "vpm"]
    assert report["resampler_group"]["precision"] == "fp16" and report["resampler_group"]["check_relative_error"] < 1e-3
