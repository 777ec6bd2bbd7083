"""open_monitor(prefer="jtop") against jetson-stats' real JtopServer reading a fake Orin: the Snapshot equals what
the fake files say, follows them when they change, degrades when the server stops and recovers when it is back."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from edge.monitor.fallback_reader import read_meminfo
from edge.monitor.jtop_reader import JtopReader
from edge.monitor.readers import Monitor, open_monitor
from edge.monitor.snapshot import Snapshot

from .conftest import JtopService, wait_for
from .fake_orin import FakeOrin

# jetson-stats itself calls a deprecated distro function when it reads the platform
pytestmark = pytest.mark.filterwarnings("ignore:distro.linux_distribution:DeprecationWarning")

INTERVAL_S = 0.25


def fields(snapshot: Snapshot, like: dict) -> dict:
    return {name: getattr(snapshot, name) for name in like}


def matches(fake: FakeOrin):
    expected = fake.expected()
    return lambda snapshot: (snapshot.source == "jtop" and snapshot.degraded is None
                             and fields(snapshot, expected) == expected)


@pytest.fixture
def monitor(jtop_service: JtopService) -> Iterator[Monitor]:
    monitor = open_monitor(interval_s=INTERVAL_S, prefer="jtop")
    try:
        yield monitor
    finally:
        monitor.close()


def test_snapshot_equals_the_fake_orin(monitor, fake_orin):
    snapshot = wait_for(monitor, lambda s: s.source == "jtop" and s.degraded is None, "a jtop reading")
    expected = fake_orin.expected()
    assert fields(snapshot, expected) == expected
    # the offline zone (-256 C) is left out, the hottest is tj
    assert "cv0" not in snapshot.temperatures_c
    assert snapshot.hottest_c == 48.125
    assert snapshot.ram_used_fraction == pytest.approx(expected["ram_used_kb"] / expected["ram_total_kb"])


def test_changes_show_up_in_later_snapshots(monitor, fake_orin):
    first = wait_for(monitor, matches(fake_orin), "the fake's first values")
    fake_orin.set_memory(MemFree=1_500_000, MemAvailable=2_000_000, NvMapMemUsed=6_400_000)  # memory filling
    fake_orin.set_rail("VDD_IN", 5_000, 3_100)  # power rising
    fake_orin.set_rail("VDD_CPU_GPU_CV", 4_990, 1_800)
    fake_orin.set_zone("gpu-thermal", 71_250)  # temperature rising
    fake_orin.set_gpu_load(998)
    fake_orin.set_fan_pwm(255)
    fake_orin.set_nvpmodel(0)
    later = wait_for(monitor, matches(fake_orin), "the changed values")
    assert later.time_s > first.time_s
    assert later.ram_used_kb > first.ram_used_kb and later.ram_shared_kb == 6_400_000
    assert later.power_total_mw == 15_500.0 and later.power_rails_mw["VDD_CPU_GPU_CV"] == 8_982.0
    assert later.hottest_c == 71.25 and later.gpu_load_pct == 99.8
    assert later.fan_pct == 100.0 and later.nvpmodel == "MAXN"


def test_server_stop_degrades_and_restart_recovers(monitor, jtop_service, fake_orin):
    last_good_reader = JtopReader(INTERVAL_S)  # no fallback: while degraded it serves its last good values
    try:
        wait_for(monitor, matches(fake_orin), "the fake's values")
        good = wait_for(last_good_reader, matches(fake_orin), "the fake's values, no fallback")
        jtop_service.stop()

        degraded = wait_for(monitor, lambda s: s.degraded is not None, "degraded set")
        assert degraded.degraded.strip() and "\n" not in degraded.degraded
        # values from the fallback: this machine's own RAM, not the fake's
        assert degraded.source == "fallback"
        assert degraded.ram_total_kb == read_meminfo()["MemTotal"] != fake_orin.meminfo["MemTotal"]
        stale = wait_for(last_good_reader, lambda s: s.degraded is not None, "degraded set, no fallback")
        assert "\n" not in stale.degraded
        assert fields(stale, fake_orin.expected()) == fields(good, fake_orin.expected())
        assert stale.time_s == good.time_s  # the reading's own time: consumers can see how old it is

        fake_orin.set_gpu_load(512)  # what the server reads once it is back
        jtop_service.start()
        recovered = wait_for(monitor, matches(fake_orin), "recovered jtop readings")
        assert recovered.gpu_load_pct == 51.2
        wait_for(last_good_reader, matches(fake_orin), "recovered jtop readings, no fallback")
    finally:
        last_good_reader.close()


@pytest.mark.parametrize("name, value, reason", [
    ("__version__", "7.1.0",
     "Mismatch version jtop service: [7.1.0] and client: [{client}]. Please run: sudo jtop --install-service"),
    ("__author__", "Someone Else", "Authentication with jetson-stats server failed"),
])
def test_a_service_of_another_jetson_stats_is_degraded_in_jtops_words(jtop_service, tmp_path, name, value, reason):
    """The server runs an edited copy of the installed jtop package: another version, or another author (jtop makes
    its authentication key from it)."""
    import jtop

    other = tmp_path / "other-jetson-stats"
    shutil.copytree(Path(jtop.__file__).parent, other / "jtop")
    init = other / "jtop" / "__init__.py"
    line = '%s = "%s"' % (name, getattr(jtop, name))
    assert line in init.read_text()
    init.write_text(init.read_text().replace(line, '%s = "%s"' % (name, value)))
    jtop_service.stop()
    jtop_service.start(jetson_stats=other)
    monitor = open_monitor(interval_s=INTERVAL_S, prefer="jtop")
    try:
        snapshot = wait_for(monitor, lambda s: s.degraded is not None, "degraded set")
    finally:
        monitor.close()
    assert snapshot.degraded == reason.format(client=jtop.__version__)
    assert snapshot.source == "fallback"


def test_the_governor_follows_the_fake_orin_through_the_real_server(monitor, fake_orin):
    """Memory filling, power rising and temperature rising in the fake files reach the governor through jtop's
    server and the project's monitor; each policy escalates, then all come back when the files do."""
    import time

    from edge.monitor.governor import Governor
    from edge.monitor.policy import GovernorConfig, PowerPolicy, TemperaturePolicy

    calm = wait_for(monitor, matches(fake_orin), "the fake's values")
    governor = Governor(GovernorConfig(enabled=True, min_dwell_s=0.0, power=PowerPolicy(budget_mw=10_000.0),
                                       temperature=TemperaturePolicy(enter_c=(70.0, 90.0))))
    decisions = []

    def decide_until(condition, what: str) -> None:
        deadline, seen = time.monotonic() + 60.0, None
        while not condition():
            assert time.monotonic() < deadline, "%s never happened: %s" % (what, decisions)
            snapshot = monitor.latest()
            if snapshot is not None and snapshot != seen and snapshot.degraded is None:
                seen = snapshot
                decisions.extend(governor.decide(snapshot, snapshot.time_s))
            time.sleep(INTERVAL_S / 2)

    assert governor.decide(calm, calm.time_s) == [] and governor.levels == {"memory": 0, "power": 0,
                                                                            "temperature": 0}
    total, memory, rail = fake_orin.meminfo["MemTotal"], dict(fake_orin.meminfo), fake_orin.rails["VDD_IN"]
    zone = fake_orin.zones["gpu-thermal"]
    fake_orin.set_memory(MemFree=total * 3 // 100, Buffers=1_000, Cached=total // 100)  # 96 % used
    fake_orin.set_rail("VDD_IN", 5_000, 3_100)  # 15.5 W over a 10 W budget
    fake_orin.set_zone("gpu-thermal", 71_250)  # over 70 C
    decide_until(lambda: governor.levels["memory"] == 3 and governor.levels["power"] >= 1
                 and governor.levels["temperature"] == 1, "escalation")
    assert governor.state()["paused"] and governor.state()["frame_interval_s"] >= 1.0
    memory_up = next(d for d in decisions if d.policy == "memory")
    assert (memory_up.level_to, memory_up.action) == (3, "pause_capture") and "96" in memory_up.reason

    fake_orin.set_memory(**{key: memory[key] for key in ("MemFree", "Buffers", "Cached")})
    fake_orin.set_rail("VDD_IN", *rail)
    fake_orin.set_zone("gpu-thermal", zone)
    decide_until(lambda: governor.levels == {"memory": 0, "power": 0, "temperature": 0}, "recovery")
    assert not governor.state()["paused"] and governor.state()["frame_interval_s"] == 0.0
    assert {d.action for d in decisions} >= {"pause_capture", "lower_fps_1", "back_off_1", "normal"}
    assert governor.decisions_total[("memory", "normal")] == 1
