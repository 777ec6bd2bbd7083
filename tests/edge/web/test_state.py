"""The banners of /state from real things: a real Governor's decisions on Snapshots (running degraded, and back), a
Snapshot of a degraded monitor, and a real file camera whose video is gone (reconnecting)."""
from __future__ import annotations

import pytest

from edge.camera import CameraConfig, FrameSource
from edge.monitor.governor import Governor
from edge.monitor.policy import GovernorConfig
from edge.monitor.snapshot import Snapshot
from edge.web.state import _snapshot_banners, camera_banners, degraded_banners, governor_view
from tests.edge.camera.fakes import moving_frames, wait_until, write_video

TOTAL_KB = 8_000_000


def ram(fraction: float) -> Snapshot:
    return Snapshot(0.0, "test", ram_total_kb=TOTAL_KB, ram_used_kb=int(TOTAL_KB * fraction))


def test_running_degraded_while_a_policy_is_raised():
    governor = Governor(GovernorConfig(enabled=True, min_dwell_s=0.0))
    assert degraded_banners(governor_view(governor)) == [] and degraded_banners(None) == []
    governor.decide(ram(0.921), 1.0)
    view = governor_view(governor)
    assert view["last_decision"]["action"] == "overview_only"
    assert degraded_banners(view) == [{"kind": "degraded", "text": "running degraded: memory level 2 (overview_only: "
                                       "RAM 92.1% used >= 90% (enter level 2))"}]
    governor.decide(ram(0.5), 2.0)
    governor.decide(ram(0.5), 3.0)
    assert governor.state()["levels"]["memory"] == 0 and degraded_banners(governor_view(governor)) == []


def test_monitoring_degraded():
    assert _snapshot_banners(Snapshot(0.0, "jtop", degraded="jtop service unreachable")) == [
        {"kind": "jtop", "text": "monitoring degraded: jtop service unreachable"}]
    assert _snapshot_banners(ram(0.5)) == [] and _snapshot_banners(None) == []


def test_camera_down_while_it_reconnects(tmp_path):
    pytest.importorskip("cv2")
    clip = write_video(tmp_path / "clip.avi", moving_frames(5), fps=10)
    source = FrameSource(CameraConfig(kind="file", path=str(clip), loop=True, fps=10))
    source.start()
    try:
        assert wait_until(lambda: source.latest(0.1) is not None)
        assert camera_banners(source.stats(), paused=False) == []
        clip.unlink()  # the next rewind cannot open it: the source backs off and retries
        assert wait_until(lambda: camera_banners(source.stats(), paused=False) != [], 60.0), source.stats()
        [banner] = camera_banners(source.stats(), paused=False)
        assert banner["kind"] == "camera" and banner["text"].startswith("camera down")
    finally:
        source.stop()
    assert camera_banners({"state": "running", "last_frame_age_s": 9.0}, paused=True) == []
    assert camera_banners({"state": "running", "last_frame_age_s": 9.0}, paused=False) == [
        {"kind": "camera", "text": "camera down: no frame for 9 s"}]
