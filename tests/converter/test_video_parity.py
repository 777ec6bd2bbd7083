"""MiniCPM-V 4.5's grouped (video) Resampler graph (ONNX Runtime, fp32) equals a transcription of the official temporal
path (tests/converter/temporal_reference.py) on random weights, for 1..6 frames per group; with one frame and no
temporal id it equals the still-image Resampler graph; it passes check-ops; export-video refuses bad input."""
from __future__ import annotations

import json
from typing import List, Sequence, Tuple

import numpy as np
import onnx
import pytest
import torch

from converter.check_ops import check_model
from converter.checkpoint import load_vision_checkpoint
from converter.cli import main
from converter.trt_ops import OperatorTable
from edge.bundle.manifest import Bundle
from edge.bundle.video import video_graph_path
from edge.encoder.video_group import FrameGrouper, temporal_id
from edge.encoder.vision_encoder import VpmFeatures
from edge.engines.onnxrt import open_session
from tests.converter.closeness import assert_close
from tests.converter.temporal_reference import OfficialTemporalResampler, official_temporal_ids

FPS = 3.0


@pytest.fixture(scope="module")
def parts(video_bundle, make_checkpoint):
    ck = load_vision_checkpoint(make_checkpoint("4.5"))
    bundle = Bundle.load(video_bundle)
    return (open_session(video_graph_path(bundle)), open_session(bundle.graph_path("resampler", "fp32")),
            OfficialTemporalResampler(ck.tensors, ck.spec.resampler_heads), ck.spec.width)


def _run(session, frames: np.ndarray, sizes: Sequence[Tuple[int, int]], ids: List[List[int]]) -> np.ndarray:
    return session.run(None, {"vision_embeds": frames, "tgt_sizes": np.array(sizes, dtype=np.int32),
                              "temporal_ids": np.array(ids, dtype=np.int32)})[0]


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 5, 6])
def test_group_matches_official_temporal_path(parts, frames):
    group, _, reference, width = parts
    rows, cols = 5, 7
    rng = np.random.default_rng(frames)
    x = rng.standard_normal((frames, rows * cols, width)).astype(np.float32)
    start = 40.0 + frames  # well inside a video: ids in the hundreds
    ids = official_temporal_ids([start + i / FPS for i in range(frames)], 100.0, frames)
    assert len(ids) == 1 and len(ids[0]) == frames
    got = _run(group, x, [(rows, cols)] * frames, ids)
    want = reference(torch.from_numpy(x), [(rows, cols)] * frames, ids).numpy()
    assert got.shape == want.shape == (1, reference.query.shape[0], reference.dim)
    assert_close(got, want, "%d frames" % frames)


def test_groups_of_mixed_sizes_match_the_frame_major_path(parts):
    """Two groups (two slice positions of 3 frames) of different sizes in one call: padded keys are masked per
    frame, as the official batch path does; each group alone also equals the official default path."""
    group, _, reference, width = parts
    sizes = [(4, 6)] * 3 + [(3, 5)] * 3
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 24, width)).astype(np.float32)
    x[3:, 15:] = 0.0
    ids = [[12, 15, 19], [12, 15, 19]]
    got = _run(group, x, sizes, ids)
    assert_close(got, reference(torch.from_numpy(x), sizes, ids, path="batch").numpy(), "two groups, batch path")
    alone = reference(torch.from_numpy(x[3:, :15].copy()), sizes[3:], ids[1:]).numpy()
    assert_close(got[1:], alone, "second group alone, foreach path")


def test_one_frame_without_temporal_id_is_the_still_resampler(parts):
    group, still, _, width = parts
    x = np.random.default_rng(3).standard_normal((1, 30, width)).astype(np.float32)
    sizes = np.array([[5, 6]], dtype=np.int32)
    got = _run(group, x, [(5, 6)], [[-1]])
    want = still.run(None, {"vision_embeds": x, "tgt_sizes": sizes})[0]
    assert_close(got, want, "N=1, id -1 vs still graph")


def test_temporal_ids_follow_the_official_recipe():
    times = [i / 7.0 + 0.01 for i in range(300)]  # 7 fps for ~43 s: ids from 0.1 s steps, truncated as official
    want = [i for group in official_temporal_ids(times, 60.0, 1) for i in group]
    assert [temporal_id(t) for t in times] == want


@pytest.mark.parametrize("tensorrt", ["8.5", "10.3"])
def test_group_graph_passes_check_ops(make_checkpoint, tmp_path, tensorrt):
    from converter.export import export_graph
    from converter.video_export import MODULE, build_group_module, group_feeds, group_graph_io
    from edge.device.profiles import onnx_opset_for

    ck = load_vision_checkpoint(make_checkpoint("4.5"))
    graph = export_graph(build_group_module(ck, 70), MODULE, "fp16", group_graph_io(ck), group_feeds(ck), tmp_path,
                         onnx_opset_for(tensorrt))
    model = onnx.load(str(tmp_path / graph.files[0]))
    assert check_model(model, OperatorTable.for_release(tensorrt)) == []
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.value_info) + list(inferred.input)}
    trig = [n for n in inferred.node if n.op_type in ("Sin", "Cos")]
    assert len(trig) == 2  # the temporal term is computed in the graph, from the ids, in float32 (fp16 graph)
    assert all(types[n.input[0]] == onnx.TensorProto.FLOAT for n in trig)


class RecordingEngine:
    """An engine that records the temporal ids it is given and returns zero tokens."""

    def __init__(self) -> None:
        self.ids: List[List[int]] = []

    def infer(self, feeds):
        self.ids += feeds["temporal_ids"].tolist()
        return {"image_tokens": np.zeros((feeds["temporal_ids"].shape[0], 1, 1), np.float32)}


@pytest.mark.parametrize("start_s", [10.0, 360000.0])  # 10 s or 100 hours into the stream
def test_temporal_ids_are_the_official_ids_of_the_group_as_one_clip(start_s):
    """However long the camera has run, a group's ids are what the official recipe gives a video made of the
    group's frames: from 0 at its first frame (docs/minicpmv.md), so they stay bounded and exact in float32."""
    engine = RecordingEngine()
    grouper = FrameGrouper(engine, 3)
    features = VpmFeatures([np.zeros((4, 8), np.float32)], [(2, 2)], None, {})
    closed = [grouper.add(i, start_s + i / FPS, features) for i in range(6)]
    want = official_temporal_ids([i / FPS for i in range(3)], 10.0, 3)[0]
    assert [g.temporal_ids for g in closed if g is not None] == [want, want] and engine.ids == [want, want]


def test_check_ops_checks_the_grouped_graphs_of_a_bundle(trt_video_bundle, capsys):
    """Against the bundle target's table (orin-nano-8gb: TensorRT 10.3, opset 17); the graph at opset 16 against
    8.5 is test_group_graph_passes_check_ops."""
    capsys.readouterr()
    assert main(["check-ops", "--bundle", str(trt_video_bundle), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    grouped = {g["precision"] for g in report["graphs"].values() if g["module"] == "resampler_group"}
    assert report["passed"] and grouped == {"fp32", "fp16"}


def test_export_video_refuses_a_bundle_of_another_version(make_bundle, make_checkpoint, capsys):
    bundle, checkpoint = make_bundle("2.6"), make_checkpoint("2.6")
    capsys.readouterr()
    assert main(["export-video", "--bundle", str(bundle), "--checkpoint", str(checkpoint)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "4.5" in err[0]
