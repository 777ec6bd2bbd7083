"""4.5 video packing in the agent: every N frames one grouped Resampler call, whose tokens equal the transcription of
the official temporal path on the frames' VPM features with the official temporal ids; frame reuse, a changed slice
budget and the end of a source; the `video:` config section; the stream's `frames` field; the prompt layout."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
import pytest
import torch

from converter.checkpoint import load_vision_checkpoint
from edge.agent.config import parse_agent_config
from edge.agent.frame_reuse import FrameReuse
from edge.agent.video_pipeline import GroupingPipeline, open_grouper
from edge.bundle.manifest import Bundle
from edge.camera.source import Frame
from edge.encoder.prompt import PromptLayout
from edge.encoder.vision_encoder import VisionEncoder
from edge.errors import InputError
from edge.stream.protocol import FRAME, FrameError, StreamFrame, decode_frame, encode_frame, pack
from tests.converter.temporal_reference import OfficialTemporalResampler, official_temporal_ids
from tests.edge.agent.fakes import ListSink
from tests.edge.camera.fakes import moving_frames

FPS = 3.0


class ClipCamera:
    """A finite camera: the given frames, one per call, captured FPS apart from t = 100 s, then finished."""

    def __init__(self, images: List[np.ndarray]) -> None:
        self.images, self.taken = images, 0

    @property
    def finished(self) -> bool:
        return self.taken >= len(self.images)

    def start(self) -> ClipCamera:
        return self

    def stop(self) -> None:
        """Nothing runs."""

    def latest(self, timeout: Optional[float] = None) -> Optional[Frame]:
        if self.finished:
            return None
        self.taken += 1
        return Frame(self.images[self.taken - 1], 100.0 + (self.taken - 1) / FPS, self.taken - 1, 0, 1)

    def stats(self) -> Dict[str, Any]:
        return {"taken": self.taken}


class SliceBudgetAt:
    """A loop hook that sets the encoder's slice budget once `frames` frames were handled, as the governor does."""

    def __init__(self, frames: int, slices: int) -> None:
        self.frames, self.slices = frames, slices

    def tick(self, pipeline: Any) -> None:
        if pipeline.counters["frames"] == self.frames:
            pipeline.encoder.max_slice_nums = self.slices


def _pipeline(bundle_path, images, group, reuse=None, hooks=()):
    bundle = Bundle.load(bundle_path)
    encoder = VisionEncoder.from_bundle(bundle_path)
    sink = ListSink()
    pipeline = GroupingPipeline(encoder, ClipCamera(images), sink, reuse, None, None, list(hooks),
                                grouper=open_grouper(bundle, group))
    return pipeline, sink, encoder


def test_every_group_of_frames_equals_the_official_temporal_path(video_bundle, make_checkpoint):
    images = moving_frames(7, size=(640, 360))  # sliced: an overview and tiles per frame
    pipeline, sink, encoder = _pipeline(video_bundle, images, 3)
    report = pipeline.run()
    assert [r.frames for r in sink.results] == [3, 3, 1]  # the last, partial group when the clip ends
    assert [r.sequence for r in sink.results] == [2, 5, 6]
    assert report["video"]["sent"] == 3 and report["encoded"] == 7
    ck = load_vision_checkpoint(make_checkpoint("4.5"))
    reference = OfficialTemporalResampler(ck.tensors, ck.spec.resampler_heads)
    with VisionEncoder.from_bundle(video_bundle) as own:
        features = [own.vpm_features(image, color="bgr") for image in images]
    # each group as the official model takes it as one clip: ids from the group's first frame (docs/minicpmv.md)
    ids = [official_temporal_ids([i / FPS for i in range(n)], 10.0, 3)[0] for n in (3, 3, 1)]
    assert ids == [[0, 3, 7], [0, 3, 7], [0]]
    first = 0
    for result, group in zip(sink.results, ids):
        frames = features[first:first + len(group)]
        slices = len(frames[0].rows)
        assert slices > 1 and result.tokens.shape == (slices, ck.spec.query_num, ck.spec.embed_dim)
        assert result.grid == frames[0].grid
        for s in range(slices):  # slice s of every frame of the group: one group of keys
            x = torch.from_numpy(np.stack([f.rows[s] for f in frames]))
            want = reference(x, [frames[0].patch_grids[s]] * len(group), [group]).numpy()[0]
            scale = float(np.abs(want).max())
            assert float(np.abs(result.tokens[s] - want).max()) <= 1e-4 * scale
        first += len(group)


def test_unchanged_frames_reuse_features_and_groups_still_close_every_n_frames(video_bundle):
    images = moving_frames(1, size=(320, 240)) * 6
    pipeline, sink, _ = _pipeline(video_bundle, images, 3, reuse=FrameReuse())
    report = pipeline.run()
    assert report["encoded"] == 1 and report["reused"] == 5
    assert [r.frames for r in sink.results] == [3, 3]
    # the same picture at the same spacing: the same ids relative to each group's first frame, the same tokens
    np.testing.assert_array_equal(sink.results[0].tokens, sink.results[1].tokens)


def test_a_changed_slice_budget_closes_the_waiting_group(video_bundle):
    images = moving_frames(5, size=(640, 360))
    pipeline, sink, _ = _pipeline(video_bundle, images, 4, hooks=[SliceBudgetAt(2, 1)])
    report = pipeline.run()
    assert [r.frames for r in sink.results] == [2, 3]  # closed early at the change, then the rest at the end
    assert len(sink.results[0].tokens) > 1 and len(sink.results[1].tokens) == 1  # the overview alone after it
    assert report["video"]["closed_early"] == 1


def test_a_bundle_without_the_grouped_graph_is_refused_with_the_fix(make_bundle):
    with pytest.raises(InputError, match="export-video"):
        open_grouper(Bundle.load(make_bundle("4.5")), 3)


@pytest.mark.parametrize("value", [0, 7, "3", True, 2.5])
def test_bad_group_frames_is_one_clear_error(tmp_path, value):
    data = {"bundle": "b", "camera": {"kind": "file", "path": "clip.avi"}, "video": {"group_frames": value}}
    with pytest.raises(InputError, match=r"video.group_frames must be an integer in 1..6"):
        parse_agent_config(data, tmp_path)


def test_group_frames_defaults_to_off(tmp_path):
    data = {"bundle": "b", "camera": {"kind": "file", "path": "clip.avi"}}
    assert parse_agent_config(data, tmp_path).video.group_frames == 1
    data["video"] = {"group_frames": 6}
    assert parse_agent_config(data, tmp_path).video.grouped


def test_the_stream_says_how_many_frames_a_group_covers():
    tokens = np.zeros((1, 4, 8), dtype=np.float32)
    group = StreamFrame(11, 1.5, "4.5", None, "fp32", tokens, frames=6)
    assert decode_frame(encode_frame(group)).frames == 6
    single = encode_frame(group._replace(frames=1))
    assert b'"frames"' not in single and decode_frame(single).frames == 1
    header = {"frame_id": 1, "timestamp_s": 0.0, "model_version": "4.5", "grid": None, "dtype": "fp32",
              "shape": [1, 4, 8], "reused_from": None, "request_id": None, "frames": 1}
    with pytest.raises(FrameError, match="frames"):
        decode_frame(pack(FRAME, header, tokens.tobytes()))


def test_a_group_is_placed_as_its_first_frame_without_the_image_id():
    layout = PromptLayout("v2.6", 64, True)
    still = layout.text((2, 1))
    group = layout.for_frames(6).text((2, 1))
    assert still.startswith("<image_id>0</image_id><image>") and group == still[len("<image_id>0</image_id>"):]
    assert layout.for_frames(1) == layout


def test_the_agent_refuses_grouping_on_a_bundle_without_the_grouped_graph(make_bundle, tmp_path, capsys):
    pytest.importorskip("cv2")
    from edge.cli.main import main
    from tests.edge.camera.fakes import write_video

    write_video(tmp_path / "clip.avi", moving_frames(2), fps=10)
    config = tmp_path / "agent.yaml"
    bundle = make_bundle("4.5")
    config.write_text("bundle: %s\ncamera: {kind: file, path: clip.avi}\nvideo: {group_frames: 6}\n" % bundle)
    capsys.readouterr()
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "export-video" in err[0]


def test_bench_video_counts_one_token_group_per_n_frames(video_bundle, capsys):
    import json

    from edge.cli.main import main

    capsys.readouterr()
    assert main(["bench", "video", "--bundle", str(video_bundle), "--frames", "6", "--fps", "5",
                 "--size", "320x240", "--group-frames", "1", "--group-frames", "3", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [r["token_groups_sent"] for r in runs] == [6, 2]
    q = runs[0]["token_rows_sent"] // 6
    assert runs[0]["tokens_per_video_second"] == q * 5 and runs[1]["tokens_per_video_second"] == round(q * 5 / 3, 2)
    assert main(["bench", "video", "--bundle", str(video_bundle), "--group-frames", "7"]) == 2
